// Adapters that route other packages' signals into the alert stream through options they already have.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { renderApiError, type ApiError, type ErrorRenderer, type Identity } from '@tollgate/core';
import type { Alerts } from './alerts.js';

/** What `budgetGuard`'s `onSoftLimit` hands over (`SoftLimitEvent` of @tollgate/budget). */
export interface SoftLimitNotice {
  scope: string;
  id: string | null;
  period: string;
  /** The ledger key of the budget's period: the event is sent once per key. */
  key: string;
  softLimit: number;
  spentUsd: number;
  limitUsd: number;
  resetAt: string;
  timestamp?: string;
}

/** `budgetGuard({ onSoftLimit: softLimitAlerts(alerts) })`: a `soft_limit` event per budget and period. */
export function softLimitAlerts(alerts: Alerts): (notice: SoftLimitNotice) => void {
  return function alertSoftLimit(notice) {
    const who = notice.scope === 'global' ? 'The global budget' : `The budget of ${notice.scope} ${notice.id}`;
    alerts.emit({
      type: 'soft_limit',
      id: `soft_limit:${notice.key}`,
      ...(notice.timestamp ? { at: notice.timestamp } : {}),
      ...(notice.scope === 'tenant' && notice.id ? { tenantId: notice.id } : {}),
      ...(notice.scope === 'key' && notice.id ? { keyId: notice.id } : {}),
      message: `${who} passed ${Math.round(notice.softLimit * 100)}% of $${notice.limitUsd} this ${notice.period} ($${notice.spentUsd.toFixed(2)} spent); it resets at ${notice.resetAt}.`,
      details: { ...notice },
    });
  };
}

/**
 * `budgetGuard({ renderError: budgetExhaustedAlerts(alerts) })`: renders as before and sends a
 * `budget_exhausted` event when a budget refused a call because its money is spent (not merely
 * held by requests in flight), once per caller and hour.
 */
export function budgetExhaustedAlerts(alerts: Alerts, render: ErrorRenderer = renderApiError): ErrorRenderer {
  return function renderAndAlertExhausted(error: ApiError, req: IncomingMessage, res: ServerResponse) {
    render(error, req, res);
    if (error.code !== 'insufficient_quota' || error.headers['x-should-retry'] === 'true') return;
    const identity = (req as IncomingMessage & { tollgate?: { identity?: Identity } }).tollgate?.identity;
    const hour = new Date().toISOString().slice(0, 13);
    alerts.emit({
      type: 'budget_exhausted',
      id: `budget_exhausted:${identity?.tenantId ?? ''}:${identity?.keyId ?? ''}:${hour}`,
      ...(identity?.tenantId ? { tenantId: identity.tenantId } : {}),
      ...(identity?.keyId ? { keyId: identity.keyId } : {}),
      message: error.message,
    });
  };
}

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
