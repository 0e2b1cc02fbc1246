// An audit entry's fields and the store contract every audit trail writes through (memory, PostgreSQL, PGlite).

/** What an actor may do; the admin key is `admin`, an OIDC sign-in maps its roles claim onto these. */
export type AuditRole = 'viewer' | 'operator' | 'admin';

/**
 * Who made a change. `actor` names the person or credential (`admin key` today; an OIDC subject such as
 * `oidc:https://idp.example#alice` once operators sign in with OIDC), `via` how the request came in.
 */
export interface AuditActor {
  actor: string;
  role: AuditRole;
  /** `admin-key` (the key in a header), `dashboard-session` (a browser session opened with the key), `oidc`, ... */
  via: string;
}

/** How a write ended: `done` (2xx/3xx), `refused` (4xx), `failed` (5xx), `unknown` (no outcome was written). */
export type AuditOutcome = 'done' | 'refused' | 'failed' | 'unknown';

/** Written before the write runs: who, when, from where, what was asked. */
export interface AuditAttempt extends AuditActor {
  /** The entry's id (a UUID), shared by its attempt and its conclusion. */
  id: string;
  /** ISO 8601 time the request reached the audit trail. */
  at: string;
  /** The client's address (Express's `req.ip`: `trust proxy` decides). */
  address: string;
  method: string;
  /** The request's path, without its query. */
  path: string;
  /** A stable dotted name (`key.rotate`): the route's own, else `write.<method>` until the route names it. */
  action: string;
  /** What was changed (`key:k1`, `budget:tenant:acme`, `address:10.0.0.1`): the route's own, else the path. */
  target: string;
}

/** Written once the response went out: the route's names for the action, the state before and after. */
export interface AuditConclusion {
  id: string;
  finishedAt: string;
  action: string;
  target: string;
  status: number;
  outcome: Exclude<AuditOutcome, 'unknown'>;
  before: unknown;
  after: unknown;
}

/** One admin write as it is listed: its attempt with its conclusion (or `outcome: 'unknown'` without one). */
export interface AuditEntry extends AuditAttempt {
  status: number | null;
  outcome: AuditOutcome;
  before: unknown;
  after: unknown;
  finishedAt: string | null;
}

/** Filters of a listing; entries come newest first. */
export interface AuditQuery {
  /** ISO time: entries at or after it. */
  since?: string;
  /** ISO time: entries before it. */
  until?: string;
  actor?: string;
  /** An action (`key.rotate`) or a family of them (`key`: every `key.*`). */
  action?: string;
  target?: string;
  /** From a previous page's `nextCursor`. */
  cursor?: string;
  limit: number;
}

export interface AuditPage {
  entries: AuditEntry[];
  /** Pass as `cursor` for the next (older) page; null on the last. */
  nextCursor: string | null;
}

/**
 * Where audit entries are kept: append-only. An attempt is written before the write runs (it fails: the write is
 * refused), its conclusion after; nothing is ever changed or removed.
 */
export interface AuditStore {
  attempt(attempt: AuditAttempt): Promise<void>;
  conclude(conclusion: AuditConclusion): Promise<void>;
  list(query: AuditQuery): Promise<AuditPage>;
}

/** Whether an entry's action is `filter` or one of its family (`key` matches `key.rotate`). */
export function actionMatches(action: string, filter: string): boolean {
  return action === filter || action.startsWith(`${filter}.`);
}

/** An attempt with its conclusion merged in, as listed. */
export function auditEntryOf(attempt: AuditAttempt, conclusion: AuditConclusion | undefined): AuditEntry {
  if (!conclusion) return { ...attempt, status: null, outcome: 'unknown', before: null, after: null, finishedAt: null };
  return {
    ...attempt,
    action: conclusion.action,
    target: conclusion.target,
    status: conclusion.status,
    outcome: conclusion.outcome,
    before: conclusion.before,
    after: conclusion.after,
    finishedAt: conclusion.finishedAt,
  };
}

/** Field names whose values are secrets or stand for them: never written to the audit trail. */
const SECRET_FIELD = /^(key|sha256|hash|secret|token|password|apikey|api_key|csrftoken|_csrf)$/i;

/** A JSON copy of `value` without any secret field, at any depth; undefined becomes null. */
export function withoutSecrets(value: unknown): unknown {
  if (value === undefined) return null;
  return JSON.parse(
    JSON.stringify(value, (name, field: unknown) => (name !== '' && SECRET_FIELD.test(name) ? undefined : field)),
  ) as unknown;
}
