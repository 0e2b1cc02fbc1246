// Token estimate of a provider request before the call, through its API's adapter: exact or approximate as the catalogue says.
import { ApiError, createPricing } from '@tollgate/core';
import { maxCostNanoUsd, mediaTokens } from '@tollgate/core/costs';
import type { Pricing, ProviderApi } from '@tollgate/core';
import type { ModelKind, ResolvedPrice, TokenizerFamily } from '@tollgate/core/costs';
import type { ProviderAdapter } from './adapter.js';
import { adapterFor, providerAdapters } from './adapters.js';
import { ASYNC_ESTIMATE_MS, ESTIMATE_SLICE_MS, RequestCounter, SYNC_ESTIMATE_MS } from './counter.js';
import type { EstimateOptions, InputTokenEstimate, RequestEstimate } from './counter.js';
import { isObject } from './json.js';
import { ALWAYS_EXACT_CHARS, TimeSlice } from './tokenizer.js';

/** The cap assumed for a model whose catalogue row names no maximum output. */
const FALLBACK_MAX_OUTPUT_TOKENS = 16_384;

/** The shipped catalogue, for estimates asked for without a pricing table. */
let shipped: Pricing | undefined;

/** The tokenizer the catalogue names for `model` (`approximate` when it has no row). */
export function tokenizerFor(model: string, pricing?: Pricing): TokenizerFamily {
  return (pricing ?? (shipped ??= createPricing())).find(model)?.tokenizer ?? 'approximate';
}

/** The most output tokens a model can produce, from its catalogue row; unknown models get 16,384. */
export function modelMaxOutputTokens(model: string, pricing?: Pricing): number {
  return (pricing ?? (shipped ??= createPricing())).find(model)?.maxOutputTokens ?? FALLBACK_MAX_OUTPUT_TOKENS;
}

type AdapterOrApi = ProviderAdapter | ProviderApi;

const resolve = (api: AdapterOrApi): ProviderAdapter => (typeof api === 'string' ? adapterFor(api) : api);

function newCounter(
  model: string,
  options: EstimateOptions & { tokenizer?: TokenizerFamily },
  defaultMs: number,
): RequestCounter {
  return new RequestCounter(model, options.tokenizer ?? tokenizerFor(model), options, defaultMs);
}

function countRequest(adapter: ProviderAdapter, body: unknown, counter: RequestCounter): number {
  return adapter.countInput(counter, isObject(body) ? body : {});
}

function inputEstimate(tokens: number, counter: RequestCounter): InputTokenEstimate {
  const exact = counter.exactTokenizer;
  // The text's share of `tokens` (scaled, for an approximation) swapped for its bytes; framing and images stay.
  const textShare = counter.exactTokenizer ? counter.textTokens : counter.textTokens * counter.factor;
  const bound = counter.openEnded ? Infinity : Math.max(tokens, Math.ceil(tokens - textShare) + counter.bytes);
  return { tokens, exact: exact && !counter.budget.bounded, method: exact ? counter.encoding : 'approximate', bound };
}

/**
 * Input tokens of a provider request body, framed the way its API renders it. Models whose
 * catalogue row names an encoding (OpenAI's) are counted exactly; others (Anthropic, Gemini,
 * self-hosted) with o200k_base times `approximationFactor`. Text too costly to count in time is
 * bounded by its UTF-8 byte length, so the result is never below the true count by more than the
 * framing approximations. Synchronous: the whole count (at most `maxEstimateMs`, default 15)
 * blocks the event loop; `estimateInputTokensAsync` is the sliced one.
 */
export function estimateInputTokens(
  api: AdapterOrApi,
  body: unknown,
  model: string,
  options: EstimateOptions & { tokenizer?: TokenizerFamily } = {},
): InputTokenEstimate {
  const counter = newCounter(model, options, SYNC_ESTIMATE_MS);
  return inputEstimate(countRequest(resolve(api), body, counter), counter);
}

/** A counter that walked the request once, collecting its strings to count. */
function collectStrings(
  adapter: ProviderAdapter,
  body: unknown,
  model: string,
  options: EstimateOptions & { tokenizer?: TokenizerFamily },
): RequestCounter {
  const counter = newCounter(model, options, ASYNC_ESTIMATE_MS);
  counter.collect();
  countRequest(adapter, body, counter);
  return counter;
}

/**
 * A small prompt (the usual chat turn) is counted at once: it costs microseconds, is always exact
 * (see ALWAYS_EXACT_CHARS), and awaiting each string would only add promise turns to every request.
 */
