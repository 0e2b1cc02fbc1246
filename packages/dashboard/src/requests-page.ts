// Recent requests: the usage records from the ledger, newest first, filtered by tenant, key, model and status.
import { ApiError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { recentUsage } from '@tollgate/metering';
import type { RecordCursor, UsageFilter } from '@tollgate/metering';
import { count, moneyColumn, utcTime } from './format.js';
import { html } from './html.js';
import type { SafeHtml } from './html.js';
import { layout, table } from './layout.js';
import type { PageContext } from './layout.js';
import type { DashboardConfig } from './options.js';
import { SourceProblems } from './sources.js';

interface RequestsQuery {
  tenant?: string;
  key?: string;
  model?: string;
  /** `ok`, `error` or an HTTP status. */
  status?: string;
  limit: number;
  /** Where the previous page ended (opaque). */
  after?: string;
}

interface RequestsData {
  filter: RequestsQuery;
  records: UsageRecord[];
  /** Pass as `after` for the next page; absent on the last. */
  next: string | null;
  ledger: boolean;
  problems: string[];
}

function textParam(value: unknown, name: string): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || value.length > 128)
    throw new ApiError('invalid_request', `${name} must be text of at most 128 characters.`, { param: name });
  return value;
}

export function readRequestsQuery(query: Record<string, unknown>): RequestsQuery {
  const status = textParam(query.status, 'status');
  if (status !== undefined && status !== 'ok' && status !== 'error' && !/^\d{1,3}$/.test(status))
    throw new ApiError('invalid_request', 'status must be ok, error or an HTTP status.', { param: 'status' });
  const limit = query.limit === undefined || query.limit === '' ? 50 : Number(query.limit);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 500)
    throw new ApiError('invalid_request', 'limit must be a whole number from 1 to 500.', { param: 'limit' });
  return {
    tenant: textParam(query.tenant, 'tenant'),
    key: textParam(query.key, 'key'),
    model: textParam(query.model, 'model'),
    status,
    limit,
    after: textParam(query.after, 'after'),
  };
}

function encodeCursor(cursor: RecordCursor): string {
  return Buffer.from(JSON.stringify([cursor.timestamp, cursor.id])).toString('base64url');
}

function decodeCursor(value: string): RecordCursor {
  try {
    const [timestamp, id] = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as unknown[];
    if (typeof timestamp === 'string' && Number.isFinite(Date.parse(timestamp)) && typeof id === 'string')
      return { timestamp, id };
  } catch {
    // falls through to the error below
  }
  throw new ApiError('invalid_request', 'after is not a cursor this page gave out.', { param: 'after' });
}

export async function loadRequests(config: DashboardConfig, query: RequestsQuery): Promise<RequestsData> {
  const problems = new SourceProblems();
  const ledger = config.ledger;
  if (!ledger) return { filter: query, records: [], next: null, ledger: false, problems: [] };
  const filter: UsageFilter = {};
  if (query.tenant !== undefined) filter.tenantId = query.tenant;
  if (query.key !== undefined) filter.keyId = query.key;
  if (query.model !== undefined) filter.model = query.model;
  if (query.status !== undefined)
    filter.status = query.status === 'ok' || query.status === 'error' ? query.status : Number(query.status);
  const after = query.after === undefined ? undefined : decodeCursor(query.after);
  const page = await problems.read('ledger', { records: [] }, () =>
    recentUsage(ledger, { ...config.ledgerTable, ...filter, limit: query.limit, ...(after ? { after } : {}) }),
  );
  return {
    filter: query,
    records: page.records,
    next: page.next ? encodeCursor(page.next) : null,
    ledger: true,
    problems: problems.alerts().map((alert) => alert.message),
  };
}

function statusCell(record: UsageRecord): SafeHtml {
  const kind = record.status === 0 || record.status >= 400 ? 'error' : 'ok';
  const title =
    record.status === 0
      ? 'no answer was sent: the process died with the call out, and the record was rebuilt from the spool'
      : '';
  // Tollgate's own refusals say which piece refused: the provider never saw them.
  const refused =
    record.refusedBy === undefined
      ? ''
      : html` <span class="tag" data-refused-by="${record.refusedBy}">refused by ${record.refusedBy}</span>`;
  const aborted = record.aborted ? html` <span class="tag">client left</span>` : '';
  const cut = record.upstreamAborted ? html` <span class="tag">upstream cut</span>` : '';
  const shown = record.status === 0 ? 'none' : record.status;
  const status = html`<span class="status status--${kind}" title="${title}">${shown}</span>`;
  return html`<td>${status}${refused}${aborted}${cut}</td>`;
}

