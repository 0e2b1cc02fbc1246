// Budgets as configured, checked once: one limit or a list of them, and each bound to the scope, id and ledger slot it is charged to.
import { TollgateError, parseDuration, usdToNano } from '@tollgate/core';
import { GLOBAL_SLOT } from '@tollgate/core/store-contracts';
import { isCalendarPeriod, usdAmountProblem } from '@tollgate/core/options';
import type { BudgetPeriod, BudgetScope } from './types.js';

export const LIMIT_FIELDS = ['usd', 'period', 'window', 'buckets', 'softLimit', 'downgrade', 'validFrom', 'validUntil'];
const MAX_BUCKETS = 100;

/** A limit with its defaults applied, not yet bound to a scope id. */
export interface ResolvedLimit {
  period: BudgetPeriod;
  /** The IANA zone whose local calendar cuts calendar periods. */
  timezone: string;
  limitNano: number;
  /** The lowest soft-limit threshold: past it, downgrades apply. */
  softLimit: number | undefined;
  /** Every soft-limit threshold, ascending, each alerted once per period (empty: none). */
  thresholds: readonly number[];
  downgrade: ReadonlyMap<string, string> | undefined;
  /** Rolling only (0 otherwise). */
  windowMs: number;
  bucketMs: number;
  buckets: number;
  /** Epoch ms the budget holds from (`validFrom`; -Infinity: always). */
  validFrom: number;
  /** Epoch ms the budget holds until, exclusive (`validUntil`; Infinity: always). */
  validUntil: number;
}

/** The defaults a guard gives every budget without its own. */
export type LimitDefaults = Pick<ResolvedLimit, 'softLimit' | 'thresholds' | 'downgrade' | 'timezone'>;

/** One budget bound to its scope and id. */
export interface ResolvedBudget extends ResolvedLimit {
  scope: BudgetScope;
  id: string | null;
  /** The tenant whose end user or model this budget is (`tenantUsers`, `modelBudgets`); null otherwise. */
  tenantId: string | null;
  /** The team of a member's budget (`teamBudgets`); absent otherwise. */
  teamId?: string;
  /**
   * For messages, where the scope and id do not say it (a session's, a team member's); otherwise `budgetLabel` makes it
   * when a message needs it: a label kept on every bound budget was 56 bytes a tenant (bench/scale.ts).
   */
  label?: string;
  /** Ledger key without the period part: `budget:tenant:acme:month`. */
  base: string;
  /**
   * The ledger slot of every scope of this budget (`tenant:acme`, `key:k1`, `global`): named by
   * the budget's own scope and id, never by who asks, so reserves, settles, the operator's calls
   * and a rebuild all find it on the same shard of a Redis Cluster. A tenant's end users and models
   * share the tenant's slot: a request's tenant budgets change in one script there.
   */
  slot: string;
}

export function invalid(where: string, message: string): TollgateError {
  return new TollgateError('ERR_TG_BUDGET_INVALID_BUDGET', `${where}: ${message}`);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One fraction or a list of them, each 0 < x <= 1: the thresholds ascending, without repeats. */
export function checkSoftLimit(value: unknown, where: string): readonly number[] | undefined {
  if (value === undefined) return undefined;
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  if (list.length === 0 || list.some((x) => typeof x !== 'number' || !(x > 0 && x <= 1)))
    throw invalid(
      where,
      `softLimit must be a fraction of the limit (0 < softLimit <= 1) or a non-empty list of them; got ${JSON.stringify(value)}`,
    );
  return [...new Set(list as number[])].sort((a, b) => a - b);
}

export function checkDowngrade(value: unknown, where: string): ReadonlyMap<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value))
    throw invalid(where, 'downgrade must map model ids to model ids, e.g. { "gpt-4o": "gpt-4o-mini" }');
  const map = new Map<string, string>();
  for (const [from, to] of Object.entries(value)) {
    if (typeof to !== 'string' || to.length === 0)
      throw invalid(where, `downgrade["${from}"] must be a model id; got ${JSON.stringify(to)}`);
    map.set(from, to);
  }
  return map;
}

/** ISO 8601 date-time with a date and a time (and its zone): what `validFrom` and `validUntil` take. */
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** `validFrom` / `validUntil` as epoch ms (absent: -Infinity / Infinity), the first before the second. */
function checkValidity(limit: Record<string, unknown>, where: string): { validFrom: number; validUntil: number } {
  const instant = (name: 'validFrom' | 'validUntil', fallback: number) => {
    const value = limit[name];
    if (value === undefined) return fallback;
    const at = typeof value === 'string' && ISO_INSTANT.test(value) ? Date.parse(value) : NaN;
    if (!Number.isFinite(at))
      throw invalid(where, `${name} must be an ISO 8601 date-time with its zone; got ${JSON.stringify(value)}`);
    return at;
  };
  const validFrom = instant('validFrom', -Infinity);
  const validUntil = instant('validUntil', Infinity);
  if (validFrom >= validUntil) throw invalid(where, 'validFrom must be before validUntil');
  return { validFrom, validUntil };
}

/** True when the budget holds at `now` (within `validFrom` .. `validUntil`): outside, it is neither enforced nor reserved. */
export function inForceAt(limit: ResolvedLimit, now: number): boolean {
  return now >= limit.validFrom && now < limit.validUntil;
}

