// meter(): estimates a provider request before the handler, reads real usage from the response on the way, settles once.
import { ApiError, getContext, TollgateError, UnknownModelError } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import { sequentialIds } from '@tollgate/core/provider-call';
import type {
  ErrorRenderer,
  Pricing,
  ReportedUsage,
  TokenUsage,
  TollgateContext,
  UsageEstimate,
  UsageRecord,
} from '@tollgate/core';
import type { MeterCharge, ProviderCall } from '@tollgate/core/provider-call';
import type { ResolvedPrice } from '@tollgate/core/costs';
import {
  adapterFor,
  countTextTokens,
  lastPieceStart,
  lowerOutputTokens,
  maxTokenBytesOf,
  upperOutputTokens,
  estimateRequestAsync,
  estimateRequestAtOnce,
  preloadTokenizers,
  TokenCountCache,
} from '@tollgate/providers';
import { CountBudget } from '@tollgate/providers/count-budget';
import { declareOrAnswer } from '@tollgate/providers';
import type { EncodingName, EstimateRequestInput, ProviderAdapter, RequestEstimate } from '@tollgate/providers';
import type { ReadUsage } from '@tollgate/providers/answers';
import type { UsageReader } from '@tollgate/providers';
import type { Span, Tracer } from '@opentelemetry/api';
import type { NextFunction, Request, Response } from 'express';
import { endCallSpan, startCallSpan } from './call-span.js';
import { UsageTap } from './response-tap.js';
import type { CallBill, OutputCounting } from './response-tap.js';
import { writeToSinks } from './sink.js';
import type { UsageSink } from './sink.js';
import type { UsageSpool } from './usage-spool.js';
import { positiveInteger, resolveMeterOptions } from './meter-options.js';
import type { MeterOptions, ResolvedMeterOptions } from './meter-options.js';

export type { MeterOptions } from './meter-options.js';

/**
 * `text` without the replacement characters it ends with: an answer cut at its cap inside a character ends with the
 * token of its first bytes, which decodes to U+FFFD and would count as more tokens than the one it was.
 */
function withoutPartialEnd(text: string): string {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
  return end === text.length ? text : text.slice(0, end);
}

function hasTokens(usage: ReportedUsage | undefined): usage is ReportedUsage {
  return (
    usage !== undefined &&
    ['inputTokens', 'outputTokens', 'cachedInputTokens', 'cacheWriteTokens', 'reasoningTokens'].some(
      (field) => typeof usage[field as keyof ReportedUsage] === 'number',
    )
  );
}

const nonNegative = (value: number | undefined): number =>
  typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;

/**
 * What a call sent upstream is charged should no record of it follow (its process died first): the
 * reservation's bound, since the provider may have billed it whole. Status 0: no answer was sent.
 */
function boundRecord(ctx: TollgateContext, id: string, route: string, conversationId: string | null): UsageRecord {
  const estimate = ctx.estimate!;
  // What the budget charges a reservation nobody settles (its amount, input at its bound): the books agree.
  const held = ctx.reservations.find((note) => note.kind === 'budget')?.amount;
  const record = newRecord(ctx, id, route, conversationId, 'estimated');
  record.provider = estimate.provider;
  record.model = estimate.model;
  record.inputTokens = held === undefined ? estimate.inputTokens : (estimate.inputTokensBound ?? estimate.inputTokens);
  record.outputTokens = estimate.maxOutputTokens * (estimate.outputChoices ?? 1);
  record.costNanoUsd = Math.max(held ?? 0, estimate.costNanoUsd);
  record.estimatedCostNanoUsd = estimate.costNanoUsd;
  if (estimate.media !== undefined) record.media = estimate.media;
  record.stream = ctx.call?.stream ?? false;
  record.aborted = true;
  return record;
}

/** Record ids are unique (the ledger's key), not secret: a random UUID per process, its last 12 digits a counter. */
export const nextRecordId = sequentialIds(1);

/** Same shape as a request id: anything else in the header is ignored, as an unusable `x-request-id` is. */
const CONVERSATION_ID = /^[\w.:@-]{1,128}$/;

/** The caller's conversation id (`x-conversation-id`), which outcomes can be reported against; null without one. */
export function conversationOf(req: Request): string | null {
  const value = req.headers['x-conversation-id'];
  return typeof value === 'string' && CONVERSATION_ID.test(value) ? value : null;
}

/**
 * A response-cache hit: the provider was not called. The record keeps the stored answer's token
 * counts (what was served), bills `costFraction` of their cost and notes the rest as saved.
 */
