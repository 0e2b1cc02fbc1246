// req.tollgate: the per-request context every middleware reads and writes, settled exactly once.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { maxCostNanoUsd, mediaTokens } from './pricing.js';
import type { ResolvedPrice } from './pricing.js';
import type { CallAdapter, CallRequest, ProviderApi } from './provider-api.js';
import type { ApiErrorCode, ErrorRenderer, Refusal } from './api-error.js';
import type { ShadowRule } from './shadow.js';
import type { ResponseTap } from './response-tap.js';
import { TollgateError } from './errors.js';
import type { AuditNote } from './audit/audit-trail.js';
import type { AuditActor } from './audit/entry.js';
import type { Identity, MediaUsage, TokenUsage, UsageEstimate, UsageRecord } from './types.js';

/** A reservation a middleware holds for this request (informational; each settles its own). */
export interface ReservationNote {
  kind: 'tokens' | 'budget' | 'concurrency' | (string & {});
  id: string;
  amount: number;
  /**
   * Budget notes: what the tightest budget the reservation holds against had left once it was granted (nano-USD,
   * this reservation counted as held in full), as the ledger's reserve reported it. Absent when the ledger did
   * not report its balances.
   */
  remaining?: number;
}

/**
 * What the tightest budget of the request will have left once it settles at `costNanoUsd`: each budget
 * reservation's `remaining` with its hold given back and the cost charged, the least of them (never below 0).
 * Undefined when no budget reserved for the request, or one did without its ledger's balances. Read from what
 * the reserve returned: no store call.
 */
export function budgetRemainingAfter(ctx: TollgateContext, costNanoUsd: number): number | undefined {
  let least: number | undefined;
  for (const note of ctx.reservations) {
    if (note.kind !== 'budget') continue;
    if (note.remaining === undefined) return undefined;
    const left = Math.max(0, note.remaining + note.amount - costNanoUsd);
    if (least === undefined || left < least) least = left;
  }
  return least;
}

/** Usage an SDK-calling handler reports with `req.tollgate.recordUsage()`. */
export interface ReportedUsage extends Partial<TokenUsage> {
  model?: string;
  provider?: string;
}

/**
 * Called once per request with the final record, or with `undefined` when nothing
 * metered the request (then settle conservatively, at the reserved amount).
 */
export type SettleListener = (record: UsageRecord | undefined) => void | Promise<void>;

/**
 * What holds a request's output (a budget hold, token windows) gives when its stream needs room for `tokens` more
 * output tokens, at least `atLeast`: the tokens it now holds for them (0: refused), at once where it can.
 */
export type OutputExtender = (tokens: number, atLeast: number) => number | Promise<number>;

/**
 * The provider call a route declared: the request body as it will be sent, read through its API's
 * adapter once. Model and output cap change only through the context (`limitOutput`,
 * `switchModel`), which keeps body, call and estimate in step.
 */
export class ProviderCall {
  readonly adapter: CallAdapter;
  /** The provider request as it will be sent (the client's body, or what the route built). */
  readonly body: Record<string, unknown>;
  readonly stream: boolean;
  /** Completions asked for, each up to the cap (OpenAI chat `n`). */
  readonly choices: number;
  /** The model the request asked for, before any downgrade. */
  readonly requestedModel: string | undefined;
  /** The service tier the request asked for (`CallShape.serviceTier`): its reservation is priced at it. */
  readonly serviceTier: string | undefined;
  /** The speed the request asked for (`CallShape.speed`): its reservation is priced at it, its bill at the answer's. */
  readonly speed: string | undefined;
  /** The region the request asked for (`CallShape.inferenceGeo`): as `speed`. */
  readonly inferenceGeo: string | undefined;
  /** The media the request asks for at most (`CallShape.media`): its reservation is priced at them. */
  readonly media: MediaUsage | undefined;
  /**
   * A JSON call its route asked its upstream for as a stream: the meter holds the stream to its grant as it holds any
   * stream, and the client gets the JSON answer assembled from what went out (docs/architecture.md, "What a JSON
   * answer can spend"). Set by the route, before it sends the call.
   */
  jsonFromStream = false;
  /**
   * Set by the route, before it sends the call, when its upstream counts tokens and its entry says so
   * (`countCutAnswers`): the provider's own count of an output text, which the meter bills an answer without usage by
   * where its own count is only a bound (Claude's: docs/tokenizers.md). Rejects when the count fails or is late.
   */
  countOutputTokens: ((text: string) => Promise<number>) | undefined = undefined;
  #model: string | undefined;
  #outputCap: number | undefined;
  #controller: AbortController | undefined;