function resolveLimit(
  limit: unknown,
  where: string,
  defaults: LimitDefaults,
  fields: readonly string[],
): ResolvedLimit {
  if (!isRecord(limit)) throw invalid(where, 'a budget is an object like { "usd": 100, "period": "month" }');
  for (const name of Object.keys(limit)) {
    if (!fields.includes(name)) throw invalid(where, `unknown field "${name}"; known fields: ${fields.join(', ')}`);
  }
  const { usd, period = 'month' } = limit;
  const problem = usdAmountProblem(usd, { zero: true });
  if (problem !== undefined) throw invalid(where, `usd ${problem}`);
  if (period !== 'rolling' && !isCalendarPeriod(period))
    throw invalid(
      where,
      `period must be "hour", "day", "week", "month", "quarter" or "rolling"; got ${JSON.stringify(period)}`,
    );
  let windowMs = 0;
  let bucketMs = 0;
  let buckets = 0;
  if (period === 'rolling') {
    windowMs = parseDuration((limit.window as number | string | undefined) ?? '24h', `${where}.window`);
    buckets = (limit.buckets as number | undefined) ?? 24;
    if (!Number.isSafeInteger(buckets) || buckets < 1 || buckets > MAX_BUCKETS)
      throw invalid(where, `buckets must be an integer from 1 to ${MAX_BUCKETS}; got ${JSON.stringify(limit.buckets)}`);
    bucketMs = windowMs / buckets;
    if (!Number.isSafeInteger(bucketMs) || bucketMs < 1000)
      throw invalid(
        where,
        `window / buckets must be a whole number of ms, at least 1s; got ${windowMs} ms / ${buckets}`,
      );
  } else if (limit.window !== undefined || limit.buckets !== undefined) {
    throw invalid(where, 'window and buckets only apply to period "rolling"');
  }
  const ownThresholds = checkSoftLimit(limit.softLimit, where);
  const thresholds = ownThresholds ?? defaults.thresholds;
  const ownDowngrade = checkDowngrade(limit.downgrade, where);
  // A downgrade map takes effect past the soft limit; without one it would silently never apply.
  if (ownDowngrade && thresholds.length === 0)
    throw invalid(where, 'downgrade applies once spend passes the soft limit: set softLimit too');
  const downgrade = ownDowngrade ?? defaults.downgrade;
  return {
    period,
    timezone: defaults.timezone,
    limitNano: usdToNano(usd as number),
    softLimit: thresholds[0],
    thresholds,
    downgrade,
    windowMs,
    bucketMs,
    buckets,
    ...checkValidity(limit, where),
  };
}

/** The ledger key part that names a limit's period: two budgets of one scope and id differ in it. */
export function periodPart(limit: ResolvedLimit): string {
  return limit.period === 'rolling' ? `rolling:${limit.windowMs}ms:${limit.buckets}` : limit.period;
}

/**
 * One budget or a list of them (every entry holds at once), in the order given. Two entries of
 * one period would share one ledger scope, so a list names each period once.
 */
export function resolveLimits(
  value: unknown,
  where: string,
  defaults: LimitDefaults,
  fields: readonly string[] = LIMIT_FIELDS,
): ResolvedLimit[] {
  if (!Array.isArray(value)) return [resolveLimit(value, where, defaults, fields)];
  if (value.length === 0) throw invalid(where, 'a list of budgets holds at least one');
  const limits = value.map((limit, i) => resolveLimit(limit, `${where}[${i}]`, defaults, fields));
  const seen = new Set<string>();
  limits.forEach((limit, i) => {
    const part = periodPart(limit);
    if (seen.has(part))
      throw invalid(`${where}[${i}]`, `a second budget of period ${limit.period}: give each period once`);
    seen.add(part);
  });
  return limits;
}

/** `limit` charged to `scope` `id` (of `tenantId`, for an end user's or a model's budget within a tenant). */
export function bind(
  limit: ResolvedLimit,
  scope: BudgetScope,
  id: string | null,
  tenantId: string | null = null,
): ResolvedBudget {
  // Ids are encoded so that one containing ":" cannot collide with another scope's key. A tenant's
  // end users and models sit under the tenant's key, after a word no tenant period starts with.
  const idPart = id === null ? '' : `:${encodeURIComponent(id)}`;
  const owner = tenantId === null ? '' : `tenant:${encodeURIComponent(tenantId)}:`;
  let slot = id === null ? GLOBAL_SLOT : flat(`${scope}:${id}`);
  if (tenantId !== null) slot = flat(`tenant:${tenantId}`);
  // Every field named, in one order: a spread of `limit` gave each bound budget a hidden class of its own in V8 (10,000
  // tenants: 10,000 classes, about 5 MB; bench/scale.ts heap snapshots), where one literal's objects share one.
  return {
    period: limit.period,
    timezone: limit.timezone,
    limitNano: limit.limitNano,
    softLimit: limit.softLimit,
    thresholds: limit.thresholds,
    downgrade: limit.downgrade,
    windowMs: limit.windowMs,
    bucketMs: limit.bucketMs,
    buckets: limit.buckets,
    validFrom: limit.validFrom,
    validUntil: limit.validUntil,
    scope,
    id,
    tenantId,
    base: flat(`budget:${owner}${scope}${idPart}:${periodPart(limit)}`),
    slot,
  };
}

/** A budget as messages name it: `tenant acme`, `global`, `user bob of tenant acme`, `model gpt-4o of tenant acme`. */
export function budgetLabel(budget: ResolvedBudget): string {
  if (budget.label !== undefined) return budget.label;
  const { scope, id, tenantId } = budget;
  return id === null ? scope : `${scope} ${id}${tenantId === null ? '' : ` of tenant ${tenantId}`}`;
}

/**
 * `text` as one string: a template makes a chain of its parts, which a Map or a budget keeps whole (five strings a
 * ledger key, at 100,000 keys in a ledger or a rebuild). Reading a character makes V8 copy it into one.
 */
export function flat(text: string): string {
  text.charCodeAt(0);
  return text;
}