function chargeCacheHit(record: UsageRecord, costFraction: number): void {
  const full = record.costNanoUsd;
  const billed = Math.ceil(full * costFraction);
  record.costNanoUsd = billed;
  record.usageSource = 'cache';
  if (full > billed) record.savedNanoUsd = full - billed;
}

/** Provider prompt caching: what the cached input tokens would have cost at the input price, less what they cost. */
function notePromptCacheSaving(
  record: UsageRecord,
  usage: TokenUsage,
  price: ResolvedPrice,
  priceOf: (model: string) => ResolvedPrice | undefined,
): void {
  // inputTokens holds the cached ones (the adapters report every API that way): priced uncached, they are plain input.
  const iterations = usage.iterations?.map((call) => ({ ...call, cachedInputTokens: 0 }));
  const uncachedCost = costNanoUsd(
    { ...usage, cachedInputTokens: 0, ...(iterations ? { iterations } : {}) },
    price,
    priceOf,
  );
  const saved = uncachedCost - record.costNanoUsd;
  if (saved > 0) record.savedNanoUsd = saved;
}

/** The second the last record's timestamp fell in, and its ISO text up to the milliseconds. */
let timestampSecond = Number.NaN;
let timestampPrefix = '';

/** A record's ISO timestamp: the Date is formatted once per second, the records of that second share its text. */
function isoTimestamp(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== timestampSecond) {
    const iso = new Date(second * 1000).toISOString();
    timestampSecond = second;
    timestampPrefix = iso.slice(0, iso.length - 4);
  }
  const millis = ms - second * 1000;
  return `${timestampPrefix}${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
}

/** Where a meter's records go: through the spool (which writes its sinks), else to the sinks. */
export function usageDeliverer(
  spool: UsageSpool | undefined,
  sinks: readonly UsageSink[],
): (record: UsageRecord) => void {
  return spool ? (record) => spool.deliver(record) : (record) => writeToSinks(sinks, record);
}

/** Tells `onUsage` of a settled record; its failure is reported, never the request's. */
export function tellUsage(onUsage: MeterOptions['onUsage'], record: UsageRecord, req: Request): void {
  if (!onUsage) return;
  try {
    onUsage(record, req);
  } catch (error) {
    process.emitWarning(`tollgate: onUsage threw: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** The path of the request, without its query: the record's `route`. */
