// Anthropic Messages (`POST /v1/messages`): request shape, estimate, usage, and the ending of a cut stream.
import type { ReportedUsage, TokenUsage } from '@tollgate/core';
import type { UsageIteration } from '@tollgate/core/costs';
import type { CallRequest, CallShape } from '@tollgate/core/provider-call';
import type { ProviderAdapter, RequestProblem } from '../adapter.js';
import type { RequestCounter } from '../counter.js';
import { StreamShapes, type OpenValue } from '../chunk-shape.js';
import { asArray, bodyModel, isObject, parseJson, positiveInteger, tokenCount } from '../json.js';
import type { Json } from '../json.js';
import { MESSAGE_OVERHEAD } from '../openai-framing.js';
import { mapEach, mapField, withField } from '../prompt-text.js';
import type { TextMap } from '../prompt-text.js';
import { checkMessages, checkPositiveInteger } from '../request-checks.js';
import { OutputText, serviceTierOf, sseEvent } from '../usage.js';
import type { UsageReader } from '../usage.js';
import { ANTHROPIC_UPSTREAM } from './upstream.js';

/**
 * Anthropic adds a tool-use system prompt when tools are present: 346 tokens for Claude 4 and
 * 3.7 models with tool_choice auto/none (313 for any/tool), per its tool-use docs.
 */
const ANTHROPIC_TOOL_PROMPT = 346;

function countBlocks(counter: RequestCounter, content: unknown): { text: number; fixed: number } {
  if (typeof content === 'string') return { text: counter.text(content), fixed: 0 };
  let text = 0;
  let fixed = 0;
  for (const block of asArray(content)) {
    if (!isObject(block)) continue;
    switch (block.type) {
      case 'text':
        text += counter.text(block.text);
        break;
      case 'image':
        fixed += counter.image();
        break;
      case 'thinking':
        text += counter.text(block.thinking);
        break;
      case 'tool_use':
        text += counter.text(block.name) + counter.text(block.input);
        break;
      case 'tool_result': {
        const inner = countBlocks(counter, block.content);
        text += inner.text;
        fixed += inner.fixed;
        break;
      }
      default:
        // Text documents and future block types: their JSON bounds them from above; PDFs and files by id or URL do not.
        text += counter.part(block);
    }
  }
  return { text, fixed };
}

/**
 * Content (a string, or blocks) with its caller-written text through `map`: text blocks, tool results
 * (their content, again a string or blocks) and plain-text documents. Thinking blocks stay: the
 * provider signed them, and changed they are refused.
 */
function mapBlocks(content: unknown, map: TextMap): unknown {
  if (typeof content === 'string') return map(content);
  return mapEach(content, (block) => {
    if (!isObject(block)) return block;
    switch (block.type) {
      case 'text':
        return typeof block.text === 'string' ? withField(block, 'text', map(block.text)) : block;
      case 'tool_result':
        return withField(block, 'content', mapBlocks(block.content, map));
      case 'document':
        return isObject(block.source) && block.source.type === 'text' && typeof block.source.data === 'string'
          ? withField(block, 'source', withField(block.source, 'data', map(block.source.data)))
          : block;
      default:
        return block;
    }
  });
}

/** The system prompt and every message's text through `map` (see `ProviderAdapter.mapPromptText`). */
function mapMessagesPromptText(body: Json, map: TextMap): Json {
  const withSystem = withField(body, 'system', mapBlocks(body.system, map));
  return withField(
    withSystem,
    'messages',
    mapEach(body.messages, (message) => mapField(message, 'content', (content) => mapBlocks(content, map))),
  );
}

function countMessagesRequest(counter: RequestCounter, body: Json): number {
  const system = countBlocks(counter, body.system);
  let text = system.text;
  let fixed = system.fixed;
  for (const message of asArray(body.messages)) {
    if (!isObject(message)) continue;
    const blocks = countBlocks(counter, message.content);
    text += MESSAGE_OVERHEAD + blocks.text;
    fixed += blocks.fixed;
  }
  const tools = asArray(body.tools);
  for (const tool of tools) {
    // Anthropic-defined tools bring their own prompts (bash, text editor, computer use) or feed results back as input (web search and fetch, code execution).
    if (isObject(tool) && typeof tool.type === 'string' && tool.type !== 'custom') counter.pullsContent();
    text += counter.text(tool);
  }
  if (tools.length > 0) fixed += ANTHROPIC_TOOL_PROMPT;
  if (body.mcp_servers !== undefined || body.container !== undefined) counter.pullsContent();
  // Images and the tool prompt are fixed numbers of Claude tokens: only counted text is approximated.
  return counter.approximate(text) + fixed;
}

