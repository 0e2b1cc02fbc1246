// A tenant's page: spend over time from the ledger, spend and caching's savings by model, feature, user and key, and its budgets live.
import { ApiError } from '@tollgate/core';
import type { BudgetStatus } from '@tollgate/budget';
import { aggregateUsage, usageOverTime } from '@tollgate/metering';
import type { UsageAggregate, UsageGrouping } from '@tollgate/metering';
import { count, fromNow, money, moneyColumn, utcTime } from './format.js';
import { html } from './html.js';
import type { SafeHtml } from './html.js';
import { loadKeyPage } from './keys-page.js';
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
/** End users and keys listed per page, the most expensive first (a tenant may have thousands). */
const TOP_CALLERS = 100;
/** Models drawn in the chart: the most expensive but one, and the rest as "other". */
const SERIES = 6;

export function readRange(value: unknown, fallback: RangeName): RangeName {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && Object.hasOwn(RANGES, value)) return value as RangeName;
  throw new ApiError('invalid_request', `range must be one of ${Object.keys(RANGES).join(', ')}.`, { param: 'range' });
}

/** `?q=`: the start of the user and key ids listed (a tenant may have thousands). */
export function readCallerSearch(value: unknown): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value === 'string' && value.length <= 128) return value;
  throw new ApiError('invalid_request', 'q must be the start of a user or key id, at most 128 characters.', {
    param: 'q',
  });
}

interface TenantData {
  tenant: string;
  range: RangeName;
  /** The start of the user and key ids listed, when searched. */
  search: string | null;
  since: string;
  until: string;
  /** The tenant's own budgets, those of its keys, its end users and its models, live from the budget store. */
  budgets: (BudgetStatus & BudgetStanding)[];
  /** Spend per bucket, one series per model (USD; exact sums in the tables). */
  spendOverTime: ChartData | null;
  byModel: UsageAggregate[];
  byFeature: UsageAggregate[];
  /** The range's end users and keys that spent most, at most 100 of each. */
  byUser: UsageAggregate[];
  byKey: UsageAggregate[];
  /** The range's most expensive agent sessions (`session` of the records; calls without one are left out). */
  bySession: UsageAggregate[];
  /**
   * The range's totals: calls served, tollgate's own refusals (apart: no provider saw them), spend, response-cache
   * hits and what caching saved.
   */
  total: { requests: number; refusals: number; costNanoUsd: number; cacheHits: number; savedNanoUsd: number } | null;
  /** The first page of its keys in id order (those whose id starts with the search), and the next page's cursor. */
  keys: ListedKey[];
  nextKeys: string | null;
  quotas: QuotaStatus[];
  problems: string[];
}

