// Audit: every admin write (who, when, from where, what changed), filtered, paged and exported as CSV or JSON.
import { ApiError } from '@tollgate/core';
import { readAuditQuery } from '@tollgate/core/audit';
import type { AuditEntry, AuditQuery } from '@tollgate/core/audit';
import { html } from './html.js';
import type { SafeHtml } from './html.js';
import { layout, table, timeCell } from './layout.js';
import type { PageContext } from './layout.js';
import type { DashboardConfig } from './options.js';

/** Rows a page shows unless asked. */
const PAGE_ROWS = 50;

interface AuditData {
  /** False when the app gave no audit trail (`audit` option). */
  recorded: boolean;
  filter: AuditQuery;
  entries: AuditEntry[];
  /** Pass as `cursor` for the next (older) page; null on the last. */
  next: string | null;
}

/** The page's filters from its URL: the `/admin/audit` query's names, with this page's own row count. */
export function readAuditFilter(query: Record<string, unknown>): AuditQuery {
  return readAuditQuery({ limit: String(PAGE_ROWS), ...query });
}

export async function loadAudit(config: DashboardConfig, filter: AuditQuery): Promise<AuditData> {
  if (!config.audit) return { recorded: false, filter, entries: [], next: null };
  const page = await config.audit.list(filter);
  return { recorded: true, filter, entries: page.entries, next: page.nextCursor };
}

/** The CSV of a page: the dashboard's export link, for a browser signed in with its session. */
export async function auditExport(config: DashboardConfig, filter: AuditQuery) {
  if (!config.audit) throw new ApiError('not_found', 'No audit trail is connected to the dashboard.');
  return config.audit.list(filter);
}

const FILTERS = ['since', 'until', 'actor', 'action', 'target'] as const;

function filterParams(filter: AuditQuery): URLSearchParams {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (filter[name] !== undefined) params.set(name, filter[name]!);
  params.set('limit', String(filter.limit));
  return params;
}

function filterForm(ctx: PageContext, filter: AuditQuery): SafeHtml {
  const field = (name: (typeof FILTERS)[number], label: string, hint: string) =>
    html`<label>${label} <input name="${name}" value="${filter[name] ?? ''}" maxlength="200" placeholder="${hint}"></label>`;
  return html`<form method="get" action="${ctx.base}/audit" class="filters" role="search" aria-label="Filter the audit trail">
${field('since', 'Since', '2026-01-31T00:00Z')}
${field('until', 'Until', '2026-02-01T00:00Z')}
${field('actor', 'Actor', 'admin key')}
${field('action', 'Action', 'key or key.rotate')}
${field('target', 'Target', 'key:acme-support')}
<label>Rows <input name="limit" type="number" min="1" max="1000" value="${filter.limit}"></label>
<button type="submit">Filter</button>
</form>`;
}

/** A state as a short JSON text, folded open on demand when long. */
function stateCell(value: unknown): SafeHtml {
  if (value === null || value === undefined) return html`<td class="muted">—</td>`;
  const text = JSON.stringify(value, null, 1);
  if (text.length <= 80) return html`<td><code>${text}</code></td>`;
  return html`<td><details><summary><code>${text.slice(0, 60)}…</code></summary><pre>${text}</pre></details></td>`;
}

function entryRow(entry: AuditEntry): SafeHtml {
  const failed = entry.outcome === 'failed' || entry.outcome === 'unknown';
  return html`<tr data-action="${entry.action}" data-target="${entry.target}" data-outcome="${entry.outcome}">
${timeCell(entry.at)}
<td>${entry.actor}<br><span class="muted">${entry.role} · ${entry.via}</span></td>
<td class="id"><code>${entry.address}</code></td>
<th scope="row"><code>${entry.action}</code></th>
<td class="id"><code>${entry.target}</code></td>
<td${failed ? html` class="warn"` : ''}>${entry.outcome}${entry.status === null ? '' : html` <span class="muted">${entry.status}</span>`}</td>
${stateCell(entry.before)}
${stateCell(entry.after)}
</tr>`;
}

export function renderAudit(ctx: PageContext, data: AuditData): string {
  if (!data.recorded)
    return layout(ctx, {
      title: 'Audit trail',
      current: '/audit',
      body: html`<p class="muted">No audit trail is connected: admin writes are not recorded here.</p>`,
    });
  const params = filterParams(data.filter);
  const exportParams = (format: string) => {
    const copy = new URLSearchParams(params);
    copy.set('format', format);
    return copy.toString();
  };
  const older = new URLSearchParams(params);
  if (data.next) older.set('cursor', data.next);
  const body = html`${filterForm(ctx, data.filter)}
<p class="exports">Export this page: <a href="${ctx.base}/audit?${exportParams('csv')}" download>CSV</a> ·
<a href="${ctx.base}/audit?${exportParams('json')}">JSON</a></p>
${table(
  'Entries, newest first',
  ['Time', 'Actor', 'Address', 'Action', 'Target', 'Outcome', 'Before', 'After'],
  data.entries.map(entryRow),
  'No admin write matches.',
)}
${data.next ? html`<p><a rel="next" href="${ctx.base}/audit?${older.toString()}">Older entries</a></p>` : ''}
<p class="muted">Every write through <code>/admin</code> and this dashboard is recorded before it runs (a write the
trail cannot record is refused), then its outcome with the state before and after; secrets are never recorded. An
outcome of "unknown" means the process stopped before it wrote one. The same entries: <code>GET /admin/audit</code>.</p>`;
  return layout(ctx, { title: 'Audit trail', current: '/audit', body });
}
