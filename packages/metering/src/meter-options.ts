// meter()'s options: checked and given their defaults once, into the configuration the meter is built from.
import type { Request } from 'express';
import type { Tracer } from '@opentelemetry/api';
import { createPricing, renderApiError, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { ErrorRenderer, Pricing, ProviderApi, UsageRecord } from '@tollgate/core';
import type { PricingOptions } from '@tollgate/core/costs';
import { adapterFor, DEFAULT_COUNT_CACHE_CHARS } from '@tollgate/providers';
import { ASYNC_ESTIMATE_MS, ESTIMATE_SLICE_MS, SYNC_ESTIMATE_MS } from '@tollgate/providers/count-budget';
import type { CallDeclaration, ProviderAdapter } from '@tollgate/providers';
import { meteringTracer } from './call-span.js';
import type { UsageSink } from './sink.js';
import type { UsageSpool } from './usage-spool.js';

export interface MeterOptions {
  /**
   * Prices: a table from core `createPricing()`, or its options. An unknown model is rejected
   * with 400 `invalid_request` (param `model`) unless the pricing has a default price.
   * @default createPricing() (the shipped table)
   */
  pricing?: Pricing | PricingOptions;
  /** Where settled records go (JSONL, log, Prometheus, PostgreSQL, your own). @default [] */
  sinks?: UsageSink[];
  /**
   * The usage spool (`openUsageSpool()`) records go through to its sinks, instead of `sinks`: a
   * record, and a call sent upstream (`req.tollgate.markSending()`), is on disk before anything
   * else, so that a crash loses none. @default none
   */
  spool?: UsageSpool;
  /**
   * The provider API the route speaks (`openai.chat`, `openai.responses`, `anthropic.messages`,
   * `openai.compatible`, `gemini.generate`, or an adapter), declared, never guessed from the path.
   * A route that declared its call earlier (`providerCall()`) needs none. A route with neither
   * is no provider call: it is metered only when its handler calls `req.tollgate.recordUsage()`,
   * and token limits and budgets after it refuse it (they cannot price it).
   * @default the call declared earlier on the route, else none
   */
  api?: ProviderApi | ProviderAdapter;
  /**
   * For routes that call a provider SDK themselves: builds the provider request from the client's
   * request, so it is estimated, capped and budgeted like a proxied one. Send
   * `req.tollgate.call.body` (budgets may have clamped its cap or downgraded its model), pass
   * `req.tollgate.call.signal` to the SDK, call `req.tollgate.markSending()` right before the SDK
   * call (the spool notes the call), and report the answer with `req.tollgate.recordResponse()`.
   * @default the parsed JSON body is the provider request
   */
  request?: CallDeclaration['request'];
  /**
   * Output cap when the request sets none (a number, or per request). Written into the body so
   * the provider enforces it and the estimate stays an upper bound.
   * @default the model's documented maximum output (not written into the body)
   */
  defaultMaxOutputTokens?: number | ((req: Request) => number | undefined);
  /**
   * Output cap per identity tier (`req.tollgate.identity.tier`): used when the request sets
   * none, and clamps a larger one, through the same `req.tollgate.limitOutput()` as `tierPolicy`
   * (every cap field of the API). Prefer `tierPolicy({ tiers })`, which also checks models.
   * @default {}
   */
  tierMaxOutputTokens?: Record<string, number>;
  /**
   * Add `stream_options.include_usage` to OpenAI chat streams that lack it, and strip the extra
   * usage chunk from what the client receives, so that streams are billed from real usage.
   * @default true
   */
  includeStreamUsage?: boolean;
  /** Tokens counted per image (an upper bound). @default by model, see `estimateInputTokens` */
  imageTokens?: number;
  /**
   * Time budget of exact token counting per request, in ms of counting (waits for the event loop
   * excluded); the rest is bounded by UTF-8 bytes. The count runs in slices (`estimateSliceMs`),
   * so a large budget does not stall other requests. Output counted without provider usage is
   * counted at once, within min(this, 15) ms.
   * @default 250
   */
  maxEstimateMs?: number;
  /** Length of one counting slice, in ms; the event loop turns between slices. @default 4 */
  estimateSliceMs?: number;
  /** Factor on o200k_base counts for models with no public tokenizer (Anthropic, self-hosted). @default 1.25 */
  approximationFactor?: number;
  /**
   * Characters of prompt text whose exact counts are kept, per tenant (a `TokenCountCache`): a text
   * sent again (the system prompt, a conversation resent each turn, tool definitions) is found, not
   * counted again. 0 keeps none.
   * @default 4,000,000 (about 8 MB)
   */
  countCacheChars?: number;
  /** Renders the 400 for a missing or unpriced model. @default core renderApiError */
  renderError?: ErrorRenderer;
  /** Called with every settled record, after the sinks. @default none */
  onUsage?: (record: UsageRecord, req: Request) => void;
  /**
   * Where the span of each provider call goes (OpenTelemetry GenAI conventions: started at
   * `req.tollgate.markSending()`, ended with the usage record); `false` makes none.
   * @default the `@tollgate/metering` tracer of the global provider: a no-op until an SDK registers one
   */
  tracer?: Tracer | false;
}

const KNOWN_OPTIONS = [
  'pricing',
  'sinks',
  'spool',
  'api',
  'request',
  'defaultMaxOutputTokens',
  'tierMaxOutputTokens',
  'includeStreamUsage',
  'imageTokens',
  'maxEstimateMs',
  'estimateSliceMs',
  'approximationFactor',
  'countCacheChars',
  'renderError',
  'onUsage',
  'tracer',
] as const satisfies readonly (keyof MeterOptions)[];

function isPricing(value: unknown): value is Pricing {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Pricing).find === 'function' &&
    typeof (value as Pricing).get === 'function'
  );
}

