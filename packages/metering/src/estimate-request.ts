// Token estimate of a provider request before the call: exact for OpenAI models, a documented approximation elsewhere.
import { ApiError, maxCostNanoUsd, modelFamilies, providerOf, requestModel, requestOutputCap } from '@tollgate/core';
import type { Pricing, ProviderApi, ResolvedPrice, UsageEstimate } from '@tollgate/core';
import { ALWAYS_EXACT_CHARS, CountBudget, countTextTokens, countTextTokensSliced, encodingForModel, TimeSlice } from './tokenizer.js';
import type { EncodingName } from './tokenizer.js';

/** How the input tokens were found. */
export type EstimateMethod = EncodingName | 'approximate';

export interface EstimateOptions {
  /**
   * Tokens counted for each image, an upper bound because image sizes are not known before the call.
   * @default 3,779 for OpenAI models (the largest of OpenAI's documented formulas: 1,536 patches x 2.46,
   * above 85 + 170 x 8 tiles = 1,445), 48,169 for gpt-4o-mini (2,833 + 5,667 x 8 tiles), 1,600 for
   * Anthropic and other models (Anthropic resizes images above ~1.15 megapixels; tokens = w x h / 750).
   */
  imageTokens?: number;
  /**
   * Time budget for exact counting, per request (time spent counting, not waiting for the event
   * loop). Text left when it runs out is counted as its UTF-8 byte length: an upper bound.
   * @default 15 for `estimateRequest` / `estimateInputTokens` (synchronous: the whole count is one
   * stall), 250 for `estimateRequestAsync` / `estimateInputTokensAsync` (sliced)
   */
  maxEstimateMs?: number;
  /**
   * Asynchronous estimates only: counting runs in slices of about this many ms, with an event-loop
   * turn (setImmediate) between slices, so no other request waits longer than about one slice.
   * @default 4
   */
  estimateSliceMs?: number;
  /**
   * Factor applied to o200k_base counts for models whose tokenizer is not public (Anthropic,
   * self-hosted). Claude's tokenizer yields more tokens than o200k_base for the same text; 1.25
   * covers English prose and code with margin.
   * @default 1.25
   */
  approximationFactor?: number;
}

export interface InputTokenEstimate {
  tokens: number;
  /** True when every string was counted by the exact tokenizer (no byte bound, no approximation). */
  exact: boolean;
  method: EstimateMethod;
}

export interface RequestEstimate extends UsageEstimate, InputTokenEstimate {}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const asString = (value: unknown): string => (typeof value === 'string' ? value : '');

/** Models whose tokenizer is public (OpenAI's): counted exactly. */
export function isOpenAiModel(model: string): boolean {
  return /^(ft:)?(gpt-|o\d|chatgpt-|text-embedding-|codex-)/i.test(model);
}

/** Upper bound of the tokens of one image, by model (see `imageTokens`). */
export function imageTokenBound(model: string, exactTokenizer: boolean): number {
  if (!exactTokenizer) return 1_600;
  if (/^(ft:)?gpt-4o-mini/i.test(model)) return 48_169;
  return 3_779;
}

/**
 * The most output tokens a model can produce, used when the request sets no cap. From the
 * providers' model pages (2025-11); unknown models get 16,384.
 */
const MAX_OUTPUT_BY_FAMILY: Record<string, number> = {
  'gpt-5.1': 128_000, 'gpt-5': 128_000, 'gpt-5-mini': 128_000, 'gpt-5-nano': 128_000,
  'gpt-4.1': 32_768, 'gpt-4.1-mini': 32_768, 'gpt-4.1-nano': 32_768,
  'gpt-4o': 16_384, 'gpt-4o-mini': 16_384, 'gpt-4-turbo': 4_096, 'gpt-4': 8_192, 'gpt-3.5-turbo': 4_096,
  o1: 100_000, 'o1-mini': 65_536, o3: 100_000, 'o3-mini': 100_000, 'o4-mini': 100_000,
  'claude-opus-4-5': 64_000, 'claude-opus-4-1': 32_000, 'claude-opus-4': 32_000,
  'claude-sonnet-4-5': 64_000, 'claude-sonnet-4': 64_000, 'claude-3-7-sonnet': 64_000,
  'claude-haiku-4-5': 64_000, 'claude-3-5-haiku': 8_192, 'claude-3-haiku': 4_096,
};
export const FALLBACK_MAX_OUTPUT_TOKENS = 16_384;