  constructor(adapter: CallAdapter, request: CallRequest) {
    this.adapter = adapter;
    this.body = request.body as Record<string, unknown>;
    const shape = adapter.read(request);
    this.stream = shape.stream;
    this.choices = shape.choices;
    this.requestedModel = shape.model;
    this.serviceTier = shape.serviceTier;
    this.speed = shape.speed;
    this.inferenceGeo = shape.inferenceGeo;
    this.media = shape.media;
    this.#model = shape.model;
    this.#outputCap = shape.outputCap;
  }

  get api(): ProviderApi {
    return this.adapter.api;
  }

  /** The model the call runs with (after any downgrade). */
  get model(): string | undefined {
    return this.#model;
  }

  /** The output cap the call runs with (per choice): asked, set or clamped; undefined when none is set yet. */
  get outputCap(): number | undefined {
    return this.#outputCap;
  }

  /** Aborted when the call must stop (its output passed the grant): pass it to the upstream call. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    return this.#controller.signal;
  }

  /** Stops the upstream call (the hard stop, or the client left). */
  abort(reason: string): void {
    this.#controller ??= new AbortController();
    if (!this.#controller.signal.aborted) this.#controller.abort(new Error(reason));
  }

  /** @internal through `TollgateContext.limitOutput` only. */
  _writeOutputCap(cap: number): void {
    this.#outputCap = cap;
    this.adapter.writeOutputCap(this.body, cap);
  }

  /** @internal through `TollgateContext.switchModel` only. */
  _writeModel(model: string): void {
    this.#model = model;
    this.adapter.writeModel(this.body, model);
  }
}

/** What settles a metered request when its response closes: the meter's charge of the request. */
export interface MeterCharge {
  /** The response closed (finished, or its client left): settle once, now or when the settle holds are released. */
  responseClosed(): void;
}

/** A request answered from a response cache, not by the provider. */
export interface CacheHit {
  /** Share of the answer's cost billed for the hit, 0 to 1. */
  costFraction: number;
}

/**
 * One package's own per-request state, declared by that package through declaration merging and named after it
 * (docs/architecture.md, "Variables of one package").
 */
export interface ContextVariableMap {
  /** What an admin route noted of its write, for the audit trail (noteAudit of `/audit`). */
  'audit.note': AuditNote;
  /** Who is writing, when the admission knows better than the audit trail's default (setAuditActor). */
  'audit.actor': AuditActor;
}

export interface TollgateContext {
  /** From a valid incoming `x-request-id`, otherwise generated; echoed in the response. */
  readonly requestId: string;
  /** Epoch ms when tollgate first saw the request. */
  readonly startedAt: number;
  /** `performance.now()` when tollgate first saw the request: durations are measured from it (`startedAt` is the wall clock). */
  readonly monotonicStartedAt: number;
  /** `performance.now()` when `markSending()` was first called (the provider call left); undefined before. */
  readonly monotonicSentAt: number | undefined;
  identity?: Identity;
  /** The model the client asked for, before any downgrade. */
  requestedModel?: string;
  /** The provider call the route declared (`declareCall`), when it makes one. */
  readonly call: ProviderCall | undefined;
  /** What the call may cost at most; changed only through `setEstimate`, `limitOutput` and `switchModel`. */
  estimate?: UsageEstimate;
  reservations: ReservationNote[];
  /** The final record, once settled. */
  usage?: UsageRecord;
  /** Usage reported by the handler itself (SDK calls instead of proxied bytes). */
  reportedUsage?: ReportedUsage;
  /** True once a metering middleware took charge of producing the usage record. */
  metered: boolean;
  /**
   * Set by the meter that took charge: core's one 'close' listener hands it the response's close,
   * so that a metered request adds no listener of its own.
   */
  meterCharge: MeterCharge | undefined;
  /** Set by the meter: refuses (throws) reported usage it could not price. */
  usageCheck: ((ctx: TollgateContext, usage: ReportedUsage) => void) | undefined;
  /** Set by whatever calls the provider when the provider (not the client) cut an answer that had started. */
  upstreamAborted: boolean;
  /**
   * Set by whatever calls the provider: the HTTP status the provider answered with, 0 when it gave
   * none (unreachable, timed out). Undefined until an answer or a failure came back.
   */
  upstreamStatus: number | undefined;
  /** Why the request was refused, once a refusal was rendered (`renderApiError`, `noteRefusal`). */
  refusal: Refusal | undefined;
  /** Set by `shadowMode`: whether this request's refusals by limits, budgets and the guard are only recorded. */
  shadow: ShadowRule | undefined;
  /**
   * The code of the refusal a shadow let through (`shadowsRefusal`): what the client would have been sent had the
   * policy been enforced. The meter writes it on the usage record.
   */
  shadowRefusal: ApiErrorCode | undefined;
  /**
   * The guard's abuse score of the caller (the highest of its key's, tenant's and address's, in [0, 1]) when the
   * guard's abuse detection scored it: the meter writes it on the usage record.
   */
  abuseScore: number | undefined;
  /**
   * Set by a route whose clients read refusals in a protocol of their own (the gateway's MCP route answers
   * JSON-RPC errors): `renderApiError` hands every refusal of the request to it. Undefined: OpenAI-shaped JSON.
   */
  renderError: ErrorRenderer | undefined;
  /**
   * Set by a router that chose among upstreams: the name of the upstream the call went to, which
   * the usage record bills as its `provider` (the price table's provider names the API, not which
   * of several upstreams serving the same model answered). Undefined: the price's provider.
   */
  servedBy: string | undefined;
  /**
   * Set by a route that read a credential from its body rather than its headers (the dashboard's sign-in form): the
   * guard tells failed credentials apart by it as by a header's (`authFailures.distinctKeys`).
   */
  presentedCredential: string | undefined;
  /**
   * Set by a response cache that answers the request from what it stored: the meter then records
   * `usageSource: "cache"`, bills `costFraction` of the answer's cost and notes the rest as saved.
   * Set before the meter (a memory store's hit), it also spares the request the estimate; a request
   * refused after that is recorded as a refusal, not as a hit.
   */
  cacheHit: CacheHit | undefined;
  /** The response's tap, once a piece asked for it (`tapResponse`): the meter, its hard stop and the cache read through it. */
  responseTap: ResponseTap | undefined;
  /**
   * A variable a package declared for its own per-request state (`ContextVariableMap`), or
   * undefined when it was not set on this request.
   */
  get<K extends keyof ContextVariableMap>(key: K): ContextVariableMap[K] | undefined;
  /** Sets a variable a package declared (`ContextVariableMap`). */
  set<K extends keyof ContextVariableMap>(key: K, value: ContextVariableMap[K]): void;
  /** Report real usage from a handler that calls a provider SDK itself. */
  recordUsage(usage: ReportedUsage): void;
  /** Report an SDK's JSON answer: its usage and model are read by the declared call's adapter. */
  recordResponse(response: unknown): void;
  /**
   * Holds the settle past the response's close until the returned function is called. A route
   * that keeps reading a provider's JSON answer after its client left (the provider bills it
   * whole) takes a hold before the response can close, reports the answer with
   * `recordResponse()`, then releases; the record then carries the real usage. Release on every
   * path (answer, failure, timeout): the settle waits for it.
   */
  holdSettle(): () => void;
  /** A promise of the last hold's release while one is out; undefined when none is. */
  settleHeld(): Promise<void> | undefined;
  /**
   * Declares the provider call this request makes, through its API's adapter: the one way the
   * chain learns which API a request speaks. A second declaration of the same API returns the
   * first; of another API throws (two pieces disagree about the route).
   */
  declareCall(adapter: CallAdapter, request: CallRequest): ProviderCall;
  /** Sets the estimate, priced with `price` (kept to re-price later changes). */
  setEstimate(estimate: UsageEstimate, price: ResolvedPrice | undefined): void;
  /**
   * Lowers the output cap to `cap` (never raises it): written into the call's body so the provider
   * enforces it, and the estimate's tokens and cost recomputed (with `price`, else the estimate's).
   * Returns the cap in effect.
   */
  limitOutput(cap: number, price?: ResolvedPrice): number;
  /** Runs the call with another model (a downgrade): body, call and estimate re-priced together. */
  switchModel(model: string, price: ResolvedPrice): void;
  /**
   * Says the provider request is about to leave: call it right before sending it upstream (a route
   * that calls an SDK: right before the SDK call). The first call notes the time (`monotonicSentAt`) and
   * runs the `onSending` listeners, synchronously; later calls (retries) do nothing. The usage spool notes the call here, so that a
   * process that dies before the answer still charges it.
   */
  markSending(): void;
  /** Run `listener` when `markSending()` is first called (at once if it was already). */
  onSending(listener: () => void): void;
  /**
   * Asks everything that holds the request's output (`onExtendOutput`: budget holds, token windows) for room for
   * `tokens` more output tokens, at least `atLeast`, their store calls started together (one round trip): resolves
   * with the tokens all of them granted (the least; 0 when one refused or failed), at once when each answered at once.
   * With nothing holding output, `tokens`.
   */
  extendOutput(tokens: number, atLeast: number): number | Promise<number>;
  /** Adds a holder of the request's output that `extendOutput` asks. */
  onExtendOutput(extender: OutputExtender): void;
  /** Run `listener` once when the request settles (immediately if it already has). */
  onSettle(listener: SettleListener): void;
  /** Settle the request: runs every listener once. Later calls do nothing. */
  settle(record: UsageRecord | undefined): Promise<void>;
  readonly settled: boolean;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      tollgate: TollgateContext;
    }
  }
}

