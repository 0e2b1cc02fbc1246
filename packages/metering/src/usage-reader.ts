// Reads provider usage (and the output text, for when usage never comes) from JSON bodies and SSE events.
import type { ProviderApi, TokenUsage } from '@tollgate/core';

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const count = (value: unknown): number => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0);

/** Output text kept for counting when no usage arrives; beyond it only the byte count is kept. */
const MAX_KEPT_OUTPUT_CHARS = 1024 * 1024;

export interface ReadUsage {
  usage: TokenUsage;
  /** `provider` when the provider reported the whole usage, `counted` when output had to be counted. */
  source: 'provider' | 'counted';
}

/** Counts the tokens of output text (the meter passes its time-boxed tokenizer). */
export type OutputCounter = (text: string) => number;

export interface UsageReader {
  readonly api: ProviderApi;
  /** The model the provider reported, if any. */
  model: string | undefined;
  /** Feeds one SSE event; returns true when it is the usage-only chunk the meter added and must strip. */
  onEvent(event: string, data: string): boolean;
  /** Feeds a whole JSON response body. */
  onJson(body: unknown): void;
  /** Feeds raw output that could not be parsed (a cut JSON body): counted as text. */
  onUnparsed(text: string): void;
  /**
   * The usage: the provider's when it came complete; otherwise the provider's partial numbers
   * with output counted from the text that passed; undefined when nothing at all was seen.
   */
  result(countOutput: OutputCounter): ReadUsage | undefined;
}

/** Collects output text deltas up to a bound. */
class OutputText {
  private parts: string[] = [];
  private kept = 0;
  /** UTF-8 bytes beyond the bound: each is at most one token. */
  overflowBytes = 0;
  seen = false;

  add(text: unknown): void {
    if (typeof text !== 'string' || text.length === 0) return;
    this.seen = true;
    if (this.kept + text.length <= MAX_KEPT_OUTPUT_CHARS) {
      this.parts.push(text);
      this.kept += text.length;
    } else {
      this.overflowBytes += Buffer.byteLength(text);
    }
  }

  tokens(countOutput: OutputCounter): number {
    return (this.parts.length > 0 ? countOutput(this.parts.join('')) : 0) + this.overflowBytes;
  }
}

/** No usage came: the output that passed, counted; the meter fills in the input from its estimate. */
function countedOutput(output: OutputText, countOutput: OutputCounter): ReadUsage | undefined {
  if (!output.seen) return undefined;
  return { usage: { inputTokens: 0, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: output.tokens(countOutput), reasoningTokens: 0 }, source: 'counted' };
}

function parseJson(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}

/** OpenAI chat and Responses usage objects share their shape closely enough for one mapping. */
function openAiUsage(usage: Json): TokenUsage {
  const inputDetails = isObject(usage.prompt_tokens_details) ? usage.prompt_tokens_details : isObject(usage.input_tokens_details) ? usage.input_tokens_details : {};
  const outputDetails = isObject(usage.completion_tokens_details) ? usage.completion_tokens_details : isObject(usage.output_tokens_details) ? usage.output_tokens_details : {};
  return {
    inputTokens: count(usage.prompt_tokens ?? usage.input_tokens),
    cachedInputTokens: count(inputDetails.cached_tokens),
    cacheWriteTokens: 0,
    outputTokens: count(usage.completion_tokens ?? usage.output_tokens),
    reasoningTokens: count(outputDetails.reasoning_tokens),
  };
}

function collectChatMessage(output: OutputText, message: unknown): void {
  if (!isObject(message)) return;
  output.add(message.content);
  output.add(message.refusal);
  output.add(message.reasoning_content);
  for (const call of asArray(message.tool_calls)) {
    if (!isObject(call) || !isObject(call.function)) continue;
    output.add(call.function.name);
    output.add(call.function.arguments);
  }
  if (isObject(message.function_call)) output.add(message.function_call.arguments);
}

function createOpenAiChatReader(stripAddedUsage: boolean): UsageReader {
  const output = new OutputText();
  let usage: TokenUsage | undefined;
  const reader: UsageReader = {
    api: 'openai.chat',
    model: undefined,
    onEvent(_event, data) {
      if (data === '[DONE]') return false;
      const chunk = parseJson(data);
      if (!isObject(chunk)) return false;
      if (typeof chunk.model === 'string') reader.model = chunk.model;
      const choices = asArray(chunk.choices);
      for (const choice of choices) if (isObject(choice)) collectChatMessage(output, choice.delta);
      if (isObject(chunk.usage)) {
        usage = openAiUsage(chunk.usage);
        return stripAddedUsage && choices.length === 0;
      }
      return false;
    },
    onJson(body) {
      if (!isObject(body)) return;
      if (typeof body.model === 'string') reader.model = body.model;
      for (const choice of asArray(body.choices)) if (isObject(choice)) collectChatMessage(output, choice.message);
      if (isObject(body.usage)) usage = openAiUsage(body.usage);
    },
    onUnparsed: (text) => output.add(text),
    result: (countOutput) => (usage ? { usage, source: 'provider' } : countedOutput(output, countOutput)),
  };
  return reader;
}

const RESPONSE_DONE = new Set(['response.completed', 'response.incomplete', 'response.failed']);

