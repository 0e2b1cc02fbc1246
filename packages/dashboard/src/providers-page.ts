// Providers: requests, errors, latency and spend per provider and model, as the ledger recorded them.
import { usageByProvider } from '@tollgate/metering';
import type { ProviderUsage } from '@tollgate/metering';
import { count, money, utcTime } from './format.js';
import { html } from './html.js';
import { layout, table } from './layout.js';
import type { PageContext } from './layout.js';
import type { DashboardConfig } from './options.js';
import { SourceProblems } from './sources.js';
import { RANGES } from './tenant-page.js';
import type { RangeName } from './tenant-page.js';

export interface ProvidersData {
  range: RangeName;
  since: string;
  until: string;
  providers: ProviderUsage[];
  ledger: boolean;
  /** Routing, retries and circuit breakers are not built yet: nothing to report about them. */
  routing: null;
  problems: string[];
}

export async function loadProviders(config: DashboardConfig, range: RangeName): Promise<ProvidersData> {
  const now = config.now();
  const problems = new SourceProblems();
  const since = new Date(now - RANGES[range].seconds * 1000);
  const until = new Date(now);
  const ledger = config.ledger;
  const providers = ledger ? await problems.read('ledger', [], () => usageByProvider(ledger, { ...config.ledgerTable, since, until })) : [];
  return { range, since: since.toISOString(), until: until.toISOString(), providers, ledger: ledger !== undefined, routing: null, problems: problems.alerts().map((alert) => alert.message) };
}

export function renderProviders(ctx: PageContext, data: ProvidersData): string {
  const ranges = (Object.keys(RANGES) as RangeName[]).map((range) => html`<li><a href="${ctx.base}/providers?range=${range}"${range === data.range ? html` aria-current="true"` : ''}>${range}</a></li>`);
  const rows = data.providers.map((row) => {
    const errorRate = row.requests > 0 ? row.errors / row.requests : 0;
    return html`<tr data-provider="${row.provider ?? ''}" data-model="${row.model ?? ''}">
<th scope="row">${row.provider ?? '(none)'}</th><td>${row.model ?? ''}</td>
<td class="num">${count(row.requests)}</td>
<td class="num${errorRate >= 0.05 ? ' warn' : ''}">${count(row.errors)} (${(errorRate * 100).toFixed(1)}%)</td>
<td class="num">${count(row.aborted)}</td>
<td class="num">${count(row.latencyP50Ms)} ms</td><td class="num">${count(row.latencyP95Ms)} ms</td><td class="num">${count(row.latencyMeanMs)} ms</td>
<td class="num">${money(row.costNanoUsd)}</td></tr>`;
  });
  const body = html`<nav class="ranges" aria-label="Time range"><ul>${ranges}</ul></nav>
${data.problems.map((message) => html`<p class="error" role="alert">${message}</p>`)}
${data.ledger ? '' : html`<p class="muted">No usage ledger is connected: there is nothing to count.</p>`}
<p class="summary">From ${utcTime(data.since)} to ${utcTime(data.until)}.</p>
${table('Providers and models', ['Provider', 'Model', 'Requests', 'Errors', 'Client left', 'Latency p50', 'p95', 'Mean', 'Spend'], rows, 'No requests in this range.')}
<p class="muted">Counted from the usage ledger: errors are answers of 400 and above (and calls rebuilt after a crash); latency runs from the request's start to its end. Routing between upstreams, retries and circuit breakers are not built yet, so there is no breaker state or per-target view to show.</p>`;
  return layout(ctx, { title: 'Providers', current: '/providers', body });
}