interface AnthropicUsage {
  input_tokens?: number;
  output_tokens?: number;
  cache_creation_input_tokens?: number;
  cache_read_input_tokens?: number;
  /** From `cache_creation.ephemeral_1h_input_tokens`: the part of the cache write kept for an hour. */
  cache_write_1h?: number;
  /** `usage.service_tier`: `standard`, `priority` or `batch`. */
  service_tier?: string;
  /** `usage.speed`: `standard` or `fast`. */
  speed?: string;
  /** `usage.inference_geo`: where inference ran (`global`, `us`). */
  inference_geo?: string;
  /** `usage.output_tokens_details.thinking_tokens`: the part of `output_tokens` spent thinking. */
  thinking_tokens?: number;
  /** `usage.iterations`: each model call of the answer (compaction, advisor, fallback), in our counts. */
  iterations?: UsageIteration[];
}

/** More calls than any answer makes: an iterations array past it is cut there rather than kept whole. */
const MAX_ITERATIONS = 256;
/** Longer than any model id: a longer one is not kept (its call is priced as the answer's model). */
const MAX_MODEL_LENGTH = 256;

const ANTHROPIC_FIELDS = [
  'input_tokens',
  'output_tokens',
  'cache_creation_input_tokens',
  'cache_read_input_tokens',
] as const;

/** The part of a cache write kept for an hour (`cache_creation.ephemeral_1h_input_tokens`), priced apart. */
function cacheWrite1hOf(usage: Json): number | undefined {
  const creation = usage.cache_creation;
  return isObject(creation) && typeof creation.ephemeral_1h_input_tokens === 'number'
    ? tokenCount(creation.ephemeral_1h_input_tokens)
    : undefined;
}

/** One entry of `usage.iterations` in our counts: Anthropic's input_tokens excludes cache reads and writes, ours not. */
function toIteration(entry: Json): UsageIteration {
  const cacheRead = tokenCount(entry.cache_read_input_tokens);
  const cacheWrite = tokenCount(entry.cache_creation_input_tokens);
  const long = cacheWrite1hOf(entry);
  const model = entry.model;
  return {
    kind: serviceTierOf(entry.type) ?? 'message',
    ...(typeof model === 'string' && model.length > 0 && model.length <= MAX_MODEL_LENGTH ? { model } : {}),
    inputTokens: tokenCount(entry.input_tokens) + cacheRead + cacheWrite,
    cachedInputTokens: cacheRead,
    cacheWriteTokens: cacheWrite,
    ...(long ? { cacheWrite1hTokens: long } : {}),
    outputTokens: tokenCount(entry.output_tokens),
  };
}

/** What every call of an answer counted, summed: the answer's usage when it was made of several. */
function iterationTotals(iterations: readonly UsageIteration[]): TokenUsage {
  const total: TokenUsage = {
    inputTokens: 0,
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: 0,
    reasoningTokens: 0,
  };
  let long = 0;
  for (const call of iterations) {
    total.inputTokens += call.inputTokens;
    total.cachedInputTokens += call.cachedInputTokens;
    total.cacheWriteTokens += call.cacheWriteTokens;
    total.outputTokens += call.outputTokens;
    long += call.cacheWrite1hTokens ?? 0;
  }
  if (long > 0) total.cacheWrite1hTokens = long;
  return total;
}

/**
 * Anthropic's input_tokens excludes cache reads and writes; ours includes them. An answer of several calls is billed
 * as the sum of its `iterations`: the top-level counts leave out compaction and advisor calls (Anthropic's compaction
 * and advisor tool docs), so they are not added again. Thinking is part of `output_tokens` (billed as output).
 */
function toTokenUsage(reported: AnthropicUsage): TokenUsage {
  const cacheRead = reported.cache_read_input_tokens ?? 0;
  const cacheWrite = reported.cache_creation_input_tokens ?? 0;
  const iterations = reported.iterations;
  const counts: TokenUsage =
    iterations !== undefined && iterations.length > 0
      ? { ...iterationTotals(iterations), iterations }
      : {
          inputTokens: (reported.input_tokens ?? 0) + cacheRead + cacheWrite,
          cachedInputTokens: cacheRead,
          cacheWriteTokens: cacheWrite,
          outputTokens: reported.output_tokens ?? 0,
          reasoningTokens: 0,
          ...(reported.cache_write_1h ? { cacheWrite1hTokens: reported.cache_write_1h } : {}),
        };
  counts.reasoningTokens = Math.min(reported.thinking_tokens ?? 0, counts.outputTokens);
  if (reported.service_tier !== undefined) counts.serviceTier = reported.service_tier;
  if (reported.speed !== undefined) counts.speed = reported.speed;
  if (reported.inference_geo !== undefined) counts.inferenceGeo = reported.inference_geo;
  return counts;
}