export function modelMaxOutputTokens(model: string): number {
  for (const family of modelFamilies(model)) {
    const found = MAX_OUTPUT_BY_FAMILY[family];
    if (found !== undefined) return found;
  }
  return FALLBACK_MAX_OUTPUT_TOKENS;
}

/**
 * OpenAI renders function definitions into the prompt as a TypeScript namespace (documented by
 * the community from measured counts, e.g. hmarr/openai-chat-tokens); counting that rendering
 * reproduces the billed count for the usual JSON-schema subset. Unusual schema keywords render
 * as `any`, so for them the count can be a few tokens low; descriptions dominate anyway.
 */
function renderSchemaType(schema: unknown, indent: number): string {
  if (!isObject(schema)) return 'any';
  const alternatives = asArray(schema.anyOf ?? schema.oneOf);
  if (alternatives.length > 0) return alternatives.map((item) => renderSchemaType(item, indent)).join(' | ');
  const enumValues = asArray(schema.enum);
  switch (schema.type) {
    case 'string':
      return enumValues.length > 0 ? enumValues.map((value) => JSON.stringify(value)).join(' | ') : 'string';
    case 'integer':
    case 'number':
      return enumValues.length > 0 ? enumValues.map(String).join(' | ') : 'number';
    case 'boolean':
      return 'boolean';
    case 'null':
      return 'null';
    case 'array':
      return schema.items === undefined ? 'any[]' : `${renderSchemaType(schema.items, indent)}[]`;
    case 'object':
      return `{\n${renderProperties(schema, indent + 2)}\n${' '.repeat(indent)}}`;
    default:
      return 'any';
  }
}

function renderProperties(schema: Json, indent: number): string {
  const properties = isObject(schema.properties) ? schema.properties : {};
  const required = new Set(asArray(schema.required).filter((name): name is string => typeof name === 'string'));
  const pad = ' '.repeat(indent);
  const lines: string[] = [];
  for (const [name, property] of Object.entries(properties)) {
    const description = isObject(property) ? asString(property.description) : '';
    // Only top-level (and first nested) descriptions reach the prompt.
    if (description && indent < 2) lines.push(`${pad}// ${description}`);
    lines.push(`${pad}${name}${required.has(name) ? '' : '?'}: ${renderSchemaType(property, indent)},`);
  }
  return lines.join('\n');
}

interface FunctionDefinition {
  name: string;
  description: string;
  parameters: unknown;
}

function renderFunctions(functions: FunctionDefinition[]): string {
  const lines = ['namespace functions {', ''];
  for (const fn of functions) {
    if (fn.description) lines.push(`// ${fn.description}`);
    const properties = isObject(fn.parameters) && isObject(fn.parameters.properties) ? fn.parameters.properties : {};
    if (Object.keys(properties).length === 0) {
      lines.push(`type ${fn.name} = () => any;`);
    } else {
      lines.push(`type ${fn.name} = (_: {`, renderProperties(fn.parameters as Json, 0), '}) => any;');
    }
    lines.push('');
  }
  lines.push('} // namespace functions');
  return lines.join('\n');
}

/** Time budget of a synchronous estimate (its whole count is one event-loop stall). */
export const SYNC_ESTIMATE_MS = 15;
/** Time budget of an asynchronous (sliced) estimate. */
export const ASYNC_ESTIMATE_MS = 250;
/** Slice length of an asynchronous estimate. */
export const ESTIMATE_SLICE_MS = 4;

/**
 * Counts strings for one request, under one time budget. Counting at once (`mode` 'count'), or in
 * two walks for the sliced estimate: 'collect' gathers the strings in walk order (counting
 * nothing), they are counted asynchronously, and 'replay' walks again taking those counts in
 * the same order, so both estimates share every framing rule.
 */
class RequestCounter {
  readonly budget: CountBudget;
  readonly encoding: EncodingName;
  private mode: 'count' | 'collect' | 'replay' = 'count';
  /** Strings met in 'collect' mode. */
  readonly collected: string[] = [];
  private counts: number[] = [];
  private next = 0;

  constructor(
    readonly model: string,
    readonly exactTokenizer: boolean,
    private readonly options: EstimateOptions,
    defaultMs: number,
  ) {
    this.budget = new CountBudget(options.maxEstimateMs ?? defaultMs);
    this.encoding = exactTokenizer ? encodingForModel(model) : 'o200k_base';
  }

  collect(): void {
    this.mode = 'collect';
  }

  replay(counts: number[]): void {
    this.mode = 'replay';
    this.counts = counts;
    this.next = 0;
  }

