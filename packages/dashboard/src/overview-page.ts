// The overview: spend this period per tenant and feature against its cap, what caching saved, quotas now, and what needs a look.
import { periodWindow } from '@tollgate/core';
import { expiringKeysWith } from '@tollgate/core/store-contracts';
import type { CalendarPeriod } from '@tollgate/core/options';
import type { BudgetStatus } from '@tollgate/budget';
import { aggregateUsage, costPerOutcome, usageOverTime } from '@tollgate/metering';
import type { OutcomeCost, UsageAggregate } from '@tollgate/metering';
import { count, exactMoney, fromNow, money, moneyColumn, percent, utcTime } from './format.js';
import { html } from './html.js';
import type { SafeHtml } from './html.js';
import {
  barAmounts,
  BUDGET_SUM_NOTE,
  budgetAmounts,
  budgetCell,
  budgetName,
  budgetState,
  chart,
  layout,
  QUOTA_UNITS,
  quotaTable,
  requestsCell,
  spendBar,
  spentOfCap,
  table,
} from './layout.js';
import type { BarState, BudgetStanding, ChartData, PageContext } from './layout.js';
import type { DashboardAlert, DashboardConfig, QuotaStatus } from './options.js';
import { seriesFromPoints } from './series.js';
import { keyState, SourceProblems } from './sources.js';

/** Spend of one tenant or feature in its current period, against its budget if it has one. */
interface SpendRow {
  id: string;
  /** The period the ledger's spend is summed over: the budget's own, else the dashboard's. */
  period: CalendarPeriod;
  periodStart: string;
  periodEnd: string;
  /** What the usage ledger recorded in that period; null without a ledger. */
  ledgerSpentNanoUsd: number | null;
  /** Calls served (answered by a provider or the cache): what the spend beside it paid for. Null without a ledger. */
  requests: number | null;
  /** Requests tollgate refused itself (limits, budget, guard), apart from `requests`: no provider saw them. */
  refusals: number | null;
  /** Requests the response cache answered, and what caching saved (hits and prompt-cache discounts); null without a ledger. */
  cacheHits: number | null;
  savedNanoUsd: number | null;
  /** The budget's live state (spent, top-up credit, reserved, remaining, reset), or null. */
  budget: BudgetStatus | null;
  /** The budget's spent over its cap plus credit (1 = 100%). */
  used: number | null;
  state: BarState;
  /** What the budget is past its cap: spent − credit + reserved + remaining − over = cap. Null without a budget. */
  overNanoUsd: number | null;
}

interface OverviewData {
  generatedAt: string;
  tenants: SpendRow[];
  features: SpendRow[];
  /** Key, user, end-user, model and global budgets configured by id. */
  otherBudgets: (BudgetStatus & BudgetStanding)[];
  quotas: QuotaStatus[];
  alerts: DashboardAlert[];
  /** Spend per UTC day over the last 30 days, per tenant. */
  dailySpend: ChartData | null;
  /** Cost per outcome of the outcomes reported this period, per tenant and per feature; null without a ledger. */
  outcomes: { periodStart: string; tenants: OutcomeCost[]; features: OutcomeCost[] } | null;
  /** What caching saved in the dashboard's period over the whole ledger; null without a ledger. */
  savings: CacheSavings | null;
  ledger: boolean;
}

interface CacheSavings {
  periodStart: string;
  periodEnd: string;
  /** Requests answered from the response cache. */
  cacheHits: number;
  /** Response-cache hits' answer cost less what was billed, plus the provider's cached-input discounts. */
  savedNanoUsd: number;
}

interface LedgerSums {
  cost: number;
  requests: number;
  refusals: number;
  cacheHits: number;
  saved: number;
}

/** Tenants and features per table and in the JSON: the most expensive, and those with a budget. */
const MAX_ROWS = 200;
/** Tenants drawn in the daily chart: the most expensive but one, and the rest as "other". */
const SERIES = 6;
const DAY_SECONDS = 86_400;
const EXPIRY_WARNING_MS = 7 * 86_400_000;
/** Keys named by "expires" alerts at most, the soonest first: the keys page lists them all. */
const MAX_EXPIRY_ALERTS = 50;