function recordRow(ctx: PageContext, record: UsageRecord, cost: (nano: number) => string): SafeHtml {
  const model =
    record.requestedModel && record.requestedModel !== record.model
      ? html`${record.model} <small>(asked ${record.requestedModel})</small>`
      : (record.model ?? '');
  return html`<tr data-record="${record.id}">
<td><time datetime="${record.timestamp}">${utcTime(record.timestamp)}</time></td>
<td class="id who">${record.tenantId ? html`<a href="${ctx.base}/tenants/${encodeURIComponent(record.tenantId)}">${record.tenantId}</a>` : html`<span class="muted">no tenant</span>`}
<small data-key="${record.keyId ?? ''}">key ${record.keyId ?? '(none)'}</small>${record.userId || record.feature ? html`<small>${[record.userId, record.feature].filter(Boolean).join(' · ')}</small>` : ''}</td>
<td class="id">${model}</td>
${statusCell(record)}
<td class="num">${count(record.inputTokens + record.cachedInputTokens + record.cacheWriteTokens)}</td>
<td class="num">${count(record.outputTokens)}</td>
<td class="num" data-nano-usd="${record.costNanoUsd}">${cost(record.costNanoUsd)}</td>
<td class="num">${count(record.latencyMs)} ms</td>
<td>${record.usageSource}${record.stream ? ' · stream' : ''}</td>
<td class="id"><code>${record.requestId}</code></td>
</tr>`;
}

function filterForm(ctx: PageContext, filter: RequestsQuery): SafeHtml {
  const status = filter.status ?? '';
  const option = (value: string, label: string) =>
    value === status
      ? html`<option value="${value}" selected>${label}</option>`
      : html`<option value="${value}">${label}</option>`;
  const custom = status !== '' && status !== 'ok' && status !== 'error' ? option(status, status) : '';
  return html`<form method="get" action="${ctx.base}/requests" class="filters" role="search" aria-label="Filter requests">
<label>Tenant <input name="tenant" value="${filter.tenant ?? ''}" maxlength="128"></label>
<label>Key <input name="key" value="${filter.key ?? ''}" maxlength="128"></label>
<label>Model <input name="model" value="${filter.model ?? ''}" maxlength="128"></label>
<label>Status <select name="status">${option('', 'any')}${option('ok', 'ok (below 400)')}${option('error', 'error')}${option('429', '429')}${option('502', '502')}${custom}</select></label>
<label>Rows <input name="limit" type="number" min="1" max="500" value="${filter.limit}"></label>
<button type="submit">Filter</button>
</form>`;
}

export function renderRequests(ctx: PageContext, data: RequestsData): string {
  if (!data.ledger)
    return layout(ctx, {
      title: 'Recent requests',
      current: '/requests',
      body: html`<p class="muted">No usage ledger is connected: there are no records to show.</p>`,
    });
  const params = new URLSearchParams();
  for (const name of ['tenant', 'key', 'model', 'status'] as const)
    if (data.filter[name] !== undefined) params.set(name, data.filter[name]!);
  params.set('limit', String(data.filter.limit));
  if (data.next) params.set('after', data.next);
  const cost = moneyColumn(data.records.map((record) => record.costNanoUsd));
  const body = html`${filterForm(ctx, data.filter)}
${data.problems.map((message) => html`<p class="error" role="alert">${message}</p>`)}
${table(
  'Records',
  [
    'Time',
    'Tenant, key, user · feature',
    'Model',
    'Status',
    'Input',
    'Output',
    'Cost',
    'Latency',
    'Usage from',
    'Request id',
  ],
  data.records.map((record) => recordRow(ctx, record, cost)),
  'No records match.',
)}
${data.next ? html`<p><a rel="next" href="${ctx.base}/requests?${params.toString()}">Older records</a></p>` : ''}
<p class="muted">The ledger holds the requests the meter saw. Refusals before it (a bad key, a scope or tier rule, in
the example proxy) leave no record; a refusal after it (request and token limits, a budget, the guard) is recorded
with the piece that refused it, "refused by": the provider never saw that request.</p>`;
  return layout(ctx, { title: 'Recent requests', current: '/requests', body });
}