function collectResponsesOutput(output: OutputText, items: unknown): void {
  for (const item of asArray(items)) {
    if (!isObject(item)) continue;
    for (const part of asArray(item.content)) if (isObject(part)) output.add(part.text ?? part.refusal);
    for (const part of asArray(item.summary)) if (isObject(part)) output.add(part.text);
    output.add(item.arguments);
    output.add(item.input);
  }
}

function createOpenAiResponsesReader(): UsageReader {
  const output = new OutputText();
  let usage: TokenUsage | undefined;
  const readResponse = (response: unknown) => {
    if (!isObject(response)) return;
    if (typeof response.model === 'string') reader.model = response.model;
    if (isObject(response.usage)) usage = openAiUsage(response.usage);
  };
  const reader: UsageReader = {
    api: 'openai.responses',
    model: undefined,
    onEvent(event, data) {
      const payload = parseJson(data);
      if (!isObject(payload)) return false;
      const type = typeof payload.type === 'string' ? payload.type : event;
      if (type.endsWith('.delta')) output.add(payload.delta);
      else if (type === 'response.created' || type === 'response.in_progress' || RESPONSE_DONE.has(type)) readResponse(payload.response);
      return false;
    },
    onJson(body) {
      if (!isObject(body)) return;
      readResponse(body);
      if (!usage) collectResponsesOutput(output, body.output);
    },
    onUnparsed: (text) => output.add(text),
    result: (countOutput) => (usage ? { usage, source: 'provider' } : countedOutput(output, countOutput)),
  };
  return reader;
}

interface AnthropicUsage {
  input_tokens?: number;
  output_tokens?: number;
  cache_creation_input_tokens?: number;
  cache_read_input_tokens?: number;
}

const ANTHROPIC_FIELDS = ['input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens'] as const;

function collectAnthropicBlock(output: OutputText, block: unknown): void {
  if (!isObject(block)) return;
  output.add(block.text);
  output.add(block.thinking);
  output.add(block.partial_json);
  if (block.type === 'tool_use') {
    output.add(block.name);
    if (isObject(block.input) && Object.keys(block.input).length > 0) output.add(JSON.stringify(block.input));
  }
}

function createAnthropicReader(): UsageReader {
  const output = new OutputText();
  // Anthropic's usage fields are running totals: each report replaces the last, never adds to it.
  const reported: AnthropicUsage = {};
  let started = false;
  let complete = false;
  const assign = (usage: unknown) => {
    if (!isObject(usage)) return;
    for (const field of ANTHROPIC_FIELDS) if (typeof usage[field] === 'number') reported[field] = count(usage[field]);
  };
  const reader: UsageReader = {
    api: 'anthropic.messages',
    model: undefined,
    onEvent(event, data) {
      const payload = parseJson(data);
      if (!isObject(payload)) return false;
      const type = typeof payload.type === 'string' ? payload.type : event;
      if (type === 'message_start' && isObject(payload.message)) {
        started = true;
        if (typeof payload.message.model === 'string') reader.model = payload.message.model;
        assign(payload.message.usage);
      } else if (type === 'content_block_start') {
        collectAnthropicBlock(output, payload.content_block);
      } else if (type === 'content_block_delta') {
        collectAnthropicBlock(output, payload.delta);
      } else if (type === 'message_delta' && isObject(payload.usage)) {
        // Only a delta with usage carries the final output count; without one, what passed is counted.
        assign(payload.usage);
        complete = true;
      }
      return false;
    },
    onJson(body) {
      if (!isObject(body)) return;
      if (typeof body.model === 'string') reader.model = body.model;
      for (const block of asArray(body.content)) collectAnthropicBlock(output, block);
      if (isObject(body.usage)) {
        started = true;
        complete = true;
        assign(body.usage);
      }
    },
    onUnparsed: (text) => output.add(text),
    result(countOutput) {
      if (!started && !output.seen) return undefined;
      const cacheRead = reported.cache_read_input_tokens ?? 0;
      const cacheWrite = reported.cache_creation_input_tokens ?? 0;
      // Anthropic's input_tokens excludes cache reads and writes; ours includes them.
      const usage: TokenUsage = {
        inputTokens: (reported.input_tokens ?? 0) + cacheRead + cacheWrite,
        cachedInputTokens: cacheRead,
        cacheWriteTokens: cacheWrite,
        outputTokens: reported.output_tokens ?? 0,
        reasoningTokens: 0,
      };
      if (complete) return { usage, source: 'provider' };
      // Cut after message_start: the input is known, the output is what passed.
      usage.outputTokens = Math.max(usage.outputTokens, output.tokens(countOutput));
      return { usage, source: 'counted' };
    },
  };
  return reader;
}

/**
 * A reader for one response. `stripAddedUsage`: the meter added `stream_options.include_usage`
 * to an OpenAI chat stream the client did not ask it for, so the usage-only chunk is flagged.
 */
export function createUsageReader(api: ProviderApi, options: { stripAddedUsage?: boolean } = {}): UsageReader {
  switch (api) {
    case 'openai.chat':
      return createOpenAiChatReader(options.stripAddedUsage ?? false);
    case 'openai.responses':
      return createOpenAiResponsesReader();
    default:
      return createAnthropicReader();
  }
}