/** The ledger's sums of aggregate rows, by their group (rows of no group left out). */
function sumsOf(rows: UsageAggregate[]): [string, LedgerSums][] {
  return rows.flatMap((row): [string, LedgerSums][] =>
    row.group === null
      ? []
      : [
          [
            row.group,
            {
              cost: row.costNanoUsd,
              requests: row.requests - row.refusals,
              refusals: row.refusals,
              cacheHits: row.cacheHits,
              saved: row.savedNanoUsd,
            },
          ],
        ],
  );
}

/** The ledger's sums of `ids` in each one's period (`periodOf`), added to `ledgerSums`: one query per period. */
async function sumGroups(
  config: DashboardConfig,
  problems: SourceProblems,
  scope: 'tenant' | 'feature',
  now: number,
  ids: readonly string[],
  periodOf: (id: string) => CalendarPeriod,
  ledgerSums: Map<CalendarPeriod, Map<string, LedgerSums>>,
): Promise<void> {
  const ledger = config.ledger;
  if (!ledger) return;
  const byPeriod = new Map<CalendarPeriod, string[]>();
  for (const id of ids) {
    const group = byPeriod.get(periodOf(id));
    if (group) group.push(id);
    else byPeriod.set(periodOf(id), [id]);
  }
  await Promise.all(
    [...byPeriod].map(async ([period, groups]) => {
      const window = periodWindow(period, now, config.timezone);
      const range = { ...config.ledgerTable, by: scope, since: new Date(window.start), until: new Date(window.end) };
      const sums = ledgerSums.get(period) ?? new Map<string, LedgerSums>();
      ledgerSums.set(period, sums);
      const rows = await problems.read('ledger', [], () => aggregateUsage(ledger, { ...range, groups }));
      for (const [id, sum] of sumsOf(rows)) sums.set(id, sum);
    }),
  );
}