  text(value: unknown): number {
    if (this.mode === 'replay') return this.counts[this.next++] ?? 0;
    const text = typeof value === 'string' ? value : value === undefined || value === null ? '' : (JSON.stringify(value) ?? '');
    if (this.mode === 'collect') {
      this.collected.push(text);
      return 0;
    }
    return countTextTokens(text, this.encoding, this.budget);
  }

  image(): number {
    return this.options.imageTokens ?? imageTokenBound(this.model, this.exactTokenizer);
  }

  /** Tools in the chat `tools` / `functions` shape or the Responses flat shape. */
  tools(tools: unknown[]): number {
    const functions: FunctionDefinition[] = [];
    let other = 0;
    for (const tool of tools) {
      if (!isObject(tool)) continue;
      const fn = isObject(tool.function) ? tool.function : tool.type === 'function' || tool.type === undefined ? tool : undefined;
      if (fn && typeof fn.name === 'string') functions.push({ name: fn.name, description: asString(fn.description), parameters: fn.parameters });
      else other += this.text(tool);
    }
    // 9 tokens frame the namespace block.
    return other + (functions.length > 0 ? this.text(renderFunctions(functions)) + 9 : 0);
  }
}

// OpenAI chat: every message costs 3 tokens of framing plus its fields; a name costs 1 more;
// every reply is primed with 3 (<|start|>assistant<|message|>).
const MESSAGE_OVERHEAD = 3;
const NAME_OVERHEAD = 1;
const REPLY_PRIMING = 3;
const TOOL_CALL_OVERHEAD = 3;

function countOpenAiContent(counter: RequestCounter, content: unknown): number {
  if (typeof content === 'string') return counter.text(content);
  let tokens = 0;
  for (const part of asArray(content)) {
    if (typeof part === 'string') {
      tokens += counter.text(part);
      continue;
    }
    if (!isObject(part)) continue;
    switch (part.type) {
      case 'text':
      case 'input_text':
      case 'output_text':
        tokens += counter.text(part.text);
        break;
      case 'refusal':
        tokens += counter.text(part.refusal);
        break;
      case 'image_url':
      case 'input_image':
        tokens += counter.image();
        break;
      default:
        // Audio, files and future part types: their JSON (base64 included) bounds them from above.
        tokens += counter.text(part);
    }
  }
  return tokens;
}

function countToolCalls(counter: RequestCounter, calls: unknown): number {
  let tokens = 0;
  for (const call of asArray(calls)) {
    if (!isObject(call)) continue;
    const fn = isObject(call.function) ? call.function : call;
    tokens += counter.text(fn.name) + counter.text(fn.arguments) + TOOL_CALL_OVERHEAD;
  }
  return tokens;
}

function countChatMessage(counter: RequestCounter, message: Json): number {
  let tokens = MESSAGE_OVERHEAD + counter.text(message.role) + countOpenAiContent(counter, message.content);
  if (typeof message.name === 'string') tokens += counter.text(message.name) + NAME_OVERHEAD;
  if (typeof message.tool_call_id === 'string') tokens += counter.text(message.tool_call_id);
  tokens += countToolCalls(counter, message.tool_calls);
  if (isObject(message.function_call)) tokens += countToolCalls(counter, [message.function_call]);
  return tokens;
}

function countToolChoice(counter: RequestCounter, choice: unknown): number {
  if (choice === 'none') return 1;
  if (!isObject(choice)) return 0;
  const name = isObject(choice.function) ? choice.function.name : choice.name;
  return typeof name === 'string' ? counter.text(name) + 4 : 0;
}

function countResponseFormat(counter: RequestCounter, format: unknown): number {
  // Structured outputs put the schema into the prompt; its JSON is a close upper bound.
  if (!isObject(format)) return 0;
  if (isObject(format.json_schema)) return counter.text(format.json_schema);
  if (format.type === 'json_schema') return counter.text(format.schema ?? format);
  return 0;
}

function countOpenAiChat(counter: RequestCounter, body: Json): number {
  let tokens = REPLY_PRIMING;
  for (const message of asArray(body.messages)) if (isObject(message)) tokens += countChatMessage(counter, message);
  tokens += counter.tools([...asArray(body.tools), ...asArray(body.functions)]);
  tokens += countToolChoice(counter, body.tool_choice ?? body.function_call);
  tokens += countResponseFormat(counter, body.response_format);
  return tokens;
}