const REQUEST_ID = /^[\w.:@-]{1,128}$/;

/** Errors thrown by settle listeners land here; they never reach the request. */
let settleErrorReporter: (error: unknown) => void = (error) => {
  process.emitWarning(`tollgate: a settle listener failed: ${error instanceof Error ? error.message : String(error)}`);
};

export function onSettleError(reporter: (error: unknown) => void): void {
  settleErrorReporter = reporter;
}

function reportSettleError(error: unknown): void {
  settleErrorReporter(error);
}

function nothing(): void {}

/** An extender's grant: below `atLeast` (or a failure) is a refusal, 0. */
function grantOf(extender: OutputExtender, tokens: number, atLeast: number): number | Promise<number> {
  const refusedBelow = (granted: number) => (granted >= atLeast ? Math.min(tokens, granted) : 0);
  try {
    const granted = extender(tokens, atLeast);
    return typeof granted === 'number' ? refusedBelow(granted) : granted.then(refusedBelow, () => 0);
  } catch (error) {
    reportSettleError(error);
    return 0;
  }
}

/** What `settle` returns when no listener is still running. */
const SETTLED: Promise<void> = Promise.resolve();

function runSendingListener(listener: () => void): void {
  try {
    listener();
  } catch (error) {
    // Noting the call must not stop it.
    process.emitWarning(
      `tollgate: an onSending listener failed: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/**
 * One per request, so its methods live on the prototype rather than in closures made for every
 * request. `recordUsage` is bound to its context, made on first use: handlers pass it around as a callback.
 */
class RequestContext implements TollgateContext {
  readonly requestId: string;
  readonly startedAt = Date.now();
  readonly monotonicStartedAt = performance.now();
  monotonicSentAt: number | undefined = undefined;
  identity?: Identity;
  requestedModel?: string;
  estimate?: UsageEstimate;
  call: ProviderCall | undefined = undefined;
  reservations: ReservationNote[] = [];
  usage?: UsageRecord;
  reportedUsage?: ReportedUsage;
  metered = false;
  meterCharge: MeterCharge | undefined = undefined;
  usageCheck: ((ctx: TollgateContext, usage: ReportedUsage) => void) | undefined = undefined;
  upstreamAborted = false;
  upstreamStatus: number | undefined = undefined;
  refusal: Refusal | undefined = undefined;
  shadow: ShadowRule | undefined = undefined;
  shadowRefusal: ApiErrorCode | undefined = undefined;
  abuseScore: number | undefined = undefined;
  renderError: ErrorRenderer | undefined = undefined;
  servedBy: string | undefined = undefined;
  presentedCredential: string | undefined = undefined;
  cacheHit: CacheHit | undefined = undefined;
  responseTap: ResponseTap | undefined = undefined;
  /** The declared variables set on this request; made at the first `set`. */
  #variables: Record<string, unknown> | undefined = undefined;
  #price: ResolvedPrice | undefined;
  #listeners: SettleListener[] | undefined;
  /** The `onSending` listeners, until `markSending()` runs them. */
  #sendingListeners: (() => void)[] | 'sent' | undefined;
  #extenders: OutputExtender[] | undefined;
  #settledRecord: UsageRecord | undefined;
  #settled = false;

  constructor(requestId: string) {
    this.requestId = requestId;
  }

  get<K extends keyof ContextVariableMap>(key: K): ContextVariableMap[K] | undefined {
    return this.#variables?.[key as string] as ContextVariableMap[K] | undefined;
  }

  set<K extends keyof ContextVariableMap>(key: K, value: ContextVariableMap[K]): void {
    (this.#variables ??= {})[key as string] = value;
  }

  #recordUsage: ((usage: ReportedUsage) => void) | undefined = undefined;

  get recordUsage(): (usage: ReportedUsage) => void {
    return (this.#recordUsage ??= (usage) => {
      this.usageCheck?.(this, usage);
      this.reportedUsage = Object.assign({}, this.reportedUsage, usage);
    });
  }

  #holds = 0;
  #released: { promise: Promise<void>; resolve: () => void } | undefined = undefined;

  holdSettle(): () => void {
    this.#holds++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (--this.#holds > 0) return;
      const released = this.#released;
      this.#released = undefined;
      released?.resolve();
    };
  }

  settleHeld(): Promise<void> | undefined {
    if (this.#holds === 0) return undefined;
    if (!this.#released) {
      let resolve!: () => void;
      const promise = new Promise<void>((done) => (resolve = done));
      this.#released = { promise, resolve };
    }
    return this.#released.promise;
  }

  recordResponse(response: unknown): void {
    const call = this.call;
    if (!call)
      throw new TollgateError(
        'ERR_TG_CORE_NO_CALL',
        'recordResponse() needs a declared provider call: declare the API (e.g. meter({ api })) on this route',
      );
    const usage = call.adapter.readUsage(response);
    if (usage) this.recordUsage(usage);
  }

  declareCall(adapter: CallAdapter, request: CallRequest): ProviderCall {
    const current = this.call;
    if (current) {
      if (current.api === adapter.api) return current;
      throw new TollgateError(
        'ERR_TG_CORE_CALL_CONFLICT',
        `this route was declared as ${current.api} and again as ${adapter.api}: declare its API once`,
      );
    }
    this.call = new ProviderCall(adapter, request);
    this.requestedModel ??= this.call.requestedModel;
    return this.call;
  }

  setEstimate(estimate: UsageEstimate, price: ResolvedPrice | undefined): void {
    this.estimate = estimate;
    this.#price = price;
  }

  limitOutput(cap: number, price?: ResolvedPrice): number {
    if (price) this.#price = price;
    const call = this.call;
    const estimate = this.estimate;
    const current = call?.outputCap ?? estimate?.maxOutputTokens;
    if (current !== undefined && current <= cap) return current;
    // Written into the body even when the estimate already assumed it: the provider must enforce it.
    call?._writeOutputCap(cap);
    if (estimate) {
      const choices = estimate.outputChoices ?? 1;
      estimate.maxOutputTokens = cap;
      estimate.totalTokens = estimate.inputTokens + cap * choices + mediaTokens(estimate.media);
      if (this.#price)
        estimate.costNanoUsd = maxCostNanoUsd(estimate.inputTokens, cap * choices, this.#price, this.call);
    }
    return cap;
  }

  switchModel(model: string, price: ResolvedPrice): void {
    this.call?._writeModel(model);
    this.#price = price;
    const estimate = this.estimate;
    if (!estimate) return;
    estimate.model = model;
    estimate.provider = price.provider;
    estimate.costNanoUsd = maxCostNanoUsd(
      estimate.inputTokens,
      estimate.maxOutputTokens * (estimate.outputChoices ?? 1),
      price,
      this.call,
    );
  }

  markSending(): void {
    const listeners = this.#sendingListeners;
    if (listeners === 'sent') return;
    this.#sendingListeners = 'sent';
    this.monotonicSentAt = performance.now();
    if (listeners) for (const listener of listeners) runSendingListener(listener);
  }

  onSending(listener: () => void): void {
    const listeners = this.#sendingListeners;
    if (listeners === 'sent') runSendingListener(listener);
    else if (listeners) listeners.push(listener);
    else this.#sendingListeners = [listener];
  }

  extendOutput(tokens: number, atLeast: number): number | Promise<number> {
    const extenders = this.#extenders;
    if (!extenders || this.#settled) return this.#settled ? 0 : tokens;
    let least = tokens;
    let pending: Promise<number>[] | undefined;
    for (const extender of extenders) {
      const granted = grantOf(extender, tokens, atLeast);
      if (typeof granted === 'number') least = Math.min(least, granted);
      else (pending ??= []).push(granted);
    }
    if (!pending) return least;
    return Promise.all(pending).then((grants) => Math.min(least, ...grants));
  }

  onExtendOutput(extender: OutputExtender): void {
    if (this.#extenders) this.#extenders.push(extender);
    else this.#extenders = [extender];
  }

  onSettle(listener: SettleListener): void {
    if (this.#settled) void this.#run(listener);
    // The first as a one-element array: `[].push` reserves room for 17.
    else if (this.#listeners) this.#listeners.push(listener);
    else this.#listeners = [listener];
  }

  settle(record: UsageRecord | undefined): Promise<void> {
    if (this.#settled) return SETTLED;
    this.#settled = true;
    this.#settledRecord = record;
    if (record) this.usage = record;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (!listeners) return SETTLED;
    let running: Promise<void>[] | undefined;
    for (const listener of listeners) {
      const pending = this.#run(listener);
      if (pending) (running ??= []).push(pending);
    }
    return running ? Promise.all(running).then(nothing) : SETTLED;
  }

  get settled(): boolean {
    return this.#settled;
  }

  /** Runs a listener, its failures reported, never thrown; a promise only from a listener that answered with one. */
  #run(listener: SettleListener): Promise<void> | undefined {
    try {
      const result = listener(this.#settledRecord);
      if (result) return Promise.resolve(result).then(nothing, reportSettleError);
    } catch (error) {
      reportSettleError(error);
    }
    return undefined;
  }
}

/**
 * Ids unique across processes and cheap to make: a random UUID made once per generator, whose last
 * 12 hex digits count up from `first`. Unique as UUIDs are (the random part tells processes apart)
 * and shaped like one, at a fraction of the cost of a new one. The count is written as two 6-digit
 * halves: `toString(16)` of a number past 2^31 costs ten times that of a small integer.
 */
export function sequentialIds(first = 0): () => string {
  const prefix = randomUUID().slice(0, 24);
  const HALF = 0x100_0000;
  const sixDigits = (value: number): string => (value + HALF).toString(16).slice(1);
  let high = Math.floor(first / HALF);
  let low = first % HALF;
  let highText = sixDigits(high);
  return function nextId(): string {
    const id = prefix + highText + sixDigits(low);
    if (++low === HALF) {
      low = 0;
      highText = sixDigits(++high);
    }
    return id;
  };
}

/** Generated request ids count from 2^44, as they always have: 12 digits from the first one. */
const nextRequestId = sequentialIds(2 ** 44);

type ContextCarrier = IncomingMessage & { tollgate?: TollgateContext };

/** The context of the request `res` answers, if it has one yet. */
export function contextOf(res: ServerResponse): TollgateContext | undefined {
  return (res.req as ContextCarrier | undefined)?.tollgate;
}

/**
 * The response closed: the meter that took charge settles the request; without one nothing else
 * would, so this does.
 */
function settleOnClose(this: ServerResponse): void {
  const context = contextOf(this);
  if (!context) return;
  const charge = context.meterCharge;
  if (charge) {
    charge.responseClosed();
    return;
  }
  if (context.metered) return;
  const held = context.settleHeld();
  if (held) void held.then(() => context.settle(undefined));
  else void context.settle(undefined);
}

/**
 * The request's tollgate context, made on first use and kept as `req.tollgate`, the request's own
 * property (no prototype is patched). Made before Express swaps the request's prototype (a gateway's
 * first step), the property costs V8 nothing extra; made after it, one new hidden class
 * (docs/performance.md).
 */
export function getContext(req: IncomingMessage, res: ServerResponse): TollgateContext {
  const carrier = req as ContextCarrier;
  const context = carrier.tollgate;
  if (context !== undefined) return context;
  const incoming = req.headers['x-request-id'];
  const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : nextRequestId();
  if (!res.headersSent) res.setHeader('x-request-id', requestId);
  const made = new RequestContext(requestId);
  carrier.tollgate = made;
  // `contextOf(res)` finds the context through the response's request: Node and Express set `res.req`; a test double may not.
  if ((res as { req?: IncomingMessage }).req !== req) (res as { req?: IncomingMessage }).req = req;
  // on, not once: 'close' is emitted once per response, and once wraps every listener in a bound function.
  res.on('close', settleOnClose);
  return made;
}

/** Middleware that creates `req.tollgate` early (every tollgate middleware also does it on demand). */
export function requestContext() {
  return function tollgateRequestContext(req: IncomingMessage, res: ServerResponse, next: () => void): void {
    getContext(req, res);
    next();
  };
}