async function spendRows(
  config: DashboardConfig,
  problems: SourceProblems,
  scope: 'tenant' | 'feature',
  statuses: BudgetStatus[],
  now: number,
): Promise<SpendRow[]> {
  const budgets = new Map(
    statuses.filter((status) => status.scope === scope && status.id !== null).map((status) => [status.id!, status]),
  );
  const periodOf = (status: BudgetStatus | undefined): CalendarPeriod =>
    status && status.period !== 'rolling' ? status.period : config.period;
  // One ledger query per period in use: sums per id, exact integers.
  const periods = new Set<CalendarPeriod>([config.period, ...[...budgets.values()].map(periodOf)]);
  const ledgerSums = new Map<CalendarPeriod, Map<string, LedgerSums>>();
  const ledger = config.ledger;
  if (ledger) {
    await Promise.all(
      [...periods].map(async (period) => {
        const window = periodWindow(period, now, config.timezone);
        const range = { ...config.ledgerTable, by: scope, since: new Date(window.start), until: new Date(window.end) };
        // The most expensive ids, chosen in SQL; the budgeted ids shown beside them are summed once they are chosen.
        const top = await problems.read('ledger', [], () => aggregateUsage(ledger, { ...range, limit: MAX_ROWS }));
        ledgerSums.set(period, new Map(sumsOf(top)));
      }),
    );
  }
  const ids = new Set<string>([...budgets.keys(), ...(ledgerSums.get(config.period)?.keys() ?? [])]);
  // Ids seen only in the ledger may still have a budget from a wildcard entry ('*') or from code.
  const unconfigured = [...ids].filter((id) => !budgets.has(id)).slice(0, MAX_ROWS);
  if (config.budgets && unconfigured.length > 0) {
    const guard = config.budgets;
    const found = await problems.read('budgets', [], () =>
      Promise.all(unconfigured.map((id) => guard.status({ scope, id }))),
    );
    for (const status of found.flat())
      if (status.scope === scope && status.id !== null && !budgets.has(status.id)) budgets.set(status.id, status);
  }
  // Past MAX_ROWS (a budget for each of 10,000 tenants), the rows shown are chosen before the ledger is asked for the
  // budgeted ones' sums: the budgets most used, then the most expensive (the tenants page lists them all, a page each).
  const ranked = [...ids]
    .map((id) => {
      const budget = budgets.get(id);
      return { id, used: budgetState(budget ?? null).used, spent: ledgerSums.get(periodOf(budget))?.get(id)?.cost };
    })
    .sort((a, b) => (b.used ?? -1) - (a.used ?? -1) || (b.spent ?? 0) - (a.spent ?? 0) || a.id.localeCompare(b.id));
  const shown = ranked.slice(0, MAX_ROWS).map((row) => row.id);
  if (ledger) {
    const summed = (period: CalendarPeriod, id: string) => ledgerSums.get(period)?.has(id) === true;
    const unsummed = shown.filter((id) => budgets.has(id) && !summed(periodOf(budgets.get(id)), id));
    await sumGroups(config, problems, scope, now, unsummed, (id) => periodOf(budgets.get(id)), ledgerSums);
  }
  const rows = shown.map((id): SpendRow => {
    const budget = budgets.get(id) ?? null;
    const period = periodOf(budget ?? undefined);
    const window = periodWindow(period, now, config.timezone);
    const sum = ledgerSums.get(period)?.get(id);
    return {
      id,
      period,
      periodStart: new Date(window.start).toISOString(),
      periodEnd: new Date(window.end).toISOString(),
      ledgerSpentNanoUsd: ledger ? (sum?.cost ?? 0) : null,
      requests: ledger ? (sum?.requests ?? 0) : null,
      refusals: ledger ? (sum?.refusals ?? 0) : null,
      cacheHits: ledger ? (sum?.cacheHits ?? 0) : null,
      savedNanoUsd: ledger ? (sum?.saved ?? 0) : null,
      budget,
      ...budgetState(budget),
    };
  });
  rows.sort(
    (a, b) =>
      (b.used ?? -1) - (a.used ?? -1) ||
      (b.ledgerSpentNanoUsd ?? 0) - (a.ledgerSpentNanoUsd ?? 0) ||
      a.id.localeCompare(b.id),
  );
  return rows;
}

/** What caching saved in the dashboard's period over the whole ledger, every tenant and none: summed by day. */
async function ledgerSavings(
  config: DashboardConfig,
  problems: SourceProblems,
  ledger: NonNullable<DashboardConfig['ledger']>,
  now: number,
): Promise<CacheSavings> {
  const window = periodWindow(config.period, now, config.timezone);
  const days = await problems.read('ledger', [], () =>
    aggregateUsage(ledger, {
      ...config.ledgerTable,
      by: 'day',
      since: new Date(window.start),
      until: new Date(window.end),
    }),
  );
  return {
    periodStart: new Date(window.start).toISOString(),
    periodEnd: new Date(window.end).toISOString(),
    cacheHits: days.reduce((sum, row) => sum + row.cacheHits, 0),
    savedNanoUsd: days.reduce((sum, row) => sum + row.savedNanoUsd, 0),
  };
}

function budgetAlerts(rows: SpendRow[], others: OverviewData['otherBudgets'], now: number): DashboardAlert[] {
  const alerts: DashboardAlert[] = [];
  const all = [
    ...rows.filter((row) => row.budget).map((row) => ({ status: row.budget!, state: row.state, used: row.used })),
    ...others.map((status) => ({ status, state: status.state, used: status.used })),
  ];
  for (const { status, state, used } of all) {
    // A tenant's own budgets, and its end users' and models', are on the tenant's page.
    const tenant = status.scope === 'tenant' ? status.id : status.tenantId;
    const href = tenant !== null ? `tenants/${encodeURIComponent(tenant)}` : undefined;
    const who = budgetName(status);
    if (state === 'over') {
      alerts.push({
        level: 'critical',
        message: `The ${who} budget is spent: ${spentOfCap(status)}. Its requests are refused until ${utcTime(status.resetAt)} (${fromNow(status.resetAt, now)}).`,
        ...(href ? { href } : {}),
      });
    } else if (state === 'soft') {
      alerts.push({
        level: 'warning',
        message: `The ${who} budget is past its soft limit of ${percent(status.softLimit ?? 0)}: ${percent(used ?? 0)} spent (${spentOfCap(status)}).`,
        ...(href ? { href } : {}),
      });
    }
  }
  return alerts;
}

