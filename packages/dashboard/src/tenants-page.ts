// The tenants list: every tenant with spend in the dashboard's period, most expensive first, a page at a time,
// searched by the start of its id; the ledger picks the page (ORDER BY ... LIMIT ... OFFSET), never the whole list.
import { ApiError, periodWindow } from '@tollgate/core';
import { aggregateUsage } from '@tollgate/metering';
import type { UsageAggregate } from '@tollgate/metering';
import { count, moneyColumn, utcTime } from './format.js';
import { html } from './html.js';
import { layout, requestsCell, table } from './layout.js';
import type { PageContext } from './layout.js';
import type { DashboardConfig } from './options.js';
import { SourceProblems } from './sources.js';

/** Tenants per page. */
const TENANTS_PER_PAGE = 50;
const MAX_PAGE = 10_000;

interface TenantsQuery {
  /** Only tenants whose id starts with this. */
  search?: string;
  /** From 1. */
  page: number;
}

interface TenantsData {
  periodStart: string;
  periodEnd: string;
  search: string | null;
  page: number;
  /** This page's tenants, most expensive first; a tenant with no id (calls without one) is left out. */
  tenants: UsageAggregate[];
  /** Whether a next page holds more. */
  more: boolean;
  /** Whether a usage ledger is connected. */
  ledger: boolean;
  problems: string[];
}

export function readTenantsQuery(query: Record<string, unknown>): TenantsQuery {
  const { q, page } = query;
  if (q !== undefined && (typeof q !== 'string' || q.length > 128))
    throw new ApiError('invalid_request', 'q must be the start of a tenant id, at most 128 characters.', {
      param: 'q',
    });
  const number = page === undefined ? 1 : Number(page);
  if (!Number.isSafeInteger(number) || number < 1 || number > MAX_PAGE)
    throw new ApiError('invalid_request', `page must be a whole number from 1 to ${MAX_PAGE}.`, { param: 'page' });
  return { ...(q ? { search: q } : {}), page: number };
}

export async function loadTenants(config: DashboardConfig, query: TenantsQuery): Promise<TenantsData> {
  const problems = new SourceProblems();
  const window = periodWindow(config.period, config.now(), config.timezone);
  const ledger = config.ledger;
  // One more than a page: tells whether a next page exists without a count.
  const rows = ledger
    ? await problems.read('ledger', [], () =>
        aggregateUsage(ledger, {
          ...config.ledgerTable,
          by: 'tenant',
          since: new Date(window.start),
          until: new Date(window.end),
          limit: TENANTS_PER_PAGE + 1,
          offset: (query.page - 1) * TENANTS_PER_PAGE,
          groupPrefix: query.search ?? '',
        }),
      )
    : [];
  return {
    periodStart: new Date(window.start).toISOString(),
    periodEnd: new Date(window.end).toISOString(),
    search: query.search ?? null,
    page: query.page,
    tenants: rows.slice(0, TENANTS_PER_PAGE),
    more: rows.length > TENANTS_PER_PAGE,
    ledger: ledger !== undefined,
    problems: problems.alerts().map((alert) => alert.message),
  };
}

export function renderTenants(ctx: PageContext, data: TenantsData): string {
  const spend = moneyColumn(data.tenants.map((row) => row.costNanoUsd));
  const rows = data.tenants.map(
    (row) =>
      html`<tr data-tenant="${row.group ?? ''}"><th scope="row"><a href="${ctx.base}/tenants/${encodeURIComponent(row.group ?? '')}">${row.group ?? ''}</a></th>${requestsCell(row.requests - row.refusals, row.refusals)}<td class="num" data-nano-usd="${row.costNanoUsd}">${spend(row.costNanoUsd)}</td><td class="num">${count(row.cacheHits)}</td></tr>`,
  );
  const link = (page: number) =>
    `${ctx.base}/tenants?${new URLSearchParams({ ...(data.search ? { q: data.search } : {}), page: String(page) })}`;
  const pages = html`<nav class="pages" aria-label="Pages"><ul>${data.page > 1 ? html`<li><a href="${link(data.page - 1)}" rel="prev">Previous</a></li>` : ''}<li>Page ${data.page}</li>${data.more ? html`<li><a href="${link(data.page + 1)}" rel="next">Next</a></li>` : ''}</ul></nav>`;
  const body = html`${data.problems.map((message) => html`<p class="error" role="alert">${message}</p>`)}
<form method="get" action="${ctx.base}/tenants" class="inline" role="search"><label for="tenant-search">Tenant id starts with</label>
<input id="tenant-search" name="q" maxlength="128" value="${data.search ?? ''}"><button type="submit">Search</button></form>
${data.ledger ? '' : html`<p class="muted">No usage ledger is connected: there is no spend to list.</p>`}
${table(`Tenants by spend since ${utcTime(data.periodStart)}`, ['', 'Requests served', 'Spent (ledger)', 'Cache hits'], rows, 'No tenant matches.')}
${pages}`;
  return layout(ctx, { title: 'Tenants', current: '/tenants', body });
}