function countResponsesItem(counter: RequestCounter, item: unknown): number {
  if (typeof item === 'string') return MESSAGE_OVERHEAD + counter.text('user') + counter.text(item);
  if (!isObject(item)) return 0;
  switch (item.type) {
    case undefined:
    case 'message':
      return countChatMessage(counter, item);
    case 'function_call':
    case 'custom_tool_call':
      return MESSAGE_OVERHEAD + counter.text(item.name) + counter.text(item.arguments ?? item.input) + TOOL_CALL_OVERHEAD;
    case 'function_call_output':
    case 'custom_tool_call_output':
      return MESSAGE_OVERHEAD + counter.text(item.call_id) + (typeof item.output === 'string' ? counter.text(item.output) : countOpenAiContent(counter, item.output));
    case 'reasoning':
      return MESSAGE_OVERHEAD + asArray(item.summary).reduce<number>((sum, part) => sum + (isObject(part) ? counter.text(part.text) : 0), 0) + counter.text(item.encrypted_content);
    default:
      return MESSAGE_OVERHEAD + counter.text(item);
  }
}

function countOpenAiResponses(counter: RequestCounter, body: Json): number {
  let tokens = REPLY_PRIMING;
  if (typeof body.instructions === 'string' && body.instructions.length > 0) tokens += MESSAGE_OVERHEAD + counter.text('system') + counter.text(body.instructions);
  if (typeof body.input === 'string') tokens += countResponsesItem(counter, body.input);
  else for (const item of asArray(body.input)) tokens += countResponsesItem(counter, item);
  tokens += counter.tools(asArray(body.tools));
  tokens += countToolChoice(counter, body.tool_choice);
  if (isObject(body.text)) tokens += countResponseFormat(counter, body.text.format);
  return tokens;
}

/**
 * Anthropic adds a tool-use system prompt when tools are present: 346 tokens for Claude 4 and
 * 3.7 models with tool_choice auto/none (313 for any/tool), per its tool-use docs.
 */
const ANTHROPIC_TOOL_PROMPT = 346;

function countAnthropicBlocks(counter: RequestCounter, content: unknown): { text: number; fixed: number } {
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
        const inner = countAnthropicBlocks(counter, block.content);
        text += inner.text;
        fixed += inner.fixed;
        break;
      }
      default:
        // Documents and future block types: their JSON (base64 included) bounds them from above.
        text += counter.text(block);
    }
  }
  return { text, fixed };
}

function countAnthropicMessages(counter: RequestCounter, body: Json, factor: number): number {
  const system = countAnthropicBlocks(counter, body.system);
  let text = system.text;
  let fixed = system.fixed;
  for (const message of asArray(body.messages)) {
    if (!isObject(message)) continue;
    const blocks = countAnthropicBlocks(counter, message.content);
    text += MESSAGE_OVERHEAD + blocks.text;
    fixed += blocks.fixed;
  }
  const tools = asArray(body.tools);
  for (const tool of tools) text += counter.text(tool);
  if (tools.length > 0) fixed += ANTHROPIC_TOOL_PROMPT;
  return Math.ceil(text * factor) + fixed;
}

function countRequest(api: ProviderApi, body: unknown, counter: RequestCounter, options: EstimateOptions): number {
  const request = isObject(body) ? body : {};
  const factor = options.approximationFactor ?? 1.25;
  if (api === 'anthropic.messages') return countAnthropicMessages(counter, request, factor);
  const tokens = api === 'openai.chat' ? countOpenAiChat(counter, request) : countOpenAiResponses(counter, request);
  return counter.exactTokenizer ? tokens : Math.ceil(tokens * factor);
}

const usesExactTokenizer = (api: ProviderApi, model: string): boolean => api !== 'anthropic.messages' && isOpenAiModel(model);

function inputEstimate(tokens: number, counter: RequestCounter): InputTokenEstimate {
  const exact = counter.exactTokenizer;
  return { tokens, exact: exact && !counter.budget.bounded, method: exact ? encodingForModel(counter.model) : 'approximate' };
}

/**
 * Input tokens of a provider request body. OpenAI models are counted with their own BPE
 * encoding the way OpenAI frames chat messages; other models (Anthropic, self-hosted) with
 * o200k_base times `approximationFactor`. Text too costly to count in time is bounded by its
 * UTF-8 byte length, so the result is never below the true count by more than the framing
 * approximations documented above. Synchronous: the whole count (at most `maxEstimateMs`,
 * default 15) blocks the event loop; `estimateInputTokensAsync` is the sliced one.
 */
export function estimateInputTokens(api: ProviderApi, body: unknown, model: string, options: EstimateOptions = {}): InputTokenEstimate {
  const counter = new RequestCounter(model, usesExactTokenizer(api, model), options, SYNC_ESTIMATE_MS);
  return inputEstimate(countRequest(api, body, counter, options), counter);
}