export async function loadOverview(config: DashboardConfig): Promise<OverviewData> {
  const now = config.now();
  const problems = new SourceProblems();
  const guard = config.budgets;
  const statuses = guard ? await problems.read('budgets', [], () => guard.status()) : [];
  const ledger = config.ledger;
  const dailySince = (Math.floor(now / 1000 / DAY_SECONDS) - 29) * DAY_SECONDS;
  const outcomeWindow = periodWindow(config.period, now, config.timezone);
  const tenantRows = spendRows(config, problems, 'tenant', statuses, now);
  const [tenants, features, savings, quotas, keys, extra, points, outcomes] = await Promise.all([
    tenantRows,
    spendRows(config, problems, 'feature', statuses, now),
    ledger ? ledgerSavings(config, problems, ledger, now) : null,
    // The quotas of the tenants shown, not of every tenant there is.
    tenantRows.then((rows) =>
      problems.read('limits', [], async () => [...(await config.limits({ tenantIds: rows.map((row) => row.id) }))]),
    ),
    // The keys that expire within the warning, from the store's index by expiry: never every key read.
    problems.read('keys', [], async () =>
      // Four times as many as are named: revoked keys among the soonest do not hide the active ones after them.
      expiringKeysWith(config.keys, [...config.configKeys()], now, now + EXPIRY_WARNING_MS, 4 * MAX_EXPIRY_ALERTS),
    ),
    problems.read('alerts', [], async () => [...(await config.alerts())]),
    ledger
      ? tenantRows.then((rows) =>
          problems.read('ledger', null, () =>
            usageOverTime(ledger, {
              ...config.ledgerTable,
              since: new Date(dailySince * 1000),
              // To the end of today: whole days, which the tenant-by-day rollup answers (docs/usage-rollups.md).
              until: new Date((dailySince + 30 * DAY_SECONDS) * 1000),
              bucketSeconds: DAY_SECONDS,
              splitBy: 'tenant',
              // The tenants that spent most this period, as the table found them: not a second ranking of every
              // tenant over 30 days (at 10,000 tenants, the page's longest read). A period with fewer spenders so
              // far (its first hours) has the 30 days ranked.
              ...chartTenants(topSpenders(rows, SERIES - 1)),
            }),
          ),
        )
      : null,
    ledger
      ? problems.read('ledger', null, async () => {
          const range = {
            ...config.ledgerTable,
            since: new Date(outcomeWindow.start),
            until: new Date(outcomeWindow.end),
          };
          const [byTenant, byFeature] = await Promise.all([
            costPerOutcome(ledger, { ...range, by: 'tenant' }),
            costPerOutcome(ledger, { ...range, by: 'feature' }),
          ]);
          return { periodStart: new Date(outcomeWindow.start).toISOString(), tenants: byTenant, features: byFeature };
        })
      : null,
  ]);
  // Key, user and global budgets: the most used first, as many as the tenants' table shows (a budget on each of
  // 100,000 keys is not a table); those past a limit beyond them are counted in one alert.
  const others = statuses
    .filter((status) => status.scope !== 'tenant' && status.scope !== 'feature')
    .map((status) => ({ ...status, ...budgetState(status) }))
    .sort((a, b) => (b.used ?? -1) - (a.used ?? -1) || b.spentNanoUsd - a.spentNanoUsd);
  const otherBudgets = others.slice(0, MAX_ROWS);
  const alerts: DashboardAlert[] = [
    ...problems.alerts(),
    ...budgetAlerts([...tenants, ...features], otherBudgets, now),
  ];
  const pastUnshown = others.slice(MAX_ROWS).filter((other) => other.state === 'over' || other.state === 'soft');
  if (pastUnshown.length > 0)
    alerts.push({
      level: 'warning',
      message: `${count(pastUnshown.length)} more key, user or model budgets are past their soft limit or spent (GET /admin/budgets lists them).`,
    });
  for (const quota of quotas) {
    if (quota.remaining <= 0)
      alerts.push({
        level: 'warning',
        message: `No ${QUOTA_UNITS[quota.unit].left} left for ${quota.name}${quota.resetAt ? ` until ${utcTime(quota.resetAt)}` : ''}.`,
      });
  }
  for (const key of keys.filter((record) => keyState(record, now) === 'active').slice(0, MAX_EXPIRY_ALERTS))
    alerts.push({
      level: 'info',
      message: `Key ${key.id} expires ${fromNow(Date.parse(key.expiresAt!), now)}.`,
      href: 'keys',
    });
  alerts.push(...extra);
  return {
    generatedAt: new Date(now).toISOString(),
    tenants,
    features,
    otherBudgets,
    quotas,
    alerts,
    dailySpend: points
      ? seriesFromPoints(points, {
          since: dailySince,
          until: Math.floor(now / 1000),
          bucketSeconds: DAY_SECONDS,
          maxSeries: SERIES,
        })
      : null,
    outcomes,
    savings,
    ledger: ledger !== undefined,
  };
}