export function routeOf(req: Request): string {
  const url = req.originalUrl ?? req.url ?? '';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * A record of the request: who made it, when and where (what every record of it shares), its
 * amounts zero until the caller fills them. Made whole at once, so that filling it in adds no property.
 */
export function newRecord(
  ctx: TollgateContext,
  id: string,
  route: string,
  conversationId: string | null,
  usageSource: UsageRecord['usageSource'],
): UsageRecord {
  const identity = ctx.identity;
  const record: UsageRecord = {
    id,
    requestId: ctx.requestId,
    conversationId,
    timestamp: isoTimestamp(ctx.startedAt),
    keyId: identity?.keyId ?? null,
    tenantId: identity?.tenantId ?? null,
    userId: identity?.userId ?? null,
    feature: identity?.feature ?? null,
    route,
    provider: null,
    model: null,
    requestedModel: ctx.requestedModel ?? null,
    inputTokens: 0,
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: 0,
    reasoningTokens: 0,
    costNanoUsd: 0,
    estimatedCostNanoUsd: 0,
    status: 0,
    stream: false,
    aborted: false,
    latencyMs: 0,
    usageSource,
  };
  // A shadow let it through where a limit, a budget or the guard would have refused it (see shadowMode in core).
  if (ctx.shadowRefusal !== undefined) record.shadowRefusal = ctx.shadowRefusal;
  // The guard's abuse detection scored the caller (see @tollgate/guard's abuse options).
  if (ctx.abuseScore !== undefined) record.abuseScore = ctx.abuseScore;
  // Only when the body's end-user value could not be a user (attribution()): absent means none.
  if (identity?.clientUserId !== undefined) record.clientUserId = identity.clientUserId;
  // Only when the client named its session (attribution's sessionHeaders): absent means none.
  if (identity?.sessionId !== undefined) record.session = identity.sessionId;
  // Only when the call was charged to a team of its tenant (the key's `team`, attribution's team header).
  if (identity?.team !== undefined) record.team = identity.team;
  // Only on tagged requests (attribution's tags header): absent means none, in the record as in the log.
  if (identity?.tags !== undefined && identity.tags.length > 0) record.tags = [...identity.tags];
  return record;
}

/** How the output of a call at a price is counted, for the response tap: its countings made once per meter. */
function outputCountings({
  outputCountMs,
}: ResolvedMeterOptions): (price: ResolvedPrice | undefined) => OutputCounting {
  /** The provider's own tokenizer: the exact count, and where text cannot be counted in time, bounds of it. */
  // Both add up where text is cut at a piece's start (exact counts; bounds of bytes where time runs out).
  const own = (encoding: EncodingName): OutputCounting => {
    const pieceStart = (text: string) => lastPieceStart(text, encoding);
    return {
      countOutput: Object.assign((text: string) => countTextTokens(text, encoding, new CountBudget(outputCountMs)), {
        additive: true,
        pieceStart,
      }),
      stopCount: Object.assign(
        (text: string) => countTextTokens(withoutPartialEnd(text), encoding, new CountBudget(outputCountMs), 'lower'),
        { additive: true, pieceStart },
      ),
      own: true,
    };
  };
  // Made when a price first names the encoding: its table loads with its first count (see loadEncoding).
  const ownCountings = new Map<EncodingName, OutputCounting>();
  const ownCounting = (encoding: EncodingName): OutputCounting => {
    let counting = ownCountings.get(encoding);
    if (!counting) {
      counting = own(encoding);
      ownCountings.set(encoding, counting);
    }
    return counting;
  };
  // Any other tokenizer: bounds of its count (providers' output-bounds.ts), the lower one by the provider's longest token.
  const upper = upperOutputTokens(outputCountMs);
  const boundCountings = new Map<number, OutputCounting>();
  const boundCounting = (maxTokenBytes: number): OutputCounting => {
    let counting = boundCountings.get(maxTokenBytes);
    if (!counting) {
      counting = { countOutput: upper, stopCount: lowerOutputTokens(maxTokenBytes), own: false };
      boundCountings.set(maxTokenBytes, counting);
    }
    return counting;
  };
  return (price: ResolvedPrice | undefined): OutputCounting => {
    if (price?.ownTokenizer !== true) return boundCounting(maxTokenBytesOf(price?.provider));
    return ownCounting(price.tokenizer === 'approximate' ? 'o200k_base' : price.tokenizer);
  };
}

/**
 * Meters provider calls: sets `req.tollgate.estimate` (tokens and cost upper bound) before the
 * handler, reads the real usage from the response as it streams past (never buffering or
 * delaying it), and settles the request exactly once with a `UsageRecord`, which goes to the
 * sinks. Mount it after auth and before token limits and budgets.
 */
export function meter(options: MeterOptions = {}) {
  const config = resolveMeterOptions(options);
  const { pricing, declaredAdapter, declaration, renderError } = config;
  // Load the encoding of current models (and of every lower bound) now, off the request path; until then counts use
  // the byte bound. Another encoding loads the first time a request needs it.
  void preloadTokenizers(['o200k_base']);
  const state = meterState(config);

  return Object.assign(meterUsage, {
    /** Resolves once the settles waiting for a provider's count of their output (see `countOutputTokens`) are done. */
    settlesDone: async (): Promise<void> => {
      while (state.settling.recounting.size > 0) await Promise.all([...state.settling.recounting]);
    },
  });

  function meterUsage(req: Request, res: Response, next: NextFunction): void {
    const ctx = getContext(req, res);
    // Another meter already took charge (mounted twice): one record per request.
    if (ctx.metered) {
      next();
      return;
    }
    const call = declareOrAnswer(req, res, next, declaredAdapter, declaration, renderError);
    if (call === false) return;
    if (call === undefined) {
      takeCharge(state, req, res, next, ctx, undefined, false);
      return;
    }
    const adapter = adapterFor(call.adapter as ProviderAdapter);
    // Answered from the response cache (known before the meter): no reservation needs an estimate, so the prompt is
    // not tokenized; the record reads the stored answer's usage and prices it at the model's price.
    if (ctx.cacheHit && call.model !== undefined && pricing.find(call.model)) {
      takeCharge(state, req, res, next, ctx, adapter, false);
      return;
    }
    estimateAndCharge(state, req, res, next, ctx, call, adapter);
  }
}

/** What a meter makes once from its resolved options: what each request's admission, estimate and charge read. */
interface MeterState {
  readonly config: ResolvedMeterOptions;
  readonly countCache: TokenCountCache | undefined;
  /** The counting of the model the request runs with now: a model group may have switched it since the estimate. */
  readonly countingOf: (ctx: TollgateContext) => OutputCounting;
  readonly settling: Settling;
  /** Set on each metered request's context: usage a handler reports must be priceable. */
  readonly usageCheck: (ctx: TollgateContext, usage: ReportedUsage) => void;
}

function meterState(config: ResolvedMeterOptions): MeterState {
  const { pricing, spool, sinks, onUsage, tracer } = config;
  const countingOfPrice = outputCountings(config);
  return {
    config,
    countCache: config.countCacheChars === 0 ? undefined : new TokenCountCache(config.countCacheChars),
    countingOf: (ctx) => {
      const model = ctx.estimate?.model ?? ctx.call?.model;
      return countingOfPrice(model === undefined ? undefined : pricing.find(model));
    },
    settling: { pricing, deliver: usageDeliverer(spool, sinks), onUsage, spool, tracer, recounting: new Set() },
    usageCheck: reportedUsageCheck(pricing),
  };
}

/** Usage a handler reports must be priceable: an unknown model is never free. */
function reportedUsageCheck(pricing: Pricing): (ctx: TollgateContext, usage: ReportedUsage) => void {
  return function checkReportedUsage(ctx, usage) {
    const model = usage.model ?? ctx.estimate?.model;
    if (model === undefined) {
      throw new TollgateError(
        'ERR_TG_METERING_UNPRICED_USAGE',
        'recordUsage() needs the model the call ran with (no provider call was declared on this route to take it from)',
      );
    }
    // Billed at the admitted model's price when the reported one is unknown (see buildRecord); without one, refused.
    if (!pricing.find(model) && !(ctx.estimate && pricing.find(ctx.estimate.model))) throw new UnknownModelError(model);
  };
}

/**
 * Admits and estimates a declared call, then takes charge of it: at once when the prompt is small enough, else
 * counted in slices with the event loop turning between them. A failed admission or estimate is refused.
 */
function estimateAndCharge(
  state: MeterState,
  req: Request,
  res: Response,
  next: NextFunction,
  ctx: TollgateContext,
  call: ProviderCall,
  adapter: ProviderAdapter,
): void {
  const render = state.config.renderError;
  let price: ResolvedPrice;
  let estimate: RequestEstimate | undefined;
  try {
    price = admitCall(state.config, req, call, ctx);
    estimate = estimateRequestAtOnce(estimateInput(state, call, adapter, ctx));
  } catch (error) {
    refuseEstimate(render, error, call.model, req, res, next);
    return;
  }
  // Estimated: the estimate goes on the request, the stream is asked for its usage, the response is tapped.
  if (estimate) {
    const addedUsage = askStreamUsage(state.config, call, adapter);
    ctx.setEstimate(estimate, price);
    takeCharge(state, req, res, next, ctx, adapter, addedUsage);
    return;
  }
  // A larger prompt is counted in slices, with the event loop turning between them.
  estimateRequestAsync(estimateInput(state, call, adapter, ctx))
    .then(
      (counted) => {
        // The client left while it was counted: core settled the request on 'close' already.
        if (ctx.settled) return;
        const addedUsage = askStreamUsage(state.config, call, adapter);
        ctx.setEstimate(counted, price);
        takeCharge(state, req, res, next, ctx, adapter, addedUsage);
      },
      (error: unknown) => {
        if (!ctx.settled) refuseEstimate(render, error, call.model, req, res, next);
      },
    )
    .catch((error: unknown) => next(error));
}

/** Caps the declared call's output as the route and tier say, and prices its model; throws ApiError for the client. */
function admitCall(
  config: ResolvedMeterOptions,
  req: Request,
  call: ProviderCall,
  ctx: TollgateContext,
): ResolvedPrice {
  const tier = ctx.identity?.tier;
  const tierCap = tier === undefined ? undefined : config.tierCaps.get(tier);
  if (call.outputCap === undefined) {
    const defaultCap = tierCap ?? config.defaultCapOf(req);
    // A cap the provider does not know about would not bound anything: it goes into the body.
    if (defaultCap !== undefined) ctx.limitOutput(positiveInteger(defaultCap, 'defaultMaxOutputTokens')!);
  } else if (tierCap !== undefined) {
    ctx.limitOutput(tierCap);
  }
  // Pinned for the request from here to its settle, at the tier the call asked for.
  return config.pricing.forRequest(ctx).get(call.model!);
}

// Spelled out, not spread: see docs/performance.md (object literals with a spread).
function estimateInput(
  { config, countCache }: MeterState,
  call: ProviderCall,
  adapter: ProviderAdapter,
  ctx: TollgateContext,
): EstimateRequestInput {
  return {
    api: adapter,
    body: call.body,
    model: call.model!,
    pricing: config.pricing.forRequest(ctx),
    imageTokens: config.imageTokens,
    maxEstimateMs: config.maxEstimateMs,
    estimateSliceMs: config.estimateSliceMs,
    approximationFactor: config.approximationFactor,
    countCache,
    // Per tenant: no tenant learns from a faster answer what another one sent.
    countScope: ctx.identity?.tenantId ?? '',
  };
}

/** An estimate failed: an unpriced model or a bad request is the client's 400, anything else the app's error. */
function refuseEstimate(
  render: ErrorRenderer,
  error: unknown,
  model: string | undefined,
  req: Request,
  res: Response,
  next: NextFunction,
): void {
  if (error instanceof UnknownModelError) {
    const message = `The model "${model}" is not available: it has no price in this gateway's pricing table.`;
    render(new ApiError('invalid_request', message, { param: 'model', cause: error }), req, res);
  } else if (error instanceof ApiError) {
    render(error, req, res);
  } else {
    next(error);
  }
}

/** Whether the request was changed to ask its stream for the usage (`includeStreamUsage`). */
function askStreamUsage(config: ResolvedMeterOptions, call: ProviderCall, adapter: ProviderAdapter): boolean {
  return config.includeStreamUsage && call.stream && adapter.requestStreamUsage(call.body);
}

/** Marks the request metered, taps the response and settles it when the response closes; then calls next. */
function takeCharge(
  state: MeterState,
  req: Request,
  res: Response,
  next: NextFunction,
  ctx: TollgateContext,
  adapter: ProviderAdapter | undefined,
  addedUsage: boolean,
): void {
  ctx.metered = true;
  ctx.usageCheck = state.usageCheck;
  const route = routeOf(req);
  const tap = new UsageTap(res, ctx, adapter, addedUsage, state.countingOf);
  const charge = new MeteredRequest(state.settling, req, res, ctx, adapter, tap, route);
  ctx.meterCharge = charge;
  tap.bill = charge;
  if (adapter && (state.settling.spool || state.settling.tracer)) ctx.onSending(() => charge.noteSending());
  next();
}

/** What settling a request needs of its meter's options, resolved once per meter. */
interface Settling {
  pricing: Pricing;
  deliver: (record: UsageRecord) => void;
  onUsage: MeterOptions['onUsage'];
  spool: UsageSpool | undefined;
  tracer: Tracer | undefined;
  /** The settles waiting for a provider's count of their output: a drain waits for them (`settlesDone`). */
  recounting: Set<Promise<void>>;
}

/**
 * One metered request, from the meter's charge to its settle: what its record needs, held in one
 * object instead of closures made per request. Core's one 'close' listener calls `responseClosed`.
 */
class MeteredRequest implements MeterCharge, CallBill {
  /** The record is built (the response closed): a call sent after that is not noted. */
  private recorded = false;
  /** The record a whole JSON answer was billed with before it went out (its headers say that cost): settled as it is. */
  private billed: UsageRecord | undefined = undefined;
  private intent: UsageRecord | undefined = undefined;
  private span: Span | undefined = undefined;
  private readonly requestStreamed: boolean;
  /** Made now: a call sent upstream is noted in the spool under the id its record will have. */
  private readonly recordId = nextRecordId();
  private readonly conversationId: string | null;

  constructor(
    private readonly settling: Settling,
    private readonly req: Request,
    private readonly res: Response,
    private readonly ctx: TollgateContext,
    private readonly adapter: ProviderAdapter | undefined,
    private readonly tap: UsageTap,
    private readonly route: string,
  ) {
    this.requestStreamed = ctx.call?.stream ?? false;
    this.conversationId = conversationOf(req);
  }

  /** `req.tollgate.markSending()` ran: the call's span starts, and the spool notes the call at its bound. */
  noteSending(): void {
    // Sent after its client left (the record is written already): nothing to note.
    if (this.recorded) return;
    const { tracer, spool } = this.settling;
    const { ctx, adapter } = this;
    if (tracer) this.span = startCallSpan(tracer, ctx, adapter!, this.req.headers);
    // Never estimated: no bound to charge.
    if (!spool || !ctx.estimate) return;
    this.intent = boundRecord(ctx, this.recordId, this.route, this.conversationId);
    spool.writeIntent(this.intent, adapter!.api);
  }

  responseClosed(): void {
    // The route still reads the provider's answer its client left (see holdSettle): settle with its usage.
    const held = this.ctx.settleHeld();
    if (held) void held.then(() => this.settle());
    else this.settle();
  }

  /** The call's cost as its record bills it, from what the tap read so far (see `CallBill`). */
  costNow(whole: boolean): number | undefined {
    const record = this.buildRecord(whole);
    if (whole) this.billed = record;
    return record?.costNanoUsd;
  }

  private settle(): void {
    const { ctx, res } = this;
    let record: UsageRecord | undefined;
    try {
      const billed = this.billed;
      // The answer its headers billed went out whole: the record is that bill (a client that left mid-way is billed anew).
      if (billed !== undefined && res.writableFinished) {
        record = billed;
        record.latencyMs = Math.max(0, Date.now() - ctx.startedAt);
      } else record = this.buildRecord(false);
    } catch (error) {
      this.warnFailed(error);
    }
    this.recorded = true;
    const counted = record && this.providerCount(record);
    if (!counted) {
      this.finishSettle(record);
      return;
    }
    // The settle waits for the provider's count (its upstream's time box): the budget settles once, to the exact bill.
    const bounded = record!;
    const { recounting } = this.settling;
    const done: Promise<void> = counted
      .then(
        (tokens) => this.recounted(bounded, tokens),
        () => bounded,
      )
      .then((final) => this.finishSettle(final))
      .catch((error: unknown) => this.warnFailed(error))
      .finally(() => recounting.delete(done));
    recounting.add(done);
  }

  private warnFailed(error: unknown): void {
    process.emitWarning(
      `tollgate: metering failed for request ${this.ctx.requestId}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }

  /**
   * The provider's own count of the output a record bills by an upper bound (its tokenizer is not published), where the
   * route can ask for it (`ProviderCall.countOutputTokens`); undefined when there is nothing to ask.
   */
  private providerCount(record: UsageRecord): Promise<number> | undefined {
    const count = this.ctx.call?.countOutputTokens;
    if (!record.outputUpperBound || count === undefined) return undefined;
    const text = this.tap.finish()?.output.text();
    if (text === undefined || text.length === 0) return undefined;
    try {
      return count(text);
    } catch {
      return undefined;
    }
  }

  /** The record billed at the provider's count of its output (never above its upper count), as answered. */
  private recounted(bounded: UsageRecord, providerTokens: number): UsageRecord {
    try {
      const record = this.buildRecord(false, providerTokens) ?? bounded;
      record.latencyMs = bounded.latencyMs;
      return record;
    } catch (error) {
      this.warnFailed(error);
      return bounded;
    }
  }

  /** The record is final: the span ends, the request settles, the sinks and `onUsage` get it. */
  private finishSettle(record: UsageRecord | undefined): void {
    const { ctx, res } = this;
    const { deliver, onUsage } = this.settling;
    if (this.span) {
      try {
        endCallSpan(this.span, record, ctx);
      } catch (error) {
        // A tracer that throws must not cost the settle.
        process.emitWarning(
          `tollgate: the call's span failed to end: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
    void ctx.settle(record);
    if (!record) {
      // A call that reached the provider is never left unrecorded: its bound, as its reservation keeps.
      if (this.intent)
        deliver({ ...this.intent, status: res.statusCode, latencyMs: Math.max(0, Date.now() - ctx.startedAt) });
      return;
    }
    deliver(record);
    tellUsage(onUsage, record, this.req);
  }

  /**
   * The request's record; `whole`: a JSON answer is whole and about to go out, billed as if it had finished.
   * `providerOutput`: the provider's count of the output, which a counted record bills when it is below its count.
   */
  private buildRecord(whole: boolean, providerOutput?: number): UsageRecord | undefined {
    const { res, ctx, adapter, tap } = this;
    // The prices the request was reserved at, whatever loaded since.
    const pricing = this.settling.pricing.forRequest(ctx);
    const reported = hasTokens(ctx.reportedUsage) ? ctx.reportedUsage : undefined;
    // A route that is no provider call produces a record only when its handler reported usage.
    if (!adapter && !reported) return undefined;
    const estimate = ctx.estimate;
    const upstreamAborted = ctx.upstreamAborted;
    const aborted = !whole && !res.writableFinished && !tap.stopped && !upstreamAborted;
    const reader = tap.finish();
    // An error answer bills nothing, whether or not its client stayed to read it.
    const failed = res.statusCode >= 400 && !upstreamAborted;
    const grant = estimate ? estimate.maxOutputTokens * (estimate.outputChoices ?? 1) : undefined;

    const measured = reported
      ? { usage: reportedTokens(reported, estimate), usageSource: 'provider' as const, reportedModel: reported.model }
      : this.measuredUsage(reader, failed, grant, aborted, providerOutput);
    const { usageSource, reportedModel } = measured;
    // Bill what ran: the provider's model when it has a price, else the (maybe downgraded) admitted model; at the tier,
    // speed and region the answer says served it, else the ones asked for (never cheaper than what was reserved).
    const usage = { ...measured.usage, ...askedPricing(measured.usage, ctx.call) };
    const tier = usage.serviceTier ?? ctx.call?.serviceTier;
    let billedModel: string | null = null;
    let price = reportedModel ? pricing.find(reportedModel, tier) : undefined;
    if (price) billedModel = reportedModel!;
    // Without an estimate (a cache hit), the admitted model is the call's.
    const admittedModel = estimate?.model ?? ctx.call?.model;
    if (!price && admittedModel) {
      price = pricing.find(admittedModel, tier);
      if (price) billedModel = admittedModel;
    }
    billedModel ??= reportedModel ?? estimate?.model ?? null;
    const record = newRecord(ctx, this.recordId, this.route, this.conversationId, usageSource);
    record.provider =
      ctx.servedBy ?? price?.provider ?? estimate?.provider ?? ctx.reportedUsage?.provider ?? adapter?.provider ?? null;
    record.model = billedModel;
    record.inputTokens = usage.inputTokens;
    record.cachedInputTokens = usage.cachedInputTokens;
    record.cacheWriteTokens = usage.cacheWriteTokens;
    record.outputTokens = usage.outputTokens;
    record.reasoningTokens = usage.reasoningTokens;
    // An unknown model is never free: with no price at all, the most the request could cost. The calls of an answer
    // made of several (`iterations`) are each billed at their own model's price, at the same tier.
    const priceOf = (model: string) => pricing.find(model, tier);
    record.costNanoUsd = price ? costNanoUsd(usage, price, priceOf) : (estimate?.costNanoUsd ?? 0);
    record.estimatedCostNanoUsd = estimate?.costNanoUsd ?? 0;
    record.priceVersion = pricing.version;
    if (usage.serviceTier !== undefined) record.serviceTier = usage.serviceTier;
    // What explains the bill besides the counts: the speed and region it was priced at, and its calls.
    if (usage.speed !== undefined) record.speed = usage.speed;
    if (usage.inferenceGeo !== undefined) record.inferenceGeo = usage.inferenceGeo;
    if (usage.iterations !== undefined && usage.iterations.length > 0) record.iterations = usage.iterations;
    if (usage.media !== undefined) record.media = usage.media;
    record.status = res.statusCode;
    // A JSON call answered from a stream is a JSON answer to its client.
    record.stream = (tap.streamed && !tap.assembled) || this.requestStreamed;
    record.aborted = aborted;
    record.latencyMs = Math.max(0, Date.now() - ctx.startedAt);
    if (usage.cacheWrite1hTokens) record.cacheWrite1hTokens = usage.cacheWrite1hTokens;
    // A hit the cache knew before the limits and that they then refused was not served from the cache.
    if (ctx.cacheHit && !failed) chargeCacheHit(record, ctx.cacheHit.costFraction);
    else if (price && usage.cachedInputTokens > 0) notePromptCacheSaving(record, usage, price, priceOf);
    if (upstreamAborted) record.upstreamAborted = true;
    // Refused by tollgate itself (limits, budget, guard): the provider never saw it, so readers keep it apart
    // from the provider's failures, which renderApiError notes with the layer 'upstream'.
    const refusal = ctx.refusal;
    if (failed && refusal !== undefined && refusal.layer !== 'upstream') record.refusedBy = refusal.layer;
    // The upstream produced more than the cap it was sent (it ignored it): billed as it ran, flagged.
    if (grant !== undefined && ((tap.stopped && !tap.endedNow) || usage.outputTokens > grant))
      record.outputOverCap = true;
    // Counted where the provider's tokenizer is not ours: the bill is a bound of the provider's count, said so.
    if (usageSource === 'counted' && !tap.counting.own && usage.outputTokens > 0) record.outputUpperBound = true;
    return record;
  }

  /**
   * The usage of an answer its route did not report: read by the adapter (the provider's, or counted from what
   * passed), with the rules for what a failed, cut or stopped answer is billed.
   */
  private measuredUsage(
    reader: UsageReader | undefined,
    failed: boolean,
    grant: number | undefined,
    aborted: boolean,
    providerOutput: number | undefined,
  ): { usage: TokenUsage; usageSource: UsageRecord['usageSource']; reportedModel: string | undefined } {
    const { ctx, tap } = this;
    const { countOutput, own } = tap.counting;
    const estimate = ctx.estimate;
    const upstreamAborted = ctx.upstreamAborted;
    let read: ReadUsage | undefined = reader ? reader.result(countOutput) : undefined;
    // A failed call without provider usage produced no model output: what passed is an error body, not billable text.
    if (failed && read?.source === 'counted') read = undefined;
    // Output that passed yet reported as 0 tokens (an upstream that sent no usage, behind a translation that must
    // still write a usage field): no provider bills nothing for text it produced, so the text is counted.
    if (read?.source === 'provider' && read.usage.outputTokens === 0 && reader && reader.output.bytes > 0) {
      read = {
        ...read,
        source: 'counted',
        usage: { ...read.usage, outputTokens: reader.output.tokens(countOutput) },
      };
    }
    // Without usage the prompt counts as processed unless the call failed before any output.
    const assumedInput = failed && !read ? 0 : (estimate?.inputTokens ?? 0);
    const usage: TokenUsage = read?.usage ?? {
      inputTokens: assumedInput,
      cachedInputTokens: 0,
      cacheWriteTokens: 0,
      outputTokens: 0,
      reasoningTokens: 0,
    };
    if (read && read.usage.inputTokens === 0) usage.inputTokens = assumedInput;
    let usageSource: UsageRecord['usageSource'] = read?.source ?? 'counted';
    // A counted stream is billed its count that cannot under-state the provider's, never more than was held for it
    // (its grant, and what it was extended by as it ran past it): what went out never passed that. A JSON answer
    // is counted exactly when the tokenizer is the provider's own, else capped at its grant as well.
    if (usageSource === 'counted' && grant !== undefined && (tap.streamed || !own))
      usage.outputTokens = Math.min(usage.outputTokens, Math.max(grant, tap.holdTokens));
    // The provider counted what passed (its tokenizer is not ours): billed that, never above the upper count.
    if (usageSource === 'counted' && providerOutput !== undefined) {
      usage.outputTokens = Math.min(usage.outputTokens, Math.max(0, Math.floor(providerOutput)));
      usageSource = 'provider-counted';
    }
    const reportedModel = reader?.model;
    // A JSON answer that never came whole, because the client left or the upstream cut it, is produced (and
    // billed) whole by the provider all the same: without its usage, it is charged the reservation's bound.
    if (
      usageSource !== 'provider' &&
      estimate &&
      grant !== undefined &&
      !tap.streamed &&
      !failed &&
      (aborted || upstreamAborted)
    ) {
      usage.inputTokens = Math.max(usage.inputTokens, estimate.inputTokens);
      usage.outputTokens = Math.max(usage.outputTokens, grant);
      usageSource = 'estimated';
    }
    return { usage, usageSource, reportedModel };
  }
}

/** The usage a route reported (`recordUsage`), each count made whole and non-negative; the input the estimate's when none was said. */
function reportedTokens(reported: ReportedUsage, estimate: UsageEstimate | undefined): TokenUsage {
  return {
    inputTokens: reported.inputTokens === undefined ? (estimate?.inputTokens ?? 0) : nonNegative(reported.inputTokens),
    cachedInputTokens: nonNegative(reported.cachedInputTokens),
    cacheWriteTokens: nonNegative(reported.cacheWriteTokens),
    outputTokens: nonNegative(reported.outputTokens),
    reasoningTokens: nonNegative(reported.reasoningTokens),
    cacheWrite1hTokens: nonNegative(reported.cacheWrite1hTokens),
    ...(typeof reported.serviceTier === 'string' ? { serviceTier: reported.serviceTier } : {}),
    ...(typeof reported.speed === 'string' ? { speed: reported.speed } : {}),
    ...(typeof reported.inferenceGeo === 'string' ? { inferenceGeo: reported.inferenceGeo } : {}),
    ...(Array.isArray(reported.iterations) && reported.iterations.length > 0
      ? { iterations: reported.iterations }
      : {}),
    ...(reported.media !== undefined ? { media: reported.media } : {}),
  };
}

/** The speed and region a call asked for, where its answer names none (an answer that says so wins). */
function askedPricing(usage: TokenUsage, call: TollgateContext['call']): Pick<TokenUsage, 'speed' | 'inferenceGeo'> {
  const asked: Pick<TokenUsage, 'speed' | 'inferenceGeo'> = {};
  if (usage.speed === undefined && call?.speed !== undefined) asked.speed = call.speed;
  if (usage.inferenceGeo === undefined && call?.inferenceGeo !== undefined) asked.inferenceGeo = call.inferenceGeo;
  return asked;
}