function countsAtOnce(counter: RequestCounter): boolean {
  return counter.pendingChars <= ALWAYS_EXACT_CHARS;
}

function countCollected(
  adapter: ProviderAdapter,
  body: unknown,
  counter: RequestCounter,
  counts: number[],
): InputTokenEstimate {
  counter.replay(counts);
  return inputEstimate(countRequest(adapter, body, counter), counter);
}

function countCollectedAtOnce(adapter: ProviderAdapter, body: unknown, counter: RequestCounter): InputTokenEstimate {
  return countCollected(adapter, body, counter, counter.countCollectedAtOnce());
}

/**
 * `estimateInputTokens` without stalling the event loop: the strings are counted in slices of
 * `estimateSliceMs` (default 4) with an event-loop turn between slices, within a budget of
 * `maxEstimateMs` (default 250) of counting, after which the rest is bounded by its UTF-8 bytes.
 * Same count as the synchronous one given the same budget: exact where the budget allows, an
 * upper bound otherwise.
 */
export async function estimateInputTokensAsync(
  api: AdapterOrApi,
  body: unknown,
  model: string,
  options: EstimateOptions & { tokenizer?: TokenizerFamily } = {},
): Promise<InputTokenEstimate> {
  const adapter = resolve(api);
  const counter = collectStrings(adapter, body, model, options);
  if (countsAtOnce(counter)) return countCollectedAtOnce(adapter, body, counter);
  const slice = new TimeSlice(options.estimateSliceMs ?? ESTIMATE_SLICE_MS);
  return countCollected(adapter, body, counter, await counter.countCollectedSliced(slice));
}

export interface EstimateRequestInput extends EstimateOptions {
  /** The API's adapter (or its name). */
  api: AdapterOrApi;
  body: unknown;
  /** Defaults to what the adapter reads from the body. */
  model?: string;
  /** Output cap when the request sets none. @default the model's documented maximum output */
  defaultMaxOutputTokens?: number;
  /** Prices (and the catalogue's tokenizers and output caps) for the estimate. */
  pricing: Pricing;
}

/**
 * The full estimate of a request, as `req.tollgate.estimate` holds it: input tokens, the output
 * cap it runs with, and the cost upper bound. Pure: no request, no I/O. Throws
 * `UnknownModelError` when the model has no price (and the pricing has no default), and an `ApiError`
 * (`invalid_request`, param `model`) when the model is of another kind than the API serves (`modelKind`).
 * Synchronous (time box `maxEstimateMs`, default 15); `meter()` runs `estimateRequestAsync`.
 */
export function estimateRequest(input: EstimateRequestInput): RequestEstimate {
  const { adapter, model, price } = pricedModel(input);
  return fullEstimate(
    input,
    adapter,
    model,
    price,
    estimateInputTokens(adapter, input.body, model, withTokenizer(input, price)),
  );
}

/**
 * `estimateRequest` counted in slices with the event loop turning between them (see
 * `estimateInputTokensAsync`); what `meter()` runs. Rejects as `estimateRequest` throws.
 */
export async function estimateRequestAsync(input: EstimateRequestInput): Promise<RequestEstimate> {
  const { adapter, model, price } = pricedModel(input);
  return fullEstimate(
    input,
    adapter,
    model,
    price,
    await estimateInputTokensAsync(adapter, input.body, model, withTokenizer(input, price)),
  );
}

/**
 * What `estimateRequestAsync` resolves to, returned at once when the prompt is small enough to be
 * counted without slices (the usual chat turn); undefined when it needs them (then run
 * `estimateRequestAsync`). Throws as `estimateRequest` does.
 */
export function estimateRequestAtOnce(input: EstimateRequestInput): RequestEstimate | undefined {
  const { adapter, model, price } = pricedModel(input);
  // One walk that counts as it goes (what a collect, then counting the collected strings at once, would give),
  // given up as soon as the strings pass what is always counted exactly.
  const counter = newCounter(model, withTokenizer(input, price), ASYNC_ESTIMATE_MS);
  counter.countUpTo(ALWAYS_EXACT_CHARS);
  const tokens = countRequest(adapter, input.body, counter);
  if (counter.exceeded) return undefined;
  return fullEstimate(input, adapter, model, price, inputEstimate(tokens, counter));
}

function withTokenizer(
  input: EstimateRequestInput,
  price: ResolvedPrice,
): EstimateOptions & { tokenizer: TokenizerFamily } {
  return {
    imageTokens: input.imageTokens,
    maxEstimateMs: input.maxEstimateMs,
    estimateSliceMs: input.estimateSliceMs,
    approximationFactor: input.approximationFactor,
    countCache: input.countCache,
    countScope: input.countScope,
    tokenizer: price.tokenizer,
  };
}