/** The chart's named tenants: those given when there are enough of them, else the top ones of its own range. */
function chartTenants(spenders: string[]): { namedGroups: string[] } | { topGroups: number } {
  return spenders.length === SERIES - 1 ? { namedGroups: spenders } : { topGroups: SERIES - 1 };
}

/** The `count` rows of the table that spent most in their period, by id. */
function topSpenders(rows: readonly SpendRow[], count: number): string[] {
  return [...rows]
    .filter((row) => (row.ledgerSpentNanoUsd ?? 0) > 0)
    .sort((a, b) => b.ledgerSpentNanoUsd! - a.ledgerSpentNanoUsd! || a.id.localeCompare(b.id))
    .slice(0, count)
    .map((row) => row.id);
}

function periodWord(row: SpendRow): string {
  return row.budget?.period === 'rolling' ? `rolling (ledger: this ${row.period})` : `this ${row.period}`;
}

/** How a table's money reads: one formatter per column, the same decimals on every row (see `moneyColumn`). */
interface SpendColumns {
  bar: (nano: number) => string;
  spent: (nano: number) => string;
  saved: (nano: number) => string;
  figures: (nano: number) => string;
}

function spendColumns(rows: readonly SpendRow[]): SpendColumns {
  const budgets = rows.flatMap((row) => (row.budget ? [row.budget] : []));
  return {
    bar: moneyColumn(budgets.flatMap(barAmounts)),
    spent: moneyColumn(rows.map((row) => row.ledgerSpentNanoUsd ?? 0)),
    saved: moneyColumn(rows.map((row) => row.savedNanoUsd ?? 0)),
    figures: exactMoney(budgets.flatMap(budgetAmounts)),
  };
}

function spendRowHtml(ctx: PageContext, row: SpendRow, scope: 'tenant' | 'feature', usd: SpendColumns): SafeHtml {
  const name =
    scope === 'tenant' ? html`<a href="${ctx.base}/tenants/${encodeURIComponent(row.id)}">${row.id}</a>` : row.id;
  return html`<tr data-${scope}="${row.id}" data-state="${row.state}">
<th scope="row">${name}</th>
<td class="bar-cell">${row.budget ? spendBar(`${scope} ${row.id}`, row.budget, usd.bar) : html`<span class="muted">no budget</span>`}</td>
<td class="num" data-nano-usd="${row.ledgerSpentNanoUsd ?? ''}">${row.ledgerSpentNanoUsd === null ? '—' : usd.spent(row.ledgerSpentNanoUsd)}</td>
${row.requests === null ? html`<td class="num">—</td>` : requestsCell(row.requests, row.refusals ?? 0)}
<td class="num">${row.cacheHits === null ? '—' : count(row.cacheHits)}</td>
<td class="num" data-saved-nano-usd="${row.savedNanoUsd ?? ''}">${row.savedNanoUsd === null ? '—' : usd.saved(row.savedNanoUsd)}</td>
<td>${periodWord(row)}</td>
${budgetCell(row.budget, usd.figures)}
${row.budget ? html`<td><time datetime="${row.budget.resetAt}">${fromNow(row.budget.resetAt, ctx.now)}</time></td>` : html`<td></td>`}
</tr>`;
}

