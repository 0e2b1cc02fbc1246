// req.tollgate: the per-request context every middleware reads and writes, settled exactly once.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Identity, TokenUsage, UsageEstimate, UsageRecord } from './types.js';

/** A reservation a middleware holds for this request (informational; each settles its own). */
export interface ReservationNote {
  kind: 'tokens' | 'budget' | 'concurrency' | (string & {});
  id: string;
  amount: number;
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

export interface TollgateContext {
  /** From a valid incoming `x-request-id`, otherwise generated; echoed in the response. */
  readonly requestId: string;
  /** Epoch ms when tollgate first saw the request. */
  readonly startedAt: number;
  identity?: Identity;
  /** The model the client asked for, before any downgrade. */
  requestedModel?: string;
  estimate?: UsageEstimate;
  reservations: ReservationNote[];
  /** The final record, once settled. */
  usage?: UsageRecord;
  /** Usage reported by the handler itself (SDK calls instead of proxied bytes). */
  reportedUsage?: ReportedUsage;
  /** True once a metering middleware took charge of producing the usage record. */
  metered: boolean;
  /** Report real usage from a handler that calls a provider SDK itself. */
  recordUsage(usage: ReportedUsage): void;
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

/**
 * One per request, so its methods live on the prototype rather than in closures made for every
 * request. `recordUsage` stays an own bound function: handlers pass it around as a callback.
 */
class RequestContext implements TollgateContext {
  readonly requestId: string;
  readonly startedAt = Date.now();
  identity?: Identity;
  requestedModel?: string;
  estimate?: UsageEstimate;
  reservations: ReservationNote[] = [];
  usage?: UsageRecord;
  reportedUsage?: ReportedUsage;
  metered = false;
  #listeners: SettleListener[] | undefined;
  #settledRecord: UsageRecord | undefined;
  #settled = false;

  constructor(requestId: string) {
    this.requestId = requestId;
  }

  recordUsage = (usage: ReportedUsage): void => {
    this.reportedUsage = Object.assign({}, this.reportedUsage, usage);
  };

  onSettle(listener: SettleListener): void {
    if (this.#settled) void this.#run(listener);
    else (this.#listeners ??= []).push(listener);
  }

  async settle(record: UsageRecord | undefined): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    this.#settledRecord = record;
    if (record) this.usage = record;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners) await Promise.all(listeners.map((listener) => this.#run(listener)));
  }

  get settled(): boolean {
    return this.#settled;
  }

  async #run(listener: SettleListener): Promise<void> {
    try {
      await listener(this.#settledRecord);
    } catch (error) {
      settleErrorReporter(error);
    }
  }
}

function createContext(req: IncomingMessage, res: ServerResponse): TollgateContext {
  const incoming = req.headers['x-request-id'];
  const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
  if (!res.headersSent) res.setHeader('x-request-id', requestId);
  const context = new RequestContext(requestId);
  // Without a metering middleware nothing else settles the request: do it when the response is done.
  // on, not once: 'close' is emitted once per response, and once wraps every listener in a bound function.
  res.on('close', () => {
    if (!context.metered) void context.settle(undefined);
  });
  return context;
}

/** The request's tollgate context, created on first use. */
export function getContext(req: IncomingMessage, res: ServerResponse): TollgateContext {
  const carrier = req as IncomingMessage & { tollgate?: TollgateContext };
  carrier.tollgate ??= createContext(req, res);
  return carrier.tollgate;
}

/** Middleware that creates `req.tollgate` early (every tollgate middleware also does it on demand). */
export function requestContext() {
  return function tollgateRequestContext(req: IncomingMessage, res: ServerResponse, next: () => void): void {
    getContext(req, res);
    next();
  };
}
