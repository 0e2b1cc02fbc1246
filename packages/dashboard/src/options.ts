// dashboard() options, checked once and resolved into the config every route reads.
import { parseDuration, TollgateError } from '@tollgate/core';
import { assertKnownOptions, CALENDAR_PERIODS, timeZoneProblem } from '@tollgate/core/options';
import express from 'express';
import type { Request, RequestHandler, Response } from 'express';
import { ADMIN_KEY_ACTOR } from '@tollgate/core/audit';
import type { AuditActor, AuditTrail } from '@tollgate/core/audit';
import type { ApiKeyRecord, KeyStore } from '@tollgate/core/store-contracts';
import type { CalendarPeriod } from '@tollgate/core/options';
import type { BudgetSelector, BudgetStatus } from '@tollgate/budget';
import type { LedgerLocation, Queryable } from '@tollgate/metering';
import { adminKeyCheck } from './admin-key.js';

/** What the dashboard asks of a budget guard (`budgetGuard()` from @tollgate/budget has it all). */
export interface DashboardBudgets {
  status(selector?: BudgetSelector): Promise<BudgetStatus[]>;
  topUp(selector: BudgetSelector, usd: number): Promise<BudgetStatus[]>;
  reset(selector: BudgetSelector): Promise<BudgetStatus[]>;
}

/**
 * One request or token quota as it stands now (the app reads it from its limiters: `readLimits()` of
 * @tollgate/ratelimit), for the overview and its tenant's page.
 */
export interface QuotaStatus {
  /** What is limited, as operators know it: `tenant acme`, `key acme-support`, `global`. */
  name: string;
  /** The tenant it belongs to, so the tenant page shows it too. */
  tenantId?: string;
  /** Requests or tokens per window, or requests in flight at once (`concurrency`). */
  unit: 'requests' | 'tokens' | 'concurrency';
  /** The window, in words: `minute`, `10 s`. */
  window?: string;
  limit: number;
  /** What the window counted so far (requests in flight for `concurrency`). @default limit - remaining */
  used?: number;
  remaining: number;
  /** ISO 8601: when the window frees up. */
  resetAt?: string;
}

/**
 * What a page asks its `limits` for: a tenant's page names its tenant (its quotas and its keys'); the overview the
 * tenants it shows (at most 200), whose quotas it lists beside the global ones.
 */
export interface QuotaQuery {
  tenantId?: string;
  tenantIds?: readonly string[];
}

/** A message for the overview's alerts, besides those the dashboard finds itself. */
export interface DashboardAlert {
  level: 'critical' | 'warning' | 'info';
  message: string;
  /** A page of the dashboard it points to, relative to where the dashboard is mounted (`tenants/acme`). */
  href?: string;
}

/** One routing target as the providers page shows it (the fields of `@tollgate/router`'s `TargetReport` it reads). */
export interface RoutingTargetState {
  target: string;
  breaker: string;
  probe?: { ok: boolean; state: string; at: string; latencyMs?: number; detail?: string };
}

/** One subject the guard's abuse model scored (`guard.abuseEntries()` of @tollgate/guard), as its page shows it. */
export interface AbuseSubjectStatus {
  /** `key:<id>`, `address:<ip>`, `tenant:<id>`. */
  subject: string;
  /** 0-1, higher is stranger. */
  score: number;
  requests: number;
  action: 'none' | 'throttle' | 'block';
  /** Epoch ms the action ends. */
  until?: number;
  shadow?: boolean;
  /** The features that set it apart: its value and the population's median. */
  reasons: readonly { feature: string; value: number; population: number }[];
}

/** What the dashboard asks of an audit trail (`auditTrail()` of @tollgate/core/audit has it). */
export type DashboardAudit = Pick<AuditTrail, 'record' | 'list'>;

type ListSource = readonly string[] | (() => readonly string[]);

/** A session the app signed an operator in with (OpenID Connect), as the dashboard uses it. */
interface OperatorSessionView {
  /** The session's id: its flash messages are kept under it. */
  id: string;
  /** Who signed in, as the audit trail names them. */
  actor: AuditActor;
  /** The token every write from its pages must carry (base64url of 32 random bytes or more). */
  csrfToken: string;
  /** Epoch ms it ends. */
  expiresAt: number;
}

