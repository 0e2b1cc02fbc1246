// A tenant's page: spend over time from the ledger, spend and caching's savings by model, feature, user and key, and its budgets live.
import { ApiError } from '@tollgate/core';
import type { BudgetStatus } from '@tollgate/budget';
import { aggregateUsage, usageOverTime } from '@tollgate/metering';
import type { UsageAggregate, UsageGrouping } from '@tollgate/metering';
import { count, fromNow, money, moneyColumn, utcTime } from './format.js';
import { html } from './html.js';
import type { SafeHtml } from './html.js';
import { loadKeys } from './keys-page.js';
import {
  BUDGET_SUM_NOTE,
  budgetAction,
  budgetFigures,
  budgetName,
  budgetState,
  chart,
  csrfField,
  layout,
  quotaTable,
  requestsCell,
  spendBar,
  table,
} from './layout.js';
import type { BudgetStanding, ChartData, PageContext } from './layout.js';
import type { DashboardConfig, QuotaStatus } from './options.js';
import { seriesFromPoints } from './series.js';
import { SourceProblems } from './sources.js';
import type { ListedKey } from './sources.js';

/** The ranges a tenant's history can be read over, with the bucket each is drawn in. */
export const RANGES = {
  '24h': { seconds: 86_400, bucketSeconds: 3_600 },
  '7d': { seconds: 7 * 86_400, bucketSeconds: 3_600 },
  '30d': { seconds: 30 * 86_400, bucketSeconds: 86_400 },
  '90d': { seconds: 90 * 86_400, bucketSeconds: 86_400 },
} as const;
export type RangeName = keyof typeof RANGES;

/** End users and models asked of the guard per page, at most (the JSON and the tables list the ledger's all). */
const MAX_ASKED = 100;
/** Agent sessions listed per page, the most expensive first (a tenant's sessions are many and short-lived). */
const TOP_SESSIONS = 10;

export function readRange(value: unknown, fallback: RangeName): RangeName {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && Object.hasOwn(RANGES, value)) return value as RangeName;
  throw new ApiError('invalid_request', `range must be one of ${Object.keys(RANGES).join(', ')}.`, { param: 'range' });
}

export interface TenantData {
  tenant: string;
  range: RangeName;
  since: string;
  until: string;
  /** The tenant's own budgets, those of its keys, its end users and its models, live from the budget store. */
  budgets: (BudgetStatus & BudgetStanding)[];
  /** Spend per bucket, one series per model (USD; exact sums in the tables). */
  spendOverTime: ChartData | null;
  byModel: UsageAggregate[];
  byFeature: UsageAggregate[];
  byUser: UsageAggregate[];
  byKey: UsageAggregate[];
  /** The range's most expensive agent sessions (`session` of the records; `(none)`: calls without one). */
  bySession: UsageAggregate[];
  /**
   * The range's totals: calls served, tollgate's own refusals (apart: no provider saw them), spend, response-cache
   * hits and what caching saved.
   */
  total: { requests: number; refusals: number; costNanoUsd: number; cacheHits: number; savedNanoUsd: number } | null;
  keys: ListedKey[];
  quotas: QuotaStatus[];
  problems: string[];
}