/** Usage fields are running totals: each report replaces the fields it holds. */
function assignUsage(into: AnthropicUsage, usage: unknown): void {
  if (!isObject(usage)) return;
  for (const field of ANTHROPIC_FIELDS) if (typeof usage[field] === 'number') into[field] = tokenCount(usage[field]);
  into.service_tier = serviceTierOf(usage.service_tier) ?? into.service_tier;
  into.speed = serviceTierOf(usage.speed) ?? into.speed;
  into.inference_geo = serviceTierOf(usage.inference_geo) ?? into.inference_geo;
  into.cache_write_1h = cacheWrite1hOf(usage) ?? into.cache_write_1h;
  const details = usage.output_tokens_details;
  if (isObject(details) && typeof details.thinking_tokens === 'number')
    into.thinking_tokens = tokenCount(details.thinking_tokens);
  if (Array.isArray(usage.iterations))
    into.iterations = usage.iterations.slice(0, MAX_ITERATIONS).filter(isObject).map(toIteration);
}

function collectBlock(output: OutputText, block: unknown): void {
  if (!isObject(block)) return;
  output.add(block.text);
  output.add(block.thinking);
  output.add(block.partial_json);
  if (block.type === 'tool_use') {
    output.add(block.name);
    if (isObject(block.input) && Object.keys(block.input).length > 0) output.add(JSON.stringify(block.input));
  }
}

/** Where `message_delta`, and a JSON answer, hold their usage. */
const USAGE_PATH = ['usage'] as const;

/** The field of each delta type that holds its text, as collectBlock reads it. */
const DELTA_TEXT: Readonly<Record<string, string>> = {
  text_delta: 'text',
  thinking_delta: 'thinking',
  input_json_delta: 'partial_json',
};

/**
 * What a `content_block_delta` whose delta holds its type and its text and nothing else leaves open in its shape: the
 * text, so the deltas after it that differ only there are read without a parse (StreamShapes), their text added to the
 * output as collectBlock adds it. Undefined for other deltas (a citation, a signature).
 */
function deltaOpen(payload: Json): OpenValue[] | undefined {
  const { delta } = payload;
  if (payload.type !== 'content_block_delta' || !isObject(delta) || typeof delta.type !== 'string') return undefined;
  const field = Object.hasOwn(DELTA_TEXT, delta.type) ? DELTA_TEXT[delta.type]! : undefined;
  const text = field === undefined ? undefined : delta[field];
  if (typeof text !== 'string' || text === '') return undefined;
  for (const key in delta) if (key !== 'type' && key !== field) return undefined;
  const at = (parsed: unknown): unknown =>
    isObject(parsed) && isObject(parsed.delta) ? parsed.delta[field!] : undefined;
  return [{ value: text, at }];
}

function createMessagesReader(): UsageReader {
  const output = new OutputText();
  // Anthropic's usage fields are running totals: each report replaces the last, never adds to it.
  const reported: AnthropicUsage = {};
  let started = false;
  let complete = false;
  /** Content blocks started and not stopped: a cut stream closes them before its message_delta. */
  const openBlocks = new Set<number>();
  /** The shape of the stream's text deltas, once one was parsed (see deltaOpen). */
  const shapes = new StreamShapes<Json>();
  const reader: UsageReader = {
    api: 'anthropic.messages',
    model: undefined,
    output,
    finalUsageAt: undefined,
    onEvent(event, data) {
      reader.finalUsageAt = undefined;
      const open = shapes.read(data);
      if (open !== undefined) {
        output.add(open[0]);
        return false;
      }
      const payload = parseJson(data);
      if (!isObject(payload)) return false;
      const type = typeof payload.type === 'string' ? payload.type : event;
      if (type === 'content_block_delta') {
        const text = deltaOpen(payload);
        if (text !== undefined) shapes.take(data, payload, text);
        collectBlock(output, payload.delta);
      } else if (type === 'content_block_start') {
        if (typeof payload.index === 'number') openBlocks.add(payload.index);
        collectBlock(output, payload.content_block);
      } else if (type === 'content_block_stop') {
        if (typeof payload.index === 'number') openBlocks.delete(payload.index);
      } else if (type === 'message_start' && isObject(payload.message)) {
        started = true;
        if (typeof payload.message.model === 'string') reader.model = payload.message.model;
        assignUsage(reported, payload.message.usage);
      } else if (type === 'message_delta' && isObject(payload.usage)) {
        // Only a delta with usage carries the final output count; without one, what passed is counted.
        assignUsage(reported, payload.usage);
        complete = true;
        reader.finalUsageAt = USAGE_PATH;
      }
      return false;
    },
    onJson(body) {
      if (!isObject(body)) return;
      if (typeof body.model === 'string') reader.model = body.model;
      for (const block of asArray(body.content)) collectBlock(output, block);
      if (isObject(body.usage)) {
        started = true;
        complete = true;
        assignUsage(reported, body.usage);
      }
    },
    onUnparsed: (text) => output.add(text),
    result(countOutput) {
      if (!started && !output.seen) return undefined;
      const usage = toTokenUsage(reported);
      if (complete) return { usage, source: 'provider' };
      // Cut after message_start: the input is known, the output is what passed.
      usage.outputTokens = Math.max(usage.outputTokens, output.tokens(countOutput));
      return { usage, source: 'counted' };
    },
    ending({ outputTokens }) {
      let text = '';
      for (const index of openBlocks) text += sseEvent({ type: 'content_block_stop', index }, 'content_block_stop');
      text += sseEvent(
        {
          type: 'message_delta',
          delta: { stop_reason: 'max_tokens', stop_sequence: null },
          usage: { output_tokens: outputTokens },
        },
        'message_delta',
      );
      return text + sseEvent({ type: 'message_stop' }, 'message_stop');
    },
  };
  return reader;
}

