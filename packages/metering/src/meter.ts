// meter(): estimates a provider request before the handler, reads real usage from the response on the way, settles once.
import {
  ApiError,
  assertKnownOptions,
  costNanoUsd,
  createPricing,
  detectProviderApi,
  getContext,
  providerOf,
  renderApiError,
  requestModel,
  requestOutputCap,
  requestStreams,
  setRequestOutputCap,
  TollgateError,
  UnknownModelError,
} from '@tollgate/core';
import type { ErrorRenderer, Pricing, PricingOptions, ProviderApi, ReportedUsage, TokenUsage, TollgateContext, UsageRecord } from '@tollgate/core';
import type { NextFunction, Request, Response } from 'express';
import { ASYNC_ESTIMATE_MS, ESTIMATE_SLICE_MS, estimateRequestAsync, isOpenAiModel, SYNC_ESTIMATE_MS } from './estimate-request.js';
import type { RequestEstimate } from './estimate-request.js';
import { ResponseTap } from './response-tap.js';
import type { UsageSink } from './sink.js';
import { CountBudget, countTextTokens, encodingForModel, preloadTokenizers } from './tokenizer.js';
import type { ReadUsage } from './usage-reader.js';

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
   * The provider API a request speaks. A request with none is metered only when its handler
   * calls `req.tollgate.recordUsage()`.
   * @default detected from the path: `.../chat/completions`, `.../responses`, `.../messages`
   */
  api?: ProviderApi | ((req: Request) => ProviderApi | undefined);
  /**
   * Output cap when the request sets none (a number, or per request). Written into the body so
   * the provider enforces it and the estimate stays an upper bound.
   * @default the model's documented maximum output (not written into the body)
   */
  defaultMaxOutputTokens?: number | ((req: Request) => number | undefined);
  /**
   * Output cap per identity tier (`req.tollgate.identity.tier`): used when the request sets
   * none, and clamps a larger one; written into the body either way.
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
  /** Renders the 400 for a missing or unpriced model. @default core renderApiError */
  renderError?: ErrorRenderer;
  /** Called with every settled record, after the sinks. @default none */
  onUsage?: (record: UsageRecord, req: Request) => void;
}

const KNOWN_OPTIONS = [
  'pricing', 'sinks', 'api', 'defaultMaxOutputTokens', 'tierMaxOutputTokens', 'includeStreamUsage',
  'imageTokens', 'maxEstimateMs', 'estimateSliceMs', 'approximationFactor', 'renderError', 'onUsage',
] as const satisfies readonly (keyof MeterOptions)[];

function isPricing(value: unknown): value is Pricing {
  return typeof value === 'object' && value !== null && typeof (value as Pricing).find === 'function' && typeof (value as Pricing).get === 'function';
}

function positiveInteger(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', `meter() option ${name} must be a positive integer; got ${JSON.stringify(value)}`);
  }
  return value;
}

function hasTokens(usage: ReportedUsage | undefined): usage is ReportedUsage {
  return usage !== undefined && ['inputTokens', 'outputTokens', 'cachedInputTokens', 'cacheWriteTokens', 'reasoningTokens'].some((field) => typeof usage[field as keyof ReportedUsage] === 'number');
}

const nonNegative = (value: number | undefined): number => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0);

/**
 * Meters provider calls: sets `req.tollgate.estimate` (tokens and cost upper bound) before the
 * handler, reads the real usage from the response as it streams past (never buffering or
 * delaying it), and settles the request exactly once with a `UsageRecord`, which goes to the
 * sinks. Mount it after auth and before token limits and budgets.
 */