/** `value` when it is a positive integer, undefined when absent; else the option error naming `name`. */
export function positiveInteger(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      `meter() option ${name} must be a positive integer; got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** The options with every default filled in and every value checked. */
export interface ResolvedMeterOptions {
  readonly pricing: Pricing;
  /** Where records go: the sinks, or the spool (which holds its own); never both. */
  readonly sinks: readonly UsageSink[];
  readonly spool: UsageSpool | undefined;
  /** The provider API every request of this meter is sent to, when the options name it. */
  readonly declaredAdapter: ProviderAdapter | undefined;
  readonly declaration: CallDeclaration;
  /** The output cap of a call that sets none, when its caller's tier has none either. */
  readonly defaultCapOf: (req: Request) => number | undefined;
  readonly tierCaps: ReadonlyMap<string, number>;
  readonly includeStreamUsage: boolean;
  readonly imageTokens: number | undefined;
  readonly maxEstimateMs: number;
  readonly estimateSliceMs: number;
  readonly approximationFactor: number;
  /** Output is counted on 'close', at once: that count stays within the synchronous time box. */
  readonly outputCountMs: number;
  /** 0: no count cache. */
  readonly countCacheChars: number;
  readonly renderError: ErrorRenderer;
  readonly onUsage: MeterOptions['onUsage'];
  readonly tracer: Tracer | undefined;
}

export function invalidOption(message: string): TollgateError {
  return new TollgateError('ERR_TG_METERING_INVALID_OPTION', message);
}

/** Where a meter's records go: its sinks, or a spool (which holds its own); checked for `factory` (`meter()`). */
export function resolveDestination(
  options: Pick<MeterOptions, 'sinks' | 'spool'>,
  factory = 'meter()',
): { sinks: UsageSink[]; spool: UsageSpool | undefined } {
  const sinks = [...(options.sinks ?? [])];
  for (const sink of sinks) {
    if (typeof sink?.write !== 'function')
      throw invalidOption(`${factory} option sinks must hold objects with write(), flush() and close()`);
  }
  const spool = options.spool;
  if (spool !== undefined && (typeof spool?.deliver !== 'function' || typeof spool.writeIntent !== 'function'))
    throw invalidOption(`${factory} option spool must be a usage spool: openUsageSpool({ directory, sinks })`);
  if (spool && sinks.length > 0)
    throw invalidOption(`${factory} takes sinks or a spool (which holds its sinks), not both`);
  return { sinks, spool };
}

function resolveDeclaredAdapter(options: MeterOptions): ProviderAdapter | undefined {
  const declaredAdapter = options.api === undefined ? undefined : adapterFor(options.api, 'meter() option api');
  if (options.request !== undefined && typeof options.request !== 'function')
    throw invalidOption('meter() option request must be a function (req) => provider request body');
  if (options.request !== undefined && !declaredAdapter)
    throw invalidOption('meter() option request needs the api it is sent to: meter({ api, request })');
  return declaredAdapter;
}

function resolveOutputCaps(options: MeterOptions): Pick<ResolvedMeterOptions, 'defaultCapOf' | 'tierCaps'> {
  const fixedDefaultCap =
    typeof options.defaultMaxOutputTokens === 'number'
      ? positiveInteger(options.defaultMaxOutputTokens, 'defaultMaxOutputTokens')
      : undefined;
  const defaultCapOf =
    typeof options.defaultMaxOutputTokens === 'function' ? options.defaultMaxOutputTokens : () => fixedDefaultCap;
  const tierCaps = new Map<string, number>();
  for (const [tier, cap] of Object.entries(options.tierMaxOutputTokens ?? {}))
    tierCaps.set(tier, positiveInteger(cap, `tierMaxOutputTokens.${tier}`)!);
  return { defaultCapOf, tierCaps };
}

function resolveTracer(tracer: MeterOptions['tracer']): Tracer | undefined {
  if (tracer !== undefined && tracer !== false && typeof tracer?.startSpan !== 'function')
    throw invalidOption('meter() option tracer must be an OpenTelemetry Tracer (trace.getTracer(name)) or false');
  return tracer === false ? undefined : (tracer ?? meteringTracer());
}

/** Checks every option and fills its default; throws the `ERR_TG_METERING_*` error of the first wrong one. Starts nothing. */
export function resolveMeterOptions(options: MeterOptions): ResolvedMeterOptions {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_METERING_UNKNOWN_OPTION', 'meter');
  const pricing = isPricing(options.pricing) ? options.pricing : createPricing(options.pricing);
  const { sinks, spool } = resolveDestination(options);
  const declaredAdapter = resolveDeclaredAdapter(options);
  const { defaultCapOf, tierCaps } = resolveOutputCaps(options);
  const imageTokens = positiveInteger(options.imageTokens, 'imageTokens');
  const maxEstimateMs = options.maxEstimateMs ?? ASYNC_ESTIMATE_MS;
  const estimateSliceMs = options.estimateSliceMs ?? ESTIMATE_SLICE_MS;
  const approximationFactor = options.approximationFactor ?? 1.25;
  if (!(maxEstimateMs > 0)) throw invalidOption('meter() option maxEstimateMs must be a positive number');
  if (!(estimateSliceMs > 0)) throw invalidOption('meter() option estimateSliceMs must be a positive number');
  if (!(approximationFactor >= 1)) throw invalidOption('meter() option approximationFactor must be a number >= 1');
  const countCacheChars =
    options.countCacheChars === 0
      ? 0
      : (positiveInteger(options.countCacheChars, 'countCacheChars') ?? DEFAULT_COUNT_CACHE_CHARS);
  return Object.freeze({
    pricing,
    sinks,
    spool,
    declaredAdapter,
    declaration: { request: options.request },
    defaultCapOf,
    tierCaps,
    includeStreamUsage: options.includeStreamUsage ?? true,
    imageTokens,
    maxEstimateMs,
    estimateSliceMs,
    approximationFactor,
    outputCountMs: Math.min(maxEstimateMs, SYNC_ESTIMATE_MS),
    countCacheChars,
    renderError: options.renderError ?? renderApiError,
    onUsage: options.onUsage,
    tracer: resolveTracer(options.tracer),
  });
}