const KIND_NAMES: Readonly<Record<ModelKind, string>> = {
  generation: 'a text-generation model',
  embedding: 'an embedding model',
  transcription: 'a transcription model',
  speech: 'a speech model',
  image: 'an image model',
  realtime: 'a Realtime model',
};

/** Where a model of `kind` is served: the route of an API of that kind, its provider's own first. */
function routeServing(kind: ModelKind, provider: string): string | undefined {
  const serving = providerAdapters().filter((adapter) => (adapter.modelKind ?? 'generation') === kind && adapter.route);
  return (serving.find((adapter) => adapter.provider === provider) ?? serving[0])?.route?.path;
}

/**
 * Throws the client's 400 (`ApiError` `invalid_request`, param `model`) when `model` is of another kind than the API
 * serves (`ProviderAdapter.modelKind`): an embedding model on a chat route, a chat model on embeddings.
 */
export function checkModelKind(adapter: ProviderAdapter, model: string, price: ResolvedPrice): void {
  const served = adapter.modelKind ?? 'generation';
  if (price.kind === served) return;
  const where = adapter.route?.path ?? adapter.api;
  const route = routeServing(price.kind, price.provider);
  throw new ApiError(
    'invalid_request',
    `The model "${model.slice(0, 100)}" is ${KIND_NAMES[price.kind]}, which ${where} does not serve (it serves ${KIND_NAMES[served].replace(/^an? /, '')}s only)${route ? `: call ${route}` : ''}.`,
    { param: 'model' },
  );
}

function pricedModel(input: EstimateRequestInput): { adapter: ProviderAdapter; model: string; price: ResolvedPrice } {
  const adapter = resolve(input.api);
  const model = input.model ?? adapter.read({ body: input.body }).model;
  if (model === undefined)
    throw new ApiError('invalid_request', 'The request body needs a "model" string.', { param: 'model' });
  const price = input.pricing.get(model);
  checkModelKind(adapter, model, price);
  return { adapter, model, price };
}

/**
 * Input too large for a model's context window is refused by its provider; an open-ended request
 * without a known window is bounded by the largest window of any model.
 */
const OPEN_ENDED_INPUT_TOKENS = 2_000_000;

/** The request's input bound (see `InputTokenEstimate.bound`), capped at the model's context window. */
function inputBound(estimate: InputTokenEstimate, price: ResolvedPrice): number {
  const window = price.contextWindow ?? OPEN_ENDED_INPUT_TOKENS;
  return Math.max(estimate.tokens, Math.min(estimate.bound, window));
}

function fullEstimate(
  input: EstimateRequestInput,
  adapter: ProviderAdapter,
  model: string,
  price: ResolvedPrice,
  counted: InputTokenEstimate,
): RequestEstimate {
  // Input past the context window is refused by the provider and billed nothing: a byte bound of pathological text
  // never reserves more than the window holds.
  const window = price.contextWindow;
  const estimate = window !== undefined && counted.tokens > window ? { ...counted, tokens: window } : counted;
  const shape = adapter.read({ body: input.body });
  const maxOutputTokens =
    shape.outputCap ?? input.defaultMaxOutputTokens ?? price.maxOutputTokens ?? FALLBACK_MAX_OUTPUT_TOKENS;
  const outputChoices = shape.choices;
  // Spelled out, not `{ ...estimate, ... }`: see docs/performance.md (properties after a leading spread).
  const result: RequestEstimate = {
    tokens: estimate.tokens,
    exact: estimate.exact,
    method: estimate.method,
    bound: estimate.bound,
    provider: price.provider ?? adapter.provider,
    api: adapter.api,
    model,
    inputTokens: estimate.tokens,
    // The count is the bill (see `billsCountedInput`): its own bound.
    inputTokensBound:
      adapter.billsCountedInput === true && price.ownTokenizer && estimate.exact
        ? estimate.tokens
        : inputBound(estimate, price),
    maxOutputTokens,
    totalTokens: estimate.tokens + maxOutputTokens * outputChoices + mediaTokens(shape.media),
    // At the speed and region the request asks for: a fast or US-only call is reserved at what it may be billed.
    costNanoUsd: maxCostNanoUsd(estimate.tokens, maxOutputTokens * outputChoices, price, shape),
  };
  if (outputChoices > 1) result.outputChoices = outputChoices;
  if (shape.media !== undefined) result.media = shape.media;
  return result;
}