/** Sign-in beside the admin key, run by the app (the gateway's `/admin/login` with OIDC). */
export interface OperatorSignIn {
  /** The sign-in page's link text. */
  label: string;
  /** Where the link goes (`?next=` is added). */
  href: (req: Request) => string;
  /** The live session a request holds, if any. */
  session: (req: Request) => Promise<OperatorSessionView | undefined>;
  /** Ends the request's session (the dashboard's sign-out). */
  signOut: (req: Request, res: Response) => Promise<void>;
}

export interface DashboardOptions {
  /**
   * SHA-256 hex of the admin key (the proxy config's `adminKeySha256`). A browser signs in with the
   * key; a script sends it as `Authorization: Bearer <key>`. One of this or `authorize` is required.
   */
  adminKeySha256?: string;
  /**
   * Decides whether a presented key is an admin's, instead of `adminKeySha256` (e.g. any key of a
   * store with an `admin` scope). Compare in constant time; the key is never stored.
   */
  authorize?: (key: string) => boolean | Promise<boolean>;
  /** The budget guard: every budget's spent, reserved and reset time, top-up and reset. @default no budgets shown */
  budgets?: DashboardBudgets;
  /** The key store (`stores.keys`): keys are listed, created, revoked and rotated in it. @default no keys page actions */
  keys?: KeyStore;
  /** Keys from a config file: listed, never changed here (edit the file). @default none */
  configKeys?: () => readonly ApiKeyRecord[];
  /** The usage ledger: a pg Pool or Client, or a PGlite instance. @default no spend history */
  ledger?: Queryable;
  /** Where the ledger table is. @default the search path's `tollgate_usage` */
  ledgerTable?: LedgerLocation;
  /**
   * Request and token quotas as they stand now, from the app's limiters; asked with the tenant of the page (its
   * quotas and its keys'), or with none on the overview (every tenant's and the global ones). @default none
   */
  limits?: (query: QuotaQuery) => readonly QuotaStatus[] | Promise<readonly QuotaStatus[]>;
  /** The guard's abuse scoring, highest first (`() => guard.abuseEntries()`): the Abuse page. @default none */
  abuse?: () => readonly AbuseSubjectStatus[];
  /**
   * The audit trail (`auditTrail()` of @tollgate/core/audit): every write here goes through it (refused when it cannot
   * be recorded), and the Audit page lists it. @default writes not recorded, no Audit page entries
   */
  audit?: DashboardAudit;
  /** More alerts for the overview (soft-limit events, suspended keys). @default none */
  alerts?: () => readonly DashboardAlert[] | Promise<readonly DashboardAlert[]>;
  /**
   * Each routing target's state now (a router's `health()`: breaker and health checks), for the providers page.
   * @default none shown
   */
  routing?: () => readonly RoutingTargetState[];
  /** Tenants a new key may name (a select on the form; others refused). @default any */
  tenants?: ListSource;
  /** Tiers a new key may name. @default any */
  tiers?: ListSource;
  /** The period spend is summed over for a tenant or feature without a calendar budget. @default 'month' */
  period?: CalendarPeriod;
  /**
   * The IANA time zone whose local calendar cuts periods (give the budget guard's `timezone`): the ledger's spend of
   * a period is summed between its local boundaries. @default 'UTC'
   */
  timezone?: string;
  /** Page title. @default 'tollgate' */
  title?: string;
  /** How long a browser session lasts after sign-in (ms or `"8h"`). @default '8h' */
  sessionTtl?: number | string;
  /** Sessions kept at once; past it the oldest is signed out. @default 1000 */
  maxSessions?: number;
  /**
   * The `Secure` flag of the session cookie: `'auto'` sets it when the request came over HTTPS
   * (`req.secure`, which needs Express's `trust proxy` behind a TLS proxy).
   * @default 'auto'
   */
  secureCookie?: boolean | 'auto';
  /**
   * The app's checks before authentication (the gateway passes its guard's: address blocks and the auth-failure
   * limit). A request the dashboard does not let in (a wrong key in the sign-in form or a header, no key at all) meets
   * them before its refusal, so a blocked address is answered by them and every other refusal is counted as on the
   * app's own routes; a request with the admin key or a live session never meets them. @default none
   */
  beforeAuth?: readonly RequestHandler[];
  /**
   * Sign-in run by the app beside the admin key (the gateway's OIDC sign-in): a link on the sign-in page, and its
   * sessions let in as the dashboard's own, with their CSRF token and their actor in the audit trail. @default none
   */
  operatorSignIn?: OperatorSignIn;
  /** How the audit trail names the admin key's holder (the app's role for the key). @default ADMIN_KEY_ACTOR */
  keyActor?: AuditActor;
  /**
   * The app's check of what the signed-in operator may do (the gateway's roles table): a middleware run after sign-in
   * and the audit trail, before every page and action; its refusal (`next(error)`) is shown as the dashboard's
   * errors are. @default every signed-in operator may do everything
   */
  authorizeAction?: RequestHandler;
  /** Clock, for tests. @default Date.now */
  now?: () => number;
}

