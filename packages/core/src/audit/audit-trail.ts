// auditTrail: every admin write through one recorder: its attempt written before it runs, its outcome after.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from '../api-error.js';
import { getContext } from '../context.js';
import { TollgateError } from '../errors.js';
import { withoutSecrets } from './entry.js';
import type {
  AuditActor,
  AuditAttempt,
  AuditConclusion,
  AuditEntry,
  AuditPage,
  AuditQuery,
  AuditStore,
} from './entry.js';
import { auditEntryOf } from './entry.js';

/** What a route says of its write: the action's name, its target, the state before and after (secrets dropped). */
export interface AuditNote {
  action?: string;
  target?: string;
  before?: unknown;
  after?: unknown;
}

type AnyRequest = IncomingMessage & { ip?: string; originalUrl?: string };

/** A route names its write and gives the state before and after; the trail writes them with the outcome. */
export function noteAudit(req: IncomingMessage, res: ServerResponse, note: AuditNote): void {
  const context = getContext(req, res);
  context.set('audit.note', { ...context.get('audit.note'), ...note });
}

/** The admission tells the trail who is writing (a dashboard session, an OIDC subject). */
export function setAuditActor(req: IncomingMessage, res: ServerResponse, actor: AuditActor): void {
  getContext(req, res).set('audit.actor', actor);
}

/** The admin key's holder: what every admin write is made by until operators sign in by name. */
export const ADMIN_KEY_ACTOR: AuditActor = { actor: 'admin key', role: 'admin', via: 'admin-key' };

export interface AuditTrailOptions {
  /** Where entries are kept. */
  store: AuditStore;
  /** Who writes, when the admission set no actor (setAuditActor). @default ADMIN_KEY_ACTOR */
  actorOf?: (req: IncomingMessage) => AuditActor;
  /** The client's address. @default Express's `req.ip` (`trust proxy` decides), else the socket's peer */
  addressOf?: (req: IncomingMessage) => string;
  /** Told of each entry once its outcome is written (the alert stream's `audit.event`); a throw is ignored. */
  onEntry?: (entry: AuditEntry) => void;
  /** Told when an outcome could not be written (its attempt stays, listed as `unknown`). @default a process warning */
  onConclusionError?: (error: unknown, attempt: AuditAttempt) => void;
}

/** What reads as a write: anything but GET, HEAD and OPTIONS. */
const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

function defaultAddress(req: IncomingMessage): string {
  return (req as AnyRequest).ip ?? req.socket?.remoteAddress ?? 'unknown';
}

function pathOf(req: IncomingMessage): string {
  const url = (req as AnyRequest).originalUrl ?? req.url ?? '/';
  return url.split('?')[0]!.slice(0, 500);
}

function outcomeOf(status: number): AuditConclusion['outcome'] {
  return status >= 500 ? 'failed' : status >= 400 ? 'refused' : 'done';
}

type Next = (error?: unknown) => void;
type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => Promise<void>;

/** One audit trail: the middleware every admin write goes through, and its listing. */
export interface AuditTrail {
  /** Mount behind the admin authentication, before the admin routes (see auditTrail). */
  readonly record: Middleware;
  /** Entries, newest first, once the outcomes this process is writing are written. */
  list(query: AuditQuery): Promise<AuditPage>;
  /**
   * Records a change made without an admin request (a config file reloaded), after the fact: it cannot be refused, so
   * a store that cannot take it is reported (`onConclusionError`), never thrown. Resolves once written or reported.
   */
  recordChange(change: AuditChange): Promise<void>;
  /** Resolves once every outcome begun so far is written (or failed). */
  flush(): Promise<void>;
}

/** A change made without an admin request: who made it (a system actor), what, and the state before and after. */
export interface AuditChange extends AuditActor {
  action: string;
  target: string;
  /** Where it came from (a file's path). */
  source: string;
  outcome: AuditConclusion['outcome'];
  before: unknown;
  after: unknown;
}

/**
 * The audit trail. Its middleware lets a write (any method but GET, HEAD, OPTIONS) through only once its attempt is
 * stored; a store that cannot write it gets the write refused with 503 `service_unavailable`, so no admin change
 * happens unrecorded. When the response is finished (or the connection closed) the outcome is written with what the
 * route noted (noteAudit). Details: docs/audit.md.
 */
