// Adapters that route other packages' signals into the alert stream through options they already have.
import type { Alerts } from './alerts.js';

/** What `budgetGuard`'s `onEvent` hands over (`BudgetEvent` of @tollgate/budget). */
export interface BudgetEventNotice {
  type: 'budget.threshold' | 'budget.exhausted' | 'budget.forecast' | 'budget.drift';
  scope: string;
  id: string | null;
  /** The tenant of an end user's or a model's budget. */
  tenantId?: string | null;
  period: string;
  /** The ledger key of the budget's period: the event is sent once per key (and threshold). */
  key: string;
  /** `budget.threshold`: the fraction of the limit passed. */
  threshold?: number;
  /** `budget.forecast`: the spend projected at the period's end. */
  forecastUsd?: number;
  /** `budget.drift`: the store's counter less the usage ledger's figure beyond what holds explain, and its bound. */
  driftNanoUsd?: number;
  ledgerNanoUsd?: number;
  boundNanoUsd?: number;
  spentUsd: number;
  limitUsd: number;
  resetAt: string;
  timestamp?: string;
}

/**
 * `budgetGuard({ onEvent: budgetAlerts(alerts) })`: a `budget.threshold` event per budget, threshold
 * and period, a `budget.exhausted` and a `budget.forecast` event per budget and period, and a `budget.drift` event
 * each time a scope's counter is read past the drift bound after a reading within it.
 */
export function budgetAlerts(alerts: Alerts): (notice: BudgetEventNotice) => void {
  return function alertBudgetEvent(notice) {
    const { type, scope, id, threshold } = notice;
    const who = scope === 'global' ? 'The global budget' : `The budget of ${scope} ${id}`;
    const owner = notice.tenantId ? ` of tenant ${notice.tenantId}` : '';
    const tenantId = notice.tenantId ?? (scope === 'tenant' ? id : null);
    const spent = `$${notice.spentUsd.toFixed(2)} spent`;
    const limit = `$${notice.limitUsd} this ${notice.period}`;
    alerts.emit({
      type,
      id: `${type}:${notice.key}${threshold === undefined ? '' : `:${threshold}`}${type === 'budget.drift' ? `:${notice.timestamp ?? ''}` : ''}`,
      ...(notice.timestamp ? { at: notice.timestamp } : {}),
      ...(tenantId ? { tenantId } : {}),
      ...(scope === 'key' && id ? { keyId: id } : {}),
      message: budgetMessage(notice, `${who}${owner}`, limit, spent),
      details: { ...notice },
    });
  };
}

function budgetMessage(notice: BudgetEventNotice, who: string, limit: string, spent: string): string {
  switch (notice.type) {
    case 'budget.threshold':
      return `${who} passed ${Math.round((notice.threshold ?? 0) * 100)}% of ${limit} (${spent}); it resets at ${notice.resetAt}.`;
    case 'budget.drift':
      return `${who}: its counter is ${nanoText(notice.driftNanoUsd ?? 0, true)} off the usage ledger (${nanoText(notice.ledgerNanoUsd ?? 0)} recorded there, ${notice.period}; bound ${nanoText(notice.boundNanoUsd ?? 0)}); POST /admin/budgets/.../repair sets it to the ledger.`;
    case 'budget.forecast':
      return `${who} is on course for $${(notice.forecastUsd ?? 0).toFixed(2)} by ${notice.resetAt}, over ${limit} (${spent} so far).`;
    default:
      return `${who} ran out: ${limit} (${spent}); it refuses calls until it resets at ${notice.resetAt}.`;
  }
}

/** Nano-USD as dollars to the nano-USD for a message: `$0.500000000`, signed `+$0.500000000`. */
function nanoText(nano: number, signed = false): string {
  const sign = nano < 0 ? '-' : nano > 0 && signed ? '+' : '';
  const abs = Math.abs(nano);
  return `${sign}$${Math.floor(abs / 1e9)}.${String(abs % 1e9).padStart(9, '0')}`;
}

/** `budgetAlerts` under its name from before `budget.exhausted` joined `budget.threshold`. */
export const softLimitAlerts = budgetAlerts;

/**
 * `onStoreError: storeDownAlerts(alerts, 'ratelimit')` (any middleware's option of that name): a
 * `store_down` event per source and dedupe period, naming the error's class only (a driver's
 * message may quote keys).
 */
export function storeDownAlerts(alerts: Alerts, source: string): (error: unknown) => void {
  return function alertStoreDown(error) {
    const kind = error instanceof Error ? error.name : typeof error;
    alerts.emit({
      type: 'store_down',
      id: `store_down:${source}`,
      message: `The store behind ${source} failed (${kind}); its failure policy now decides what callers get.`,
      details: { source, error: kind },
    });
  };
}

/** For a router's circuit breaker: a `breaker_open` event per upstream and dedupe period. */
export function breakerOpenAlerts(alerts: Alerts): (upstream: string, details?: Record<string, unknown>) => void {
  return function alertBreakerOpen(upstream, details) {
    alerts.emit({
      type: 'breaker_open',
      id: `breaker_open:${upstream}`,
      message: `The circuit breaker of upstream ${upstream} opened: its calls fail or time out.`,
      ...(details ? { details } : {}),
    });
  };
}
