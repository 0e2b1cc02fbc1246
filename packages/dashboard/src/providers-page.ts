// Providers: requests, tollgate's own refusals, provider errors, latency and spend per provider and model.
import { usageByProvider } from '@tollgate/metering';
import type { ProviderUsage } from '@tollgate/metering';
import { count, moneyColumn, utcTime } from './format.js';
import { html } from './html.js';
import type { SafeHtml } from './html.js';
import { layout, table } from './layout.js';
import type { PageContext } from './layout.js';
import type { DashboardConfig, RoutingTargetState } from './options.js';
import { SourceProblems } from './sources.js';
import { RANGES } from './tenant-page.js';
import type { RangeName } from './tenant-page.js';

interface ProvidersData {
  range: RangeName;
  since: string;
  until: string;
  providers: ProviderUsage[];
  ledger: boolean;
  problems: string[];
  /** Each routing target's breaker and health checks now. */
  routing: readonly RoutingTargetState[];
}

export async function loadProviders(config: DashboardConfig, range: RangeName): Promise<ProvidersData> {
  const now = config.now();
  const problems = new SourceProblems();
  const since = new Date(now - RANGES[range].seconds * 1000);
  const until = new Date(now);
  const ledger = config.ledger;
  const providers = ledger
    ? await problems.read('ledger', [], () => usageByProvider(ledger, { ...config.ledgerTable, since, until }))
    : [];
  return {
    range,
    since: since.toISOString(),
    until: until.toISOString(),
    providers,
    ledger: ledger !== undefined,
    problems: problems.alerts().map((alert) => alert.message),
    routing: config.routing(),
  };
}

const HEAD = [
  'Provider',
  'Model',
  'Requests',
  'Refused by tollgate',
  'Provider errors',
  'Client left',
  'Latency p50',
  'p95',
  'Mean',
  'Spend',
];

/** What the figures are, and where routing state is, since this page reads the ledger only. */
const NOTE = html`<p class="muted">Counted from the usage ledger. <strong>Refused by tollgate</strong>: requests
its own limits, budgets or guard refused (a 429, 403, 400 or 503 of its own); the provider never saw them, so
they are neither provider errors nor in the latency. <strong>Provider errors</strong>: the upstream's failures,
502 or 504 when it failed or timed out, its own answers of 400 and above passed on, and calls rebuilt after a
crash; the rate is of the requests sent to it. Latency runs from the request's start to its end. Records written
before the ledger noted refusals count as errors. Routing targets, retries and circuit breakers are the router's
(<code>@tollgate/router</code>): its <code>health()</code> reports each target's breaker, calls and failures (the
example proxy serves it in <code>/healthz</code> behind the admin key, in its metrics and in the table below).</p>`;

/** Each routing target now: in routing or taken out by its health checks, its breaker, its last probe. */
function routingTable(targets: readonly RoutingTargetState[]): SafeHtml {
  const rows = targets.map(({ target, breaker, probe }) => {
    const state = probe?.state ?? 'not probed';
    return html`<tr data-target="${target}" data-state="${state}">
<th scope="row" class="id">${target}</th><td${state === 'down' ? html` class="warn"` : ''}>${state}</td><td>${breaker}</td>
<td>${probe ? html`${probe.ok ? 'passed' : 'failed'} at ${utcTime(probe.at)}${probe.detail ? html` (${probe.detail})` : ''}` : ''}</td>
<td class="num">${probe?.latencyMs === undefined ? '' : `${count(probe.latencyMs)} ms`}</td></tr>`;
  });
  return table(
    'Routing targets',
    ['Target', 'Health checks', 'Breaker', 'Last probe', 'Probe latency'],
    rows,
    'No model groups.',
  );
}

export function renderProviders(ctx: PageContext, data: ProvidersData): string {
  const ranges = (Object.keys(RANGES) as RangeName[]).map(
    (range) =>
      html`<li><a href="${ctx.base}/providers?range=${range}"${range === data.range ? html` aria-current="true"` : ''}>${range}</a></li>`,
  );
  const cost = moneyColumn(data.providers.map((row) => row.costNanoUsd));
  const rows = data.providers.map((row) => {
    // The provider's error rate is over what reached it: tollgate's refusals never did.
    const sent = row.requests - row.refusals;
    const errorRate = sent > 0 ? row.errors / sent : 0;
    return html`<tr data-provider="${row.provider ?? ''}" data-model="${row.model ?? ''}">
<th scope="row">${row.provider ?? '(none)'}</th><td class="id">${row.model ?? ''}</td>
<td class="num">${count(row.requests)}</td>
<td class="num" data-figure="refusals" data-count="${row.refusals}">${count(row.refusals)}</td>
<td class="num${errorRate >= 0.05 ? ' warn' : ''}" data-figure="provider-errors" data-count="${row.errors}">
${count(row.errors)} (${(errorRate * 100).toFixed(1)}%)</td>
<td class="num">${count(row.aborted)}</td>
<td class="num">${count(row.latencyP50Ms)} ms</td><td class="num">${count(row.latencyP95Ms)} ms</td><td class="num">${count(row.latencyMeanMs)} ms</td>
<td class="num">${cost(row.costNanoUsd)}</td></tr>`;
  });
  const body = html`<nav class="ranges" aria-label="Time range"><ul>${ranges}</ul></nav>
${data.problems.map((message) => html`<p class="error" role="alert">${message}</p>`)}
${data.ledger ? '' : html`<p class="muted">No usage ledger is connected: there is nothing to count.</p>`}
<p class="summary">From ${utcTime(data.since)} to ${utcTime(data.until)}.</p>
${table('Providers and models', HEAD, rows, 'No requests in this range.')}
${data.routing.length > 0 ? routingTable(data.routing) : ''}
${NOTE}`;
  return layout(ctx, { title: 'Providers', current: '/providers', body });
}