export function auditTrail(options: AuditTrailOptions): AuditTrail {
  const { store, onEntry } = options;
  if (typeof store?.attempt !== 'function' || typeof store.conclude !== 'function')
    throw new TollgateError('ERR_TG_CORE_INVALID_AUDIT', 'auditTrail() needs a store with attempt() and conclude()');
  const actorOf = options.actorOf ?? (() => ADMIN_KEY_ACTOR);
  const addressOf = options.addressOf ?? defaultAddress;
  const onConclusionError =
    options.onConclusionError ??
    ((error: unknown, attempt: AuditAttempt) =>
      process.emitWarning(
        `tollgate audit: the outcome of ${attempt.method} ${attempt.path} (${attempt.id}) was not written: ${
          error instanceof Error ? error.message : String(error)
        }`,
      ));

  const pending = new Set<Promise<void>>();
  const flush = async () => {
    while (pending.size > 0) await Promise.all(pending);
  };
  /** Writes what `write` writes, then tells `onEntry`; a failure is reported, never thrown. Tracked for flush(). */
  const track = (write: Promise<void>, attempt: AuditAttempt, conclusion: AuditConclusion): Promise<void> => {
    const written = write.then(
      () => {
        try {
          onEntry?.(auditEntryOf(attempt, conclusion));
        } catch {
          // The alert stream's trouble is its own.
        }
      },
      (error: unknown) => onConclusionError(error, attempt),
    );
    pending.add(written);
    void written.finally(() => pending.delete(written));
    return written;
  };

  const record = async function recordAdminWrite(req: IncomingMessage, res: ServerResponse, next: Next) {
    if (READS.has(req.method ?? 'GET')) return next();
    const context = getContext(req, res);
    const method = req.method ?? 'POST';
    const attempt: AuditAttempt = {
      id: randomUUID(),
      at: new Date().toISOString(),
      ...(context.get('audit.actor') ?? actorOf(req)),
      address: addressOf(req),
      method,
      path: pathOf(req),
      action: `write.${method.toLowerCase()}`,
      target: pathOf(req),
    };
    try {
      await store.attempt(attempt);
    } catch (error) {
      // The app's error handler renders it (the gateway's apiErrorHandler, the dashboard's page or JSON).
      next(
        new ApiError('service_unavailable', 'The audit trail cannot be written: admin changes wait until it can.', {
          cause: error,
          headers: { 'retry-after': '5' },
        }),
      );
      return;
    }
    let concluded = false;
    const conclude = () => {
      // A client that left before any answer leaves the outcome unknown: the route may still be changing things.
      if (concluded || !res.headersSent) return;
      concluded = true;
      const note = context.get('audit.note') ?? {};
      const conclusion: AuditConclusion = {
        id: attempt.id,
        finishedAt: new Date().toISOString(),
        action: note.action ?? attempt.action,
        target: note.target ?? attempt.target,
        status: res.statusCode,
        outcome: outcomeOf(res.statusCode),
        before: withoutSecrets(note.before),
        after: withoutSecrets(note.after),
      };
      void track(store.conclude(conclusion), attempt, conclusion);
    };
    res.once('finish', conclude);
    res.once('close', conclude);
    next();
  };

  const recordChange = (change: AuditChange): Promise<void> => {
    const { actor, role, via, action, target, outcome } = change;
    const at = new Date().toISOString();
    const path = change.source.slice(0, 500);
    const attempt: AuditAttempt = {
      id: randomUUID(),
      at,
      actor,
      role,
      via,
      address: 'local',
      method: 'CHANGE',
      path,
      action,
      target,
    };
    const conclusion: AuditConclusion = {
      id: attempt.id,
      finishedAt: at,
      action,
      target,
      status: outcome === 'done' ? 200 : outcome === 'refused' ? 400 : 500,
      outcome,
      before: withoutSecrets(change.before),
      after: withoutSecrets(change.after),
    };
    const write = store.attempt(attempt).then(() => store.conclude(conclusion));
    return track(write, attempt, conclusion);
  };

  return {
    record,
    recordChange,
    flush,
    async list(query) {
      await flush();
      return store.list(query);
    },
  };
}