const OPTION_NAMES = [
  'adminKeySha256',
  'authorize',
  'budgets',
  'keys',
  'configKeys',
  'ledger',
  'ledgerTable',
  'limits',
  'alerts',
  'routing',
  'abuse',
  'audit',
  'tenants',
  'tiers',
  'period',
  'timezone',
  'title',
  'sessionTtl',
  'maxSessions',
  'secureCookie',
  'beforeAuth',
  'operatorSignIn',
  'keyActor',
  'authorizeAction',
  'now',
] as const satisfies readonly (keyof DashboardOptions)[];

/** The options with every default filled in and every check done. */
export interface DashboardConfig {
  authorize: (key: string) => boolean | Promise<boolean>;
  budgets: DashboardBudgets | undefined;
  keys: KeyStore | undefined;
  configKeys: () => readonly ApiKeyRecord[];
  ledger: Queryable | undefined;
  ledgerTable: LedgerLocation;
  limits: (query: QuotaQuery) => readonly QuotaStatus[] | Promise<readonly QuotaStatus[]>;
  alerts: () => readonly DashboardAlert[] | Promise<readonly DashboardAlert[]>;
  routing: () => readonly RoutingTargetState[];
  abuse: (() => readonly AbuseSubjectStatus[]) | undefined;
  audit: DashboardAudit | undefined;
  tenants: (() => readonly string[]) | undefined;
  tiers: (() => readonly string[]) | undefined;
  period: CalendarPeriod;
  timezone: string;
  title: string;
  sessionTtlMs: number;
  maxSessions: number;
  secureCookie: boolean | 'auto';
  /** `beforeAuth` as one handler (none when not given). */
  beforeAuth: RequestHandler | undefined;
  operatorSignIn: OperatorSignIn | undefined;
  keyActor: AuditActor;
  authorizeAction: RequestHandler | undefined;
  now: () => number;
}

const CODE = 'ERR_TG_DASHBOARD';

function invalid(message: string): TollgateError {
  return new TollgateError(`${CODE}_INVALID_OPTION`, `dashboard(): ${message}`);
}

function hasMethods(value: unknown, names: readonly string[]): boolean {
  // A budget guard is a middleware function carrying its methods, so functions count too.
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    names.every((name) => typeof (value as Record<string, unknown>)[name] === 'function')
  );
}

function listSource(value: ListSource | undefined, name: string): (() => readonly string[]) | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'function') return value;
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string'))
    throw invalid(`${name} must be an array of strings or a function returning one`);
  const list = [...value];
  return () => list;
}