// The bar first: on a phone it is what shows before the table scrolls.
const SPEND_HEAD = [
  '',
  'Budget: spent of cap',
  'Spent (ledger)',
  'Requests served',
  'Cache hits',
  'Saved by caching',
  'Period',
  'Remaining (credit, held)',
  'Resets',
];

const OTHER_HEAD = ['', 'Spent of cap', 'Period', 'Remaining (credit, held)', 'Resets'];

const OUTCOME_HEAD = ['', 'Outcome', 'Outcomes', 'Requests', 'Cost', 'Cost per outcome', 'Value', 'Value per cost'];

interface OutcomeColumns {
  cost: (nano: number) => string;
  perOutcome: (nano: number) => string;
  value: (nano: number) => string;
}

function outcomeColumns(rows: readonly OutcomeCost[]): OutcomeColumns {
  return {
    cost: moneyColumn(rows.map((row) => row.costNanoUsd)),
    perOutcome: moneyColumn(rows.map((row) => row.costPerOutcomeNanoUsd)),
    value: moneyColumn(rows.map((row) => row.valueNanoUsd ?? 0)),
  };
}

function outcomeRowHtml(
  ctx: PageContext,
  row: OutcomeCost,
  scope: 'tenant' | 'feature',
  usd: OutcomeColumns,
): SafeHtml {
  const id = row.group ?? '(none)';
  const name =
    scope === 'tenant' && row.group !== null
      ? html`<a href="${ctx.base}/tenants/${encodeURIComponent(row.group)}">${id}</a>`
      : id;
  return html`<tr data-outcome-${scope}="${id}" data-kind="${row.kind}">
<th scope="row">${name}</th>
<td>${row.kind}</td>
<td class="num">${count(row.outcomes)}</td>
<td class="num">${count(row.requests)}</td>
<td class="num" data-nano-usd="${row.costNanoUsd}">${usd.cost(row.costNanoUsd)}</td>
<td class="num" data-cost-per-outcome="${row.costPerOutcomeNanoUsd}">${usd.perOutcome(row.costPerOutcomeNanoUsd)}</td>
<td class="num">${row.valueNanoUsd === null ? '' : usd.value(row.valueNanoUsd)}</td>
<td class="num">${row.valuePerCost === null ? '' : `${row.valuePerCost.toFixed(row.valuePerCost >= 100 ? 0 : 2)}×`}</td>
</tr>`;
}

function alertList(ctx: PageContext, alerts: DashboardAlert[]): SafeHtml {
  if (alerts.length === 0)
    return html`<section class="alerts"><h2>Alerts</h2><p class="empty">Nothing needs a look.</p></section>`;
  const items = alerts.map(
    (alert) =>
      html`<li class="alert alert--${alert.level}" data-level="${alert.level}"><span class="alert-level">${alert.level}</span> ${alert.message}${alert.href ? html` <a href="${ctx.base}/${alert.href}">Open</a>` : ''}</li>`,
  );
  return html`<section class="alerts" aria-live="polite"><h2>Alerts</h2><ul>${items}</ul></section>`;
}

