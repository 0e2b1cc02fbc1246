// Whole JSON answers between the APIs, and the stop reasons they share.
import { asArray, isObject, parseJson, unixSeconds } from './json.js';
import type { Json } from './json.js';
import { fromAnthropicUsage, fromChatUsage, toAnthropicUsage, toChatUsage } from './usage.js';

/** Anthropic's stop reasons as OpenAI finish reasons. */
export function chatFinishReason(stopReason: unknown): string {
  switch (stopReason) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      // end_turn, stop_sequence, pause_turn: the model stopped by itself.
      return 'stop';
  }
}

/** OpenAI finish reasons as Anthropic stop reasons. */
export function anthropicStopReason(finishReason: unknown): string {
  switch (finishReason) {
    case 'length':
      return 'max_tokens';
    case 'tool_calls':
    case 'function_call':
      return 'tool_use';
    case 'content_filter':
      return 'refusal';
    default:
      return 'end_turn';
  }
}

/** An OpenAI tool call's arguments as the object Anthropic's tool_use carries (text that is not one is kept under `arguments`). */
function toolInput(argumentsText: unknown): Json {
  if (typeof argumentsText !== 'string' || argumentsText.trim() === '') return {};
  const parsed = parseJson(argumentsText);
  return isObject(parsed) ? parsed : { arguments: argumentsText };
}

/** An Anthropic message as a chat.completion. */
export function messageToChatCompletion(message: Json, clientModel: string): Json {
  let text = '';
  let hasText = false;
  const toolCalls: Json[] = [];
  for (const block of asArray(message.content)) {
    if (!isObject(block)) continue;
    if (block.type === 'text' && typeof block.text === 'string') {
      text += block.text;
      hasText = true;
    } else if (block.type === 'tool_use') {
      toolCalls.push({
        id: block.id,
        type: 'function',
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) },
      });
    }
    // Thinking blocks have no place in a chat completion: the answer is the text and the tool calls.
  }
  const refused = message.stop_reason === 'refusal';
  const reply: Json = {
    role: 'assistant',
    content: hasText && !refused ? text : null,
    refusal: refused ? text || 'The model refused to answer.' : null,
    annotations: [],
  };
  if (toolCalls.length > 0) reply.tool_calls = toolCalls;
  return {
    id: typeof message.id === 'string' ? message.id : `chatcmpl-${unixSeconds()}`,
    object: 'chat.completion',
    created: unixSeconds(),
    model: clientModel,
    choices: [{ index: 0, message: reply, logprobs: null, finish_reason: chatFinishReason(message.stop_reason) }],
    usage: toChatUsage(fromAnthropicUsage(message.usage)),
  };
}

/** A chat.completion (its first choice: translated requests never ask for more) as an Anthropic message. */
export function chatCompletionToMessage(completion: Json, clientModel: string): Json {
  const choice = asArray(completion.choices).find(isObject) ?? {};
  const reply = isObject(choice.message) ? choice.message : {};
  const content: Json[] = [];
  const text =
    typeof reply.content === 'string' ? reply.content : typeof reply.refusal === 'string' ? reply.refusal : '';
  if (text !== '') content.push({ type: 'text', text });
  for (const call of asArray(reply.tool_calls)) {
    if (!isObject(call) || !isObject(call.function)) continue;
    content.push({
      type: 'tool_use',
      id: call.id,
      name: call.function.name,
      input: toolInput(call.function.arguments),
    });
  }
  return {
    id: typeof completion.id === 'string' ? completion.id : `msg_${unixSeconds()}`,
    type: 'message',
    role: 'assistant',
    model: clientModel,
    content,
    stop_reason:
      typeof reply.refusal === 'string' && reply.refusal !== '' ? 'refusal' : anthropicStopReason(choice.finish_reason),
    stop_sequence: null,
    usage: toAnthropicUsage(fromChatUsage(completion.usage)),
  };
}