export function resolveOptions(options: DashboardOptions): DashboardConfig {
  assertKnownOptions(options, OPTION_NAMES, `${CODE}_UNKNOWN_OPTION`, 'dashboard');
  if (options === undefined || options === null) throw invalid('needs options: at least adminKeySha256 or authorize');
  const { adminKeySha256, authorize } = options;
  if ((adminKeySha256 === undefined) === (authorize === undefined))
    throw invalid('needs exactly one of adminKeySha256 or authorize, so that nobody signs in without a key');
  if (adminKeySha256 !== undefined && !(typeof adminKeySha256 === 'string' && /^[0-9a-fA-F]{64}$/.test(adminKeySha256)))
    throw invalid('adminKeySha256 must be the 64-character SHA-256 hex of the admin key');
  if (authorize !== undefined && typeof authorize !== 'function')
    throw invalid('authorize must be a function (key) => boolean');
  if (options.budgets !== undefined && !hasMethods(options.budgets, ['status', 'topUp', 'reset']))
    throw invalid('budgets must be a budget guard (status, topUp, reset)');
  if (options.keys !== undefined && !hasMethods(options.keys, ['list', 'findById', 'put', 'disable']))
    throw invalid('keys must be a KeyStore (stores.keys)');
  if (options.configKeys !== undefined && typeof options.configKeys !== 'function')
    throw invalid('configKeys must be a function returning key records');
  if (options.ledger !== undefined && !hasMethods(options.ledger, ['query']))
    throw invalid('ledger must be a pg Pool or Client, or a PGlite instance');
  if (options.limits !== undefined && typeof options.limits !== 'function')
    throw invalid('limits must be a function returning quota rows');
  if (options.alerts !== undefined && typeof options.alerts !== 'function')
    throw invalid('alerts must be a function returning alerts');
  if (options.routing !== undefined && typeof options.routing !== 'function')
    throw invalid('routing must be a function returning routing targets');
  if (options.abuse !== undefined && typeof options.abuse !== 'function')
    throw invalid('abuse must be a function returning the scored subjects');
  if (options.audit !== undefined && !hasMethods(options.audit, ['record', 'list']))
    throw invalid('audit must be an audit trail (auditTrail() of @tollgate/core/audit)');
  const period = options.period ?? 'month';
  if (!CALENDAR_PERIODS.includes(period)) throw invalid(`period must be one of ${CALENDAR_PERIODS.join(', ')}`);
  const timezone = options.timezone ?? 'UTC';
  const timezoneProblem = timeZoneProblem(timezone);
  if (timezoneProblem !== undefined) throw invalid(`timezone ${timezoneProblem}`);
  const maxSessions = options.maxSessions ?? 1000;
  if (!Number.isSafeInteger(maxSessions) || maxSessions < 1) throw invalid('maxSessions must be a positive integer');
  const secureCookie = options.secureCookie ?? 'auto';
  if (secureCookie !== 'auto' && typeof secureCookie !== 'boolean')
    throw invalid("secureCookie must be true, false or 'auto'");
  if (
    options.title !== undefined &&
    (typeof options.title !== 'string' || options.title.length === 0 || options.title.length > 100)
  )
    throw invalid('title must be a string of 1 to 100 characters');
  const { beforeAuth } = options;
  if (
    beforeAuth !== undefined &&
    !(Array.isArray(beforeAuth) && beforeAuth.every((item) => typeof item === 'function'))
  )
    throw invalid('beforeAuth must be an array of middleware functions');
  const { operatorSignIn } = options;
  if (
    operatorSignIn !== undefined &&
    !(typeof operatorSignIn.label === 'string' && hasMethods(operatorSignIn, ['href', 'session', 'signOut']))
  )
    throw invalid('operatorSignIn must hold label, href(), session() and signOut()');
  if (options.authorizeAction !== undefined && typeof options.authorizeAction !== 'function')
    throw invalid('authorizeAction must be a middleware function');
  const { keyActor } = options;
  if (keyActor !== undefined && !(typeof keyActor?.actor === 'string' && typeof keyActor.role === 'string'))
    throw invalid('keyActor must be an audit actor ({ actor, role, via })');
  if (options.now !== undefined && typeof options.now !== 'function')
    throw invalid('now must be a function returning epoch ms');
  let sessionTtlMs: number;
  try {
    sessionTtlMs = parseDuration(options.sessionTtl ?? '8h', 'sessionTtl');
  } catch (error) {
    throw invalid(error instanceof Error ? error.message : String(error));
  }
  return {
    authorize: authorize ?? adminKeyCheck(adminKeySha256!),
    budgets: options.budgets,
    keys: options.keys,
    configKeys: options.configKeys ?? (() => []),
    ledger: options.ledger,
    ledgerTable: { ...options.ledgerTable },
    limits: options.limits ?? (() => []),
    alerts: options.alerts ?? (() => []),
    routing: options.routing ?? (() => []),
    abuse: options.abuse,
    audit: options.audit,
    tenants: listSource(options.tenants, 'tenants'),
    tiers: listSource(options.tiers, 'tiers'),
    period,
    timezone,
    title: options.title ?? 'tollgate',
    sessionTtlMs,
    maxSessions,
    secureCookie,
    // A router runs them in their order, as the app would have.
    beforeAuth: beforeAuth?.length ? express.Router().use(...beforeAuth) : undefined,
    operatorSignIn,
    keyActor: options.keyActor ?? ADMIN_KEY_ACTOR,
    authorizeAction: options.authorizeAction,
    now: options.now ?? Date.now,
  };
}