export async function loadTenant(config: DashboardConfig, tenant: string, range: RangeName): Promise<TenantData> {
  const now = config.now();
  const problems = new SourceProblems();
  const { seconds, bucketSeconds } = RANGES[range];
  const nowSeconds = Math.floor(now / 1000);
  // Whole buckets: the first starts on a bucket boundary, the last holds now.
  const sinceSeconds = (Math.floor(nowSeconds / bucketSeconds) + 1) * bucketSeconds - seconds;
  const since = new Date(sinceSeconds * 1000);
  const until = new Date(now);
  const ledger = config.ledger;
  const guard = config.budgets;
  const by = (grouping: UsageGrouping, limit?: number) =>
    ledger
      ? problems.read('ledger', [], () =>
          aggregateUsage(ledger, {
            ...config.ledgerTable,
            by: grouping,
            since,
            until,
            tenantId: tenant,
            ...(limit === undefined ? {} : { limit }),
          }),
        )
      : Promise.resolve([]);
  const [keys, own, configured, points, byModel, byFeature, byUser, byKey, bySession, quotas] = await Promise.all([
    loadKeys(config, problems).then((all) => all.filter((key) => key.tenantId === tenant)),
    guard ? problems.read('budgets', [], () => guard.status({ scope: 'tenant', id: tenant })) : [],
    guard ? problems.read('budgets', [], () => guard.status()) : [],
    ledger
      ? problems.read('ledger', null, () =>
          usageOverTime(ledger, {
            ...config.ledgerTable,
            since,
            until,
            bucketSeconds,
            splitBy: 'model',
            tenantId: tenant,
          }),
        )
      : null,
    by('model'),
    by('feature'),
    by('user'),
    by('key'),
    by('session', TOP_SESSIONS),
    problems.read('limits', [], async () =>
      (await config.limits({ tenantId: tenant })).filter((quota) => quota.tenantId === tenant),
    ),
  ]);
  const keyIds = new Set(keys.map((key) => key.id));
  // The tenant's end users (`userBudget`) and models (`modelBudgets`): those met in the range's ledger, those its
  // keys name, and those configured by name; each asked of the guard under this tenant.
  const users = new Set<string>([
    ...byUser.flatMap((row) => (row.group === null ? [] : [row.group])),
    ...keys.flatMap((key) => (key.userId === undefined ? [] : [key.userId])),
  ]);
  const sessions = bySession.flatMap((row) => (row.group === null ? [] : [row.group]));
  const models = new Set<string>([
    ...byModel.flatMap((row) => (row.group === null ? [] : [row.group])),
    ...configured.flatMap((status) =>
      status.scope === 'model' && status.tenantId === tenant && status.id !== null ? [status.id] : [],
    ),
  ]);
  const asked = guard
    ? await problems.read('budgets', [], async () =>
        (
          await Promise.all([
            ...[...users].slice(0, MAX_ASKED).map((id) => guard.status({ scope: 'user', id, tenant })),
            ...[...models].slice(0, MAX_ASKED).map((id) => guard.status({ scope: 'model', id, tenant })),
            ...sessions.map((id) => guard.status({ scope: 'session', id, tenant })),
          ])
        ).flat(),
      )
    : [];
  const budgets = [
    ...own,
    ...configured.filter((status) => status.scope === 'key' && status.id !== null && keyIds.has(status.id)),
    ...asked.filter((status) => status.tenantId === tenant),
  ];
  const total = ledger
    ? byModel.reduce(
        (sum, row) => ({
          requests: sum.requests + row.requests - row.refusals,
          refusals: sum.refusals + row.refusals,
          costNanoUsd: sum.costNanoUsd + row.costNanoUsd,
          cacheHits: sum.cacheHits + row.cacheHits,
          savedNanoUsd: sum.savedNanoUsd + row.savedNanoUsd,
        }),
        { requests: 0, refusals: 0, costNanoUsd: 0, cacheHits: 0, savedNanoUsd: 0 },
      )
    : null;
  return {
    tenant,
    range,
    since: since.toISOString(),
    until: until.toISOString(),
    budgets: budgets.map((status) => ({ ...status, ...budgetState(status) })),
    spendOverTime: points
      ? seriesFromPoints(points, { since: sinceSeconds, until: nowSeconds, bucketSeconds, maxSeries: 6 })
      : null,
    byModel,
    byFeature,
    byUser,
    byKey,
    bySession,
    total,
    keys,
    quotas,
    problems: problems.alerts().map((alert) => alert.message),
  };
}

function groupTable(caption: string, rows: UsageAggregate[], total: number): SafeHtml {
  const spend = moneyColumn(rows.map((row) => row.costNanoUsd));
  const saved = moneyColumn(rows.map((row) => row.savedNanoUsd));
  const body = rows.map(
    (row) =>
      html`<tr><th scope="row">${row.group ?? html`<span class="muted">(none)</span>`}</th>${requestsCell(row.requests - row.refusals, row.refusals)}<td class="num">${count(row.inputTokens + row.cachedInputTokens + row.cacheWriteTokens)}</td><td class="num">${count(row.outputTokens)}</td><td class="num" data-nano-usd="${row.costNanoUsd}">${spend(row.costNanoUsd)}</td><td class="num">${total > 0 ? `${((row.costNanoUsd / total) * 100).toFixed(1)}%` : ''}</td><td class="num" data-saved-nano-usd="${row.savedNanoUsd}">${saved(row.savedNanoUsd)}</td></tr>`,
  );
  return table(
    caption,
    ['', 'Requests served', 'Input', 'Output', 'Spend', 'Share', 'Saved by caching'],
    body,
    'No usage in this range.',
  );
}