export function meter(options: MeterOptions = {}) {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_METERING_UNKNOWN_OPTION', 'meter');
  const pricing = isPricing(options.pricing) ? options.pricing : createPricing(options.pricing);
  const sinks = [...(options.sinks ?? [])];
  for (const sink of sinks) {
    if (typeof sink?.write !== 'function') throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', 'meter() option sinks must hold objects with write(), flush() and close()');
  }
  const apiOf = typeof options.api === 'function' ? options.api : options.api !== undefined ? () => options.api as ProviderApi : (req: Request) => detectProviderApi(req.originalUrl ?? req.url);
  const fixedDefaultCap = typeof options.defaultMaxOutputTokens === 'number' ? positiveInteger(options.defaultMaxOutputTokens, 'defaultMaxOutputTokens') : undefined;
  const defaultCapOf = typeof options.defaultMaxOutputTokens === 'function' ? options.defaultMaxOutputTokens : () => fixedDefaultCap;
  const tierCaps = new Map<string, number>();
  for (const [tier, cap] of Object.entries(options.tierMaxOutputTokens ?? {})) tierCaps.set(tier, positiveInteger(cap, `tierMaxOutputTokens.${tier}`)!);
  const includeStreamUsage = options.includeStreamUsage ?? true;
  const estimateOptions = {
    imageTokens: positiveInteger(options.imageTokens, 'imageTokens'),
    maxEstimateMs: options.maxEstimateMs ?? ASYNC_ESTIMATE_MS,
    estimateSliceMs: options.estimateSliceMs ?? ESTIMATE_SLICE_MS,
    approximationFactor: options.approximationFactor ?? 1.25,
  };
  if (!(estimateOptions.maxEstimateMs > 0)) throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', 'meter() option maxEstimateMs must be a positive number');
  if (!(estimateOptions.estimateSliceMs > 0)) throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', 'meter() option estimateSliceMs must be a positive number');
  // Output is counted on 'close', at once: keep that count within the synchronous time box.
  const outputCountMs = Math.min(estimateOptions.maxEstimateMs, SYNC_ESTIMATE_MS);
  if (!(estimateOptions.approximationFactor >= 1)) throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', 'meter() option approximationFactor must be a number >= 1');
  const render = options.renderError ?? renderApiError;
  const onUsage = options.onUsage;
  // Load the encodings now, off the request path; until then counts use the byte bound.
  void preloadTokenizers();

  const countOutput = (model: string, api: ProviderApi) => (text: string) => {
    const exact = api !== 'anthropic.messages' && isOpenAiModel(model);
    const tokens = countTextTokens(text, exact ? encodingForModel(model) : 'o200k_base', new CountBudget(outputCountMs));
    return exact ? tokens : Math.ceil(tokens * estimateOptions.approximationFactor);
  };

  /** Estimates the request and prepares its body; throws ApiError for the client. */
  const prepare = async (req: Request, api: ProviderApi, ctx: TollgateContext): Promise<{ estimate: RequestEstimate; addedUsage: boolean }> => {
    const body: unknown = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ApiError('invalid_request', 'The request body must be a JSON object (is express.json() mounted before meter()?).', { param: 'body' });
    }
    const model = requestModel(body);
    if (model === undefined) throw new ApiError('invalid_request', 'The request body needs a "model" string.', { param: 'model' });
    const tier = ctx.identity?.tier;
    const tierCap = tier === undefined ? undefined : tierCaps.get(tier);
    const asked = requestOutputCap(body, api);
    let defaultCap = asked === undefined ? (tierCap ?? defaultCapOf(req)) : undefined;
    if (defaultCap !== undefined) defaultCap = positiveInteger(defaultCap, 'defaultMaxOutputTokens');
    const cap = tierCap !== undefined && asked !== undefined && asked > tierCap ? tierCap : defaultCap;
    // A cap the provider does not know about would not bound anything: write it into the body.
    if (cap !== undefined) setRequestOutputCap(body, api, cap);
    let estimate: RequestEstimate;
    try {
      estimate = await estimateRequestAsync({ api, body, model, pricing, ...estimateOptions, defaultMaxOutputTokens: cap });
    } catch (error) {
      if (error instanceof UnknownModelError) {
        throw new ApiError('invalid_request', `The model "${model}" is not available: it has no price in this gateway's pricing table.`, { param: 'model', cause: error });
      }
      throw error;
    }
    let addedUsage = false;
    if (includeStreamUsage && api === 'openai.chat' && requestStreams(body)) {
      const record = body as Record<string, unknown>;
      const streamOptions = record.stream_options;
      const current = typeof streamOptions === 'object' && streamOptions !== null ? (streamOptions as Record<string, unknown>) : {};
      if (current.include_usage !== true) {
        record.stream_options = Object.assign({}, current, { include_usage: true });
        addedUsage = true;
      }
    }
    return { estimate, addedUsage };
  };

  return function meterUsage(req: Request, res: Response, next: NextFunction): void {
    const ctx = getContext(req, res);
    // Another meter already took charge (mounted twice): one record per request.
    if (ctx.metered) {
      next();
      return;
    }
    const api = apiOf(req);
    if (api === undefined) {
      takeCharge(req, res, next, ctx, undefined, false);
      return;
    }
    // The estimate is counted in slices, with the event loop turning between them.
    prepare(req, api, ctx).then(
      (prepared) => {
        // The client left while it was counted: core settled the request on 'close' already.
        if (ctx.settled) return;
        ctx.estimate = prepared.estimate;
        ctx.requestedModel ??= prepared.estimate.model;
        takeCharge(req, res, next, ctx, api, prepared.addedUsage);
      },
      (error: unknown) => {
        if (ctx.settled) return;
        if (error instanceof ApiError) render(error, req, res);
        else next(error);
      },
    ).catch((error: unknown) => next(error));
  };

  /** Marks the request metered, taps the response and settles it on 'close'; then calls next. */
  function takeCharge(req: Request, res: Response, next: NextFunction, ctx: TollgateContext, api: ProviderApi | undefined, addedUsage: boolean): void {
    ctx.metered = true;
    const requestStreamed = requestStreams(req.body);
    const route = (req.originalUrl ?? req.url ?? '').split('?')[0] ?? '';
    const tap = new ResponseTap(res, api, addedUsage);

    // on, not once: 'close' comes once per response (once would wrap the listener per request).
    res.on('close', () => {
      let record: UsageRecord | undefined;
      try {
        record = buildRecord(req, res, ctx, api, tap, route, requestStreamed);
      } catch (error) {
        process.emitWarning(`tollgate: metering failed for request ${ctx.requestId}: ${error instanceof Error ? error.message : String(error)}`);
      }
      void ctx.settle(record);
      if (!record) return;
      for (const sink of sinks) {
        try {
          sink.write(record);
        } catch (error) {
          process.emitWarning(`tollgate: a usage sink threw: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
      if (onUsage) {
        try {
          onUsage(record, req);
        } catch (error) {
          process.emitWarning(`tollgate: onUsage threw: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    });
    next();
  }

  function buildRecord(req: Request, res: Response, ctx: TollgateContext, api: ProviderApi | undefined, tap: ResponseTap, route: string, requestStreamed: boolean): UsageRecord | undefined {
    const reported = hasTokens(ctx.reportedUsage) ? ctx.reportedUsage : undefined;
    // A route that is no provider API produces a record only when its handler reported usage.
    if (!api && !reported) return undefined;
    const estimate = ctx.estimate;
    const aborted = !res.writableFinished;
    const reader = tap.finish();
    const failed = res.statusCode >= 400 && !aborted;

    let usage: TokenUsage;
    let usageSource: UsageRecord['usageSource'];
    let reportedModel: string | undefined;
    if (reported) {
      usage = {
        inputTokens: reported.inputTokens === undefined ? (estimate?.inputTokens ?? 0) : nonNegative(reported.inputTokens),
        cachedInputTokens: nonNegative(reported.cachedInputTokens),
        cacheWriteTokens: nonNegative(reported.cacheWriteTokens),
        outputTokens: nonNegative(reported.outputTokens),
        reasoningTokens: nonNegative(reported.reasoningTokens),
      };
      usageSource = 'provider';
      reportedModel = ctx.reportedUsage?.model;
    } else {
      const model = reader?.model ?? estimate?.model ?? '';
      let read: ReadUsage | undefined = reader && api ? reader.result(countOutput(model, api)) : undefined;
      // A failed call without provider usage produced no model output: what passed is an error body, not billable text.
      if (failed && read?.source === 'counted') read = undefined;
      // Without usage the prompt counts as processed unless the call failed before any output.
      const assumedInput = failed && !read ? 0 : (estimate?.inputTokens ?? 0);
      usage = read?.usage ?? { inputTokens: assumedInput, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 0, reasoningTokens: 0 };
      if (read && read.usage.inputTokens === 0) usage.inputTokens = assumedInput;
      usageSource = read?.source ?? 'counted';
      // The cap is in the body, so the provider never produced more: a count above it is the
      // approximation (o200k_base x approximationFactor for other tokenizers) overshooting.
      if (usageSource === 'counted' && estimate) usage.outputTokens = Math.min(usage.outputTokens, estimate.maxOutputTokens * (estimate.outputChoices ?? 1));
      reportedModel = reader?.model;
    }

    // Bill what ran: the provider's model when it has a price, else the (maybe downgraded) estimate model.
    let billedModel: string | null = null;
    let price = undefined as ReturnType<Pricing['find']>;
    for (const candidate of [reportedModel, estimate?.model]) {
      if (!candidate) continue;
      price = pricing.find(candidate);
      if (price) {
        billedModel = candidate;
        break;
      }
    }
    billedModel ??= reportedModel ?? estimate?.model ?? null;
    const identity = ctx.identity;
    return {
      requestId: ctx.requestId,
      timestamp: new Date(ctx.startedAt).toISOString(),
      keyId: identity?.keyId ?? null,
      tenantId: identity?.tenantId ?? null,
      userId: identity?.userId ?? null,
      feature: identity?.feature ?? null,
      route,
      provider: price?.provider ?? estimate?.provider ?? ctx.reportedUsage?.provider ?? (api ? providerOf(api) : null),
      model: billedModel,
      requestedModel: ctx.requestedModel ?? requestModel(req.body) ?? null,
      ...usage,
      costNanoUsd: price ? costNanoUsd(usage, price) : 0,
      estimatedCostNanoUsd: estimate?.costNanoUsd ?? 0,
      status: res.statusCode,
      stream: tap.streamed || requestStreamed,
      aborted,
      latencyMs: Math.max(0, Date.now() - ctx.startedAt),
      usageSource,
    };
  }
}