export async function loadTenant(
  config: DashboardConfig,
  tenant: string,
  range: RangeName,
  search?: string,
): Promise<TenantData> {
  const now = config.now();
  const problems = new SourceProblems();
  const { seconds, bucketSeconds } = RANGES[range];
  const nowSeconds = Math.floor(now / 1000);
  // Whole buckets: the first starts on a bucket boundary, the last holds now.
  const sinceSeconds = (Math.floor(nowSeconds / bucketSeconds) + 1) * bucketSeconds - seconds;
  const since = new Date(sinceSeconds * 1000);
  // To the end of the bucket holding now: whole buckets, which the smallest rollups answer (docs/usage-rollups.md).
  const until = new Date((Math.floor(nowSeconds / bucketSeconds) + 1) * bucketSeconds * 1000);
  const ledger = config.ledger;
  const guard = config.budgets;
  const by = (grouping: UsageGrouping, limit?: number, groupPrefix?: string, named?: boolean) =>
    ledger
      ? problems.read('ledger', [], () =>
          aggregateUsage(ledger, {
            ...config.ledgerTable,
            by: grouping,
            since,
            until,
            tenantId: tenant,
            ...(limit === undefined ? {} : { limit }),
            ...(groupPrefix === undefined ? {} : { groupPrefix }),
            ...(named ? { named } : {}),
          }),
        )
      : Promise.resolve([]);
  const [keyPage, own, configured, points, byModel, byFeature, byUser, byKey, bySession, quotas] = await Promise.all([
    // One page of its keys (KeyStore.page), never every key of the store.
    loadKeyPage(config, problems, { tenant, ...(search === undefined ? {} : { search }) }),
    guard ? problems.read('budgets', [], () => guard.status({ scope: 'tenant', id: tenant })) : [],
    // The model budgets configured for this tenant: never every budget there is (a key budget on each of 100,000 keys).
    guard ? problems.read('budgets', [], () => guard.status({ scope: 'model', tenant })) : [],
    ledger
      ? problems.read('ledger', null, () =>
          usageOverTime(ledger, {
            ...config.ledgerTable,
            since,
            until,
            bucketSeconds,
            splitBy: 'model',
            tenantId: tenant,
            topGroups: SERIES - 1,
          }),
        )
      : null,
    by('model'),
    by('feature'),
    by('user', TOP_CALLERS, search),
    by('key', TOP_CALLERS, search),
    // Named sessions only: a tenant's are read from an index alone, where its calls without one are all its calls.
    by('session', TOP_SESSIONS, undefined, true),
    problems.read('limits', [], async () =>
      (await config.limits({ tenantId: tenant })).filter((quota) => quota.tenantId === tenant),
    ),
  ]);
  const keys = keyPage.keys;
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
    ...configured.flatMap((status) => (status.id !== null ? [status.id] : [])),
  ]);
  const asked = guard
    ? await problems.read('budgets', [], async () =>
        (
          await Promise.all([
            ...[...users].slice(0, MAX_ASKED).map((id) => guard.status({ scope: 'user', id, tenant })),
            ...[...models].slice(0, MAX_ASKED).map((id) => guard.status({ scope: 'model', id, tenant })),
            ...sessions.map((id) => guard.status({ scope: 'session', id, tenant })),
            // The budgets of the keys on its page, each asked for.
            ...keys.map((key) => guard.status({ scope: 'key', id: key.id })),
          ])
        ).flat(),
      )
    : [];
  const budgets = [
    ...own,
    ...asked.filter(
      (status) => status.tenantId === tenant || (status.scope === 'key' && status.id !== null && keyIds.has(status.id)),
    ),
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
    search: search ?? null,
    since: since.toISOString(),
    until: until.toISOString(),
    budgets: budgets.map((status) => ({ ...status, ...budgetState(status) })),
    spendOverTime: points
      ? seriesFromPoints(points, { since: sinceSeconds, until: nowSeconds, bucketSeconds, maxSeries: SERIES })
      : null,
    byModel,
    byFeature,
    byUser,
    byKey,
    bySession,
    total,
    keys,
    nextKeys: keyPage.next,
    quotas,
    problems: problems.alerts().map((alert) => alert.message),
  };
}

/** Where the tenant's keys go on: the keys page, from the key after this table's last (its Previous leads back). */
function keysLinks(ctx: PageContext, data: TenantData): SafeHtml {
  const query = { tenant: data.tenant, ...(data.search ? { q: data.search } : {}) };
  const all = html`<a href="${ctx.base}/keys?${new URLSearchParams(query)}">On the keys page</a>`;
  if (data.nextKeys === null) return html`<nav class="pages" aria-label="Keys"><ul><li>${all}</li></ul></nav>`;
  const next = `${ctx.base}/keys?${new URLSearchParams({ ...query, after: data.nextKeys })}`;
  return html`<nav class="pages" aria-label="Keys"><ul><li>${all}</li><li><a href="${next}" rel="next">Next keys</a></li></ul></nav>`;
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
<form method="get" action="${base}" class="inline" role="search"><input type="hidden" name="range" value="${data.range}">
<label for="caller-search">User or key id starts with</label><input id="caller-search" name="q" maxlength="128" value="${data.search ?? ''}"><button type="submit">Search</button></form>
${groupTable('By user', data.byUser, totalCost)}
${groupTable('By key', data.byKey, totalCost)}
${data.byUser.length === TOP_CALLERS || data.byKey.length === TOP_CALLERS ? html`<p class="muted">Users and keys: the ${TOP_CALLERS} that spent most in this range.</p>` : ''}
${groupTable(`Top ${TOP_SESSIONS} sessions`, data.bySession, totalCost)}
${quotas}
${table('Keys', ['Id', 'State', 'User', 'Feature', 'Expires'], keys, data.search ? 'No key id starts with it.' : 'This tenant has no keys in the store.')}
${keysLinks(ctx, data)}`;
  return layout(ctx, { title: `Tenant ${data.tenant}`, current: '/tenants', body });
}