function budgetCard(ctx: PageContext, status: TenantData['budgets'][number], back: string): SafeHtml {
  const who = budgetName(status);
  const resetAt = html`<time datetime="${status.resetAt}">${utcTime(status.resetAt)}</time>`;
  const resets = html`<div class="wide"><dt>Resets</dt><dd>${resetAt} (${fromNow(status.resetAt, ctx.now)})</dd></div>`;
  return html`<article class="card budget" data-scope="${status.scope}" data-id="${status.id ?? ''}" data-state="${status.state}">
<h3>${who} <small>${status.period}</small></h3>
${spendBar(who, status)}
${budgetFigures(status, resets)}
<form method="post" action="${budgetAction(ctx.base, status, 'top-up')}" class="inline">${csrfField(ctx)}<input type="hidden" name="back" value="${back}">
<label for="top-up-${status.key}">Credit this period (USD)</label>
<input id="top-up-${status.key}" name="usd" type="number" min="0.01" step="0.01" required inputmode="decimal">
<button type="submit">Top up</button></form>
</article>`;
}

export function renderTenant(ctx: PageContext, data: TenantData): string {
  const base = `${ctx.base}/tenants/${encodeURIComponent(data.tenant)}`;
  const ranges = (Object.keys(RANGES) as RangeName[]).map((range) =>
    range === data.range
      ? html`<li><a href="${base}?range=${range}" aria-current="true">${range}</a></li>`
      : html`<li><a href="${base}?range=${range}">${range}</a></li>`,
  );
  const hourly = RANGES[data.range].bucketSeconds < 86_400;
  const bucketLabel = (x: number) => (hourly ? utcTime(x * 1000) : utcTime(x * 1000).slice(0, 10));
  const totalCost = data.total?.costNanoUsd ?? 0;
  const budgets =
    data.budgets.length > 0
      ? html`<section><h2>Budgets now</h2><div class="cards">${data.budgets.map((status) => budgetCard(ctx, status, base))}</div>
${BUDGET_SUM_NOTE}</section>`
      : html`<section><h2>Budgets now</h2><p class="empty">No budget applies to this tenant.</p></section>`;
  const quotas = quotaTable(ctx, data.quotas, 'No request or token limit applies to this tenant.');
  const keys = data.keys.map(
    (key) =>
      html`<tr data-key="${key.id}" data-key-state="${key.state}"><th scope="row">${key.id}</th><td><span class="state state--${key.state}">${key.state}</span></td><td>${key.userId ?? ''}</td><td>${key.feature ?? ''}</td><td>${key.expiresAt ? fromNow(key.expiresAt, ctx.now) : 'never'}</td></tr>`,
  );
  const body = html`${data.problems.map((message) => html`<p class="error" role="alert">${message}</p>`)}
${budgets}
<nav class="ranges" aria-label="Time range"><ul>${ranges}</ul></nav>
${data.total ? html`<p class="summary">${count(data.total.requests)} requests served${data.total.refusals ? ` (${count(data.total.refusals)} refused by tollgate)` : ''}, <strong data-nano-usd="${data.total.costNanoUsd}">${money(data.total.costNanoUsd)}</strong> from ${utcTime(data.since)} to ${utcTime(data.until)}; caching saved <strong data-saved-nano-usd="${data.total.savedNanoUsd}">${money(data.total.savedNanoUsd)}</strong>, ${count(data.total.cacheHits)} answered from the response cache. <a href="${ctx.base}/requests?tenant=${encodeURIComponent(data.tenant)}">Its requests</a></p>` : html`<p class="muted">No usage ledger is connected: spend history is not shown.</p>`}
${data.spendOverTime ? chart('tenant-spend', `Spend over time by model (USD, per ${hourly ? 'hour' : 'day'})`, data.spendOverTime, bucketLabel) : ''}
${groupTable('By model', data.byModel, totalCost)}
${groupTable('By feature', data.byFeature, totalCost)}
${groupTable('By user', data.byUser, totalCost)}
${groupTable('By key', data.byKey, totalCost)}
${groupTable(`Top ${TOP_SESSIONS} sessions`, data.bySession, totalCost)}
${quotas}
${table('Keys', ['Id', 'State', 'User', 'Feature', 'Expires'], keys, 'This tenant has no keys in the store.')}`;
  return layout(ctx, { title: `Tenant ${data.tenant}`, current: '/tenants', body });
}