/** What a prompt must be, to run or to be counted: a system string or blocks, a non-empty message list. */
function checkPrompt(body: Json): RequestProblem | undefined {
  const system = body.system;
  if (system !== undefined && typeof system !== 'string' && !Array.isArray(system))
    return { param: 'system', message: 'system must be a string or an array of text blocks.' };
  return checkMessages(body);
}

/** Anthropic Messages. */
export const anthropicMessages: ProviderAdapter = {
  api: 'anthropic.messages',
  provider: 'anthropic',
  genAi: { operation: 'chat', provider: 'anthropic' },
  read({ body }: CallRequest): CallShape {
    const record = isObject(body) ? body : {};
    return {
      model: bodyModel(body),
      outputCap: positiveInteger(record.max_tokens),
      stream: record.stream === true,
      choices: 1,
      // Priced apart (fast mode, US-only inference): the reservation is made at them, the bill at the answer's.
      speed: serviceTierOf(record.speed),
      inferenceGeo: serviceTierOf(record.inference_geo),
    };
  },
  writeOutputCap(body, cap) {
    body.max_tokens = cap;
  },
  writeModel(body, model) {
    body.model = model;
  },
  endUserField: 'metadata.user_id',
  readUsage(response): ReportedUsage | undefined {
    if (!isObject(response) || !isObject(response.usage)) return undefined;
    const reported: AnthropicUsage = {};
    assignUsage(reported, response.usage);
    const usage: ReportedUsage = toTokenUsage(reported);
    if (typeof response.model === 'string') usage.model = response.model;
    return usage;
  },
  countInput: countMessagesRequest,
  mapPromptText: mapMessagesPromptText,
  // Anthropic streams always carry their usage (message_start, then message_delta).
  requestStreamUsage: () => false,
  streamRequest: (body) => Object.assign({}, body, { stream: true }),
  createReader: () => createMessagesReader(),
  answerUsageFields: ['model', 'usage'],
  usageField: 'usage',
  label: 'Anthropic',
  family: 'messages',
  route: { path: '/v1/messages' },
  upstream: ANTHROPIC_UPSTREAM,
  checkRequest: (body) => checkPrompt(body) ?? checkPositiveInteger(body, 'max_tokens'),
  // `POST /v1/messages/count_tokens`: the request without `max_tokens`, answered `{ "input_tokens": N }`.
  countTokens: {
    path: '/v1/messages/count_tokens',
    upstreamPath: () => '/v1/messages/count_tokens',
    checkRequest: checkPrompt,
    answer: (inputTokens) => ({ input_tokens: inputTokens }),
    textRequest: (model, text) => ({ model, messages: [{ role: 'user', content: text }] }),
    readCount: (answer) =>
      isObject(answer) && typeof answer.input_tokens === 'number' ? answer.input_tokens : undefined,
  },
  errorBody: ({ status, message }) => ({
    type: 'error',
    error: { type: ANTHROPIC_ERROR_TYPE_BY_STATUS[status] ?? 'invalid_request_error', message },
  }),
};

/** Anthropic's error `type` per status. */
const ANTHROPIC_ERROR_TYPE_BY_STATUS: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  422: 'invalid_request_error',
  429: 'rate_limit_error',
  500: 'api_error',
  502: 'api_error',
  529: 'overloaded_error',
};