/** Cost per outcome this period: what the requests behind each resolved ticket or sale cost, per tenant and feature. */
function outcomeTables(ctx: PageContext, outcomes: NonNullable<OverviewData['outcomes']>): SafeHtml {
  const empty = 'No outcomes reported this period (POST /v1/outcomes, or recordOutcome() in @tollgate/metering).';
  const tenants = outcomes.tenants.slice(0, MAX_ROWS);
  const features = outcomes.features.slice(0, MAX_ROWS);
  const [tenantColumns, featureColumns] = [outcomeColumns(tenants), outcomeColumns(features)];
  return html`${table(
    `Cost per outcome by tenant, since ${utcTime(outcomes.periodStart)}`,
    OUTCOME_HEAD,
    tenants.map((row) => outcomeRowHtml(ctx, row, 'tenant', tenantColumns)),
    empty,
  )}
${
  outcomes.tenants.length > 0
    ? table(
        'Cost per outcome by feature',
        OUTCOME_HEAD,
        features.map((row) => outcomeRowHtml(ctx, row, 'feature', featureColumns)),
      )
    : ''
}`;
}

/** One line: what response-cache hits and prompt-cache discounts saved this period, over every tenant. */
function savingsSummary(savings: CacheSavings): SafeHtml {
  const hits = `${count(savings.cacheHits)} ${savings.cacheHits === 1 ? 'request' : 'requests'}`;
  return html`<p class="summary savings">Caching saved <strong data-saved-nano-usd="${savings.savedNanoUsd}">${money(savings.savedNanoUsd)}</strong> since ${utcTime(savings.periodStart)}: ${hits} answered from the response cache, and the providers' discounts on cached input.</p>`;
}

export function renderOverview(ctx: PageContext, data: OverviewData): string {
  const tenants = data.tenants.slice(0, MAX_ROWS);
  const features = data.features.slice(0, MAX_ROWS);
  const [tenantColumns, featureColumns] = [spendColumns(tenants), spendColumns(features)];
  const tenantRows = tenants.map((row) => spendRowHtml(ctx, row, 'tenant', tenantColumns));
  const featureRows = features.map((row) => spendRowHtml(ctx, row, 'feature', featureColumns));
  const otherBar = moneyColumn(data.otherBudgets.flatMap(barAmounts));
  const otherFigures = exactMoney(data.otherBudgets.flatMap(budgetAmounts));
  const otherRows = data.otherBudgets.map(
    (status) => html`<tr data-state="${status.state}">
<th scope="row">${budgetName(status)}</th>
<td class="bar-cell">${spendBar(budgetName(status), status, otherBar)}</td><td>${status.period}</td>
${budgetCell(status, otherFigures)}<td><time datetime="${status.resetAt}">${fromNow(status.resetAt, ctx.now)}</time></td></tr>`,
  );
  const noLedger = data.ledger
    ? ''
    : html`<p class="muted">No usage ledger is connected: spend history is not shown. Pass <code>ledger</code> (PostgreSQL or PGlite).</p>`;
  const body = html`${alertList(ctx, data.alerts)}
${noLedger}
${data.savings ? savingsSummary(data.savings) : ''}
${table('Tenants', SPEND_HEAD, tenantRows, 'No tenant has a budget or recorded spend yet.')}
${BUDGET_SUM_NOTE}
<p class="muted">Spent (ledger) is what the usage ledger recorded in the period. Requests served are the calls it paid
for; the requests tollgate refused itself (limits, budgets, the guard) are counted apart, under them.</p>
${data.dailySpend ? chart('daily-spend', 'Spend per day, last 30 days (USD)', data.dailySpend, (x) => utcTime(x * 1000).slice(0, 10)) : ''}
${table('Features', SPEND_HEAD, featureRows, 'No feature has a budget or recorded spend yet.')}
${data.outcomes ? outcomeTables(ctx, data.outcomes) : ''}
${otherRows.length > 0 ? table('Keys, end users, models and global', OTHER_HEAD, otherRows) : ''}
${quotaTable(ctx, data.quotas, 'No quotas reported (the app passes them as the limits option).')}`;
  return layout(ctx, { title: 'Overview', current: '', body });
}
