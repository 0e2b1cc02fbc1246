// Anthropic answers in the OpenAI Responses shape: the response object, its output items and usage.
import type { TokenUsage } from '@tollgate/core';
import { asArray, isObject, unixSeconds } from './json.js';
import type { Json } from './json.js';
import { fromAnthropicUsage } from './usage.js';

/** Responses usage: input tokens include cache reads and writes, cache reads also in `cached_tokens`. */
function toResponsesUsage(usage: TokenUsage): Json {
  return {
    input_tokens: usage.inputTokens,
    input_tokens_details: { cached_tokens: usage.cachedInputTokens },
    output_tokens: usage.outputTokens,
    output_tokens_details: { reasoning_tokens: usage.reasoningTokens },
    total_tokens: usage.inputTokens + usage.outputTokens,
  };
}

export function textPart(text: string, refused: boolean): Json {
  return refused ? { type: 'refusal', refusal: text } : { type: 'output_text', text, annotations: [], logprobs: [] };
}

export function messageItem(id: string, status: string, content: Json[]): Json {
  return { type: 'message', id, status, role: 'assistant', content };
}

export function functionCallItem(id: string, callId: unknown, name: unknown, args: string, status: string): Json {
  return { type: 'function_call', id, call_id: callId, name, arguments: args, status };
}

export interface ResponseState {
  id: string;
  createdAt: number;
  model: string;
  /** Anthropic's stop reason, once known. */
  stopReason?: unknown;
  output: Json[];
  usage?: TokenUsage;
}

/** The response object; `done` gives it its final status (a max_tokens stop is `incomplete`, as OpenAI writes a cut answer). */
export function responseObject(state: ResponseState, done: boolean): Json {
  const incomplete =
    done && (state.stopReason === 'max_tokens' || state.stopReason === 'model_context_window_exceeded');
  return {
    id: state.id,
    object: 'response',
    created_at: state.createdAt,
    status: !done ? 'in_progress' : incomplete ? 'incomplete' : 'completed',
    error: null,
    incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null,
    model: state.model,
    output: state.output,
    parallel_tool_calls: true,
    tool_choice: 'auto',
    tools: [],
    usage: done && state.usage ? toResponsesUsage(state.usage) : null,
    metadata: {},
  };
}

/** An Anthropic message as a Responses object: one message item per text block, one function_call item per tool_use. */
export function messageToResponse(message: Json, clientModel: string): Json {
  const messageId = typeof message.id === 'string' ? message.id : `msg_${unixSeconds()}`;
  const refused = message.stop_reason === 'refusal';
  const output: Json[] = [];
  asArray(message.content).forEach((block, index) => {
    if (!isObject(block)) return;
    if (block.type === 'text' && typeof block.text === 'string') {
      output.push(messageItem(`${messageId}_${index}`, 'completed', [textPart(block.text, refused)]));
    } else if (block.type === 'tool_use') {
      output.push(
        functionCallItem(
          `fc_${String(block.id)}`,
          block.id,
          block.name,
          JSON.stringify(block.input ?? {}),
          'completed',
        ),
      );
    }
  });
  const state: ResponseState = {
    id: `resp_${messageId}`,
    createdAt: unixSeconds(),
    model: clientModel,
    stopReason: message.stop_reason,
    output,
    usage: fromAnthropicUsage(message.usage),
  };
  return responseObject(state, true);
}