/**
 * `estimateInputTokens` without stalling the event loop: the strings are counted in slices of
 * `estimateSliceMs` (default 4) with an event-loop turn between slices, within a budget of
 * `maxEstimateMs` (default 250) of counting, after which the rest is bounded by its UTF-8 bytes.
 * Same count as the synchronous one given the same budget: exact where the budget allows, an
 * upper bound otherwise.
 */
export async function estimateInputTokensAsync(api: ProviderApi, body: unknown, model: string, options: EstimateOptions = {}): Promise<InputTokenEstimate> {
  const counter = new RequestCounter(model, usesExactTokenizer(api, model), options, ASYNC_ESTIMATE_MS);
  const slice = new TimeSlice(options.estimateSliceMs ?? ESTIMATE_SLICE_MS);
  counter.collect();
  countRequest(api, body, counter, options);
  const counts: number[] = [];
  // A small prompt (the usual chat turn) is counted at once: it costs microseconds, is always exact
  // (see ALWAYS_EXACT_CHARS), and awaiting each string would only add promise turns to every request.
  let chars = 0;
  for (const text of counter.collected) chars += text.length;
  if (chars <= ALWAYS_EXACT_CHARS) for (const text of counter.collected) counts.push(countTextTokens(text, counter.encoding, counter.budget));
  else for (const text of counter.collected) counts.push(await countTextTokensSliced(text, counter.encoding, counter.budget, slice));
  counter.replay(counts);
  return inputEstimate(countRequest(api, body, counter, options), counter);
}

/** Completions an OpenAI chat request asks for (`n`): the output cap applies to each one. */
function requestedChoices(api: ProviderApi, body: unknown): number {
  const n = api === 'openai.chat' && isObject(body) ? body.n : undefined;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 1 ? n : 1;
}

export interface EstimateRequestInput extends EstimateOptions {
  api: ProviderApi;
  body: unknown;
  /** Defaults to the body's `model`. */
  model?: string;
  /** Prices for the cost bound. */
  pricing: Pricing;
  /** Output cap when the body sets none. @default the model's documented maximum output */
  defaultMaxOutputTokens?: number;
}

/**
 * The full estimate of a request, as `req.tollgate.estimate` holds it: input tokens, the output
 * cap it runs with, and the cost upper bound. Pure: no request, no I/O. Throws
 * `UnknownModelError` when the model has no price (and the pricing has no default).
 * Synchronous (time box `maxEstimateMs`, default 15); `meter()` runs `estimateRequestAsync`.
 */
export function estimateRequest(input: EstimateRequestInput): RequestEstimate {
  const { model, price } = pricedModel(input);
  return fullEstimate(input, model, price, estimateInputTokens(input.api, input.body, model, input));
}

/**
 * `estimateRequest` counted in slices with the event loop turning between them (see
 * `estimateInputTokensAsync`); what `meter()` runs. Rejects as `estimateRequest` throws.
 */
export async function estimateRequestAsync(input: EstimateRequestInput): Promise<RequestEstimate> {
  const { model, price } = pricedModel(input);
  return fullEstimate(input, model, price, await estimateInputTokensAsync(input.api, input.body, model, input));
}

function pricedModel(input: EstimateRequestInput): { model: string; price: ResolvedPrice } {
  const model = input.model ?? requestModel(input.body);
  if (model === undefined) throw new ApiError('invalid_request', 'The request body needs a "model" string.', { param: 'model' });
  return { model, price: input.pricing.get(model) };
}

function fullEstimate(input: EstimateRequestInput, model: string, price: ResolvedPrice, estimate: InputTokenEstimate): RequestEstimate {
  const maxOutputTokens = requestOutputCap(input.body, input.api) ?? input.defaultMaxOutputTokens ?? modelMaxOutputTokens(model);
  const outputChoices = requestedChoices(input.api, input.body);
  // Spelled out, not \`{ ...estimate, ... }\`: on Node 20 every property written after a leading
  // spread takes V8's slow path (~1 µs each), which made this literal the costliest line of an estimate.
  const result: RequestEstimate = {
    tokens: estimate.tokens,
    exact: estimate.exact,
    method: estimate.method,
    provider: price.provider ?? providerOf(input.api),
    api: input.api,
    model,
    inputTokens: estimate.tokens,
    maxOutputTokens,
    totalTokens: estimate.tokens + maxOutputTokens * outputChoices,
    costNanoUsd: maxCostNanoUsd(estimate.tokens, maxOutputTokens * outputChoices, price),
  };
  if (outputChoices > 1) result.outputChoices = outputChoices;
  return result;
}
