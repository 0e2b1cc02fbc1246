// The page shell every page shares (head, navigation, notices, sign-out) and the pieces pages are built from.
import type { BudgetStatus } from '@tollgate/budget';
import { count, exactMoney, fromNow, moneyColumn, percent, utcTime } from './format.js';
import { html, jsonBlock } from './html.js';
import type { SafeHtml } from './html.js';
import type { QuotaStatus } from './options.js';

/** What every page knows about the request it answers. */
export interface PageContext {
  /** Where the dashboard is mounted (`/dashboard`), for links and form actions. */
  base: string;
  title: string;
  now: number;
  /** The session's CSRF token; absent when the request came with the key in a header. */
  csrfToken?: string;
  notice?: SafeHtml;
}

const NAV = [
  ['', 'Overview'],
  ['/tenants', 'Tenants'],
  ['/keys', 'Keys'],
  ['/requests', 'Requests'],
  ['/providers', 'Providers'],
  ['/abuse', 'Abuse'],
  ['/audit', 'Audit'],
] as const;

export function layout(ctx: PageContext, page: { title: string; current: string; body: SafeHtml }): string {
  const nav = NAV.map(
    ([path, label]) =>
      html`<li><a href="${ctx.base}${path || '/'}"${path === page.current ? html` aria-current="page"` : ''}>${label}</a></li>`,
  );
  const signOut =
    ctx.csrfToken === undefined
      ? ''
      : html`<form method="post" action="${ctx.base}/logout" class="sign-out">${csrfField(ctx)}<button type="submit" class="link">Sign out</button></form>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<link rel="icon" href="data:,">
<title>${page.title} · ${ctx.title}</title>
<link rel="stylesheet" href="${ctx.base}/assets/uPlot.min.css">
<link rel="stylesheet" href="${ctx.base}/assets/dashboard.css">
<script src="${ctx.base}/assets/uPlot.iife.min.js" defer></script>
<script src="${ctx.base}/assets/dashboard.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="${ctx.base}/">${ctx.title}</a>
  <nav aria-label="Dashboard"><ul>${nav}</ul></nav>
  ${signOut}
</header>
<main id="main">
${ctx.notice ? html`<div class="notice" role="status">${ctx.notice}</div>` : ''}
<h1>${page.title}</h1>
${page.body}
</main>
<footer><p>Times in UTC. Every page has its JSON: add <code>?format=json</code>, or send <code>Accept: application/json</code>.</p></footer>
</body>
</html>`.value;
}

/** The hidden field that carries the session's CSRF token on a form that writes. */
export function csrfField(ctx: PageContext): SafeHtml {
  return ctx.csrfToken === undefined ? html`` : html`<input type="hidden" name="_csrf" value="${ctx.csrfToken}">`;
}

/** Where a spend stands against its cap. */
export type BarState = 'ok' | 'soft' | 'over' | 'none';

/** Where a budget stands: the fraction of its cap spent, the state its bar shows, and how far it is past its cap. */
export interface BudgetStanding {
  used: number | null;
  state: BarState;
  /** See `overCapNanoUsd`; null without a budget. */
  overNanoUsd: number | null;
}

/**
 * What the budget's spend and holds are past its cap. The store's remaining stops at 0, so past the cap
 * it takes this to add up: spent − credit + held + remaining − over = cap.
 */
function overCapNanoUsd(status: BudgetStatus): number {
  return Math.max(0, status.spentNanoUsd - status.creditNanoUsd + status.reservedNanoUsd - status.limitNanoUsd);
}

/** What a budget may spend this period: its cap and the credit top-ups added. */
function spendable(status: BudgetStatus): number {
  return status.limitNanoUsd + status.creditNanoUsd;
}

/** The amounts a bar reads (spent of cap + credit): a table of bars formats all of its bars' by one `moneyColumn`. */
export function barAmounts(status: BudgetStatus): number[] {
  return [status.spentNanoUsd, status.limitNanoUsd, status.creditNanoUsd];
}

/** A budget's figures that add up: a table of them formats all of its rows' by one `exactMoney`. */
export function budgetAmounts(status: BudgetStatus): number[] {
  const { spentNanoUsd, creditNanoUsd, reservedNanoUsd, remainingNanoUsd, limitNanoUsd } = status;
  return [spentNanoUsd, creditNanoUsd, reservedNanoUsd, remainingNanoUsd, overCapNanoUsd(status), limitNanoUsd];
}

/** "$0.25 of $1.00", or "$0.25 of $1.00 + $2.00 credit" when top-ups added some: what was spent of what it may spend. */
export function spentOfCap(status: BudgetStatus, usd = moneyColumn(barAmounts(status))): string {
  const credit = status.creditNanoUsd > 0 ? ` + ${usd(status.creditNanoUsd)} credit` : '';
  return `${usd(status.spentNanoUsd)} of ${usd(status.limitNanoUsd)}${credit}`;
}

/**
 * Where a budget's soft limit sits on its bar (a fraction of cap + credit): a threshold is a fraction of the cap,
 * reached by what is spent beyond the credit, so credit moves it along with the end of the bar.
 */
function softLimitAt(status: BudgetStatus): number | undefined {
  if (status.softLimit === null || spendable(status) <= 0) return undefined;
  return (status.softLimit * status.limitNanoUsd + status.creditNanoUsd) / spendable(status);
}

/** The fraction of its cap (with its credit) a budget has spent, and the state its bar shows. */
export function budgetState(status: BudgetStatus | null | undefined): BudgetStanding {
  if (!status) return { used: null, state: 'none', overNanoUsd: null };
  const overNanoUsd = overCapNanoUsd(status);
  if (spendable(status) <= 0) return { used: null, state: 'none', overNanoUsd };
  const used = status.spentNanoUsd / spendable(status);
  if (status.spentNanoUsd >= spendable(status)) return { used, state: 'over', overNanoUsd };
  const soft = status.softLimitReached || (softLimitAt(status) !== undefined && used >= softLimitAt(status)!);
  if (soft) return { used, state: 'soft', overNanoUsd };
  return { used, state: 'ok', overNanoUsd };
}

/** Says once how a budget's figures add up, next to them; a top-up is credit, never taken off the spend. */
export const BUDGET_SUM_NOTE = html`<p class="muted budget-sum-note">A budget's figures add up:
<strong>spent − credit + held + remaining = cap</strong> (less what is over the cap, when something is).
Spent is what the period spent; a top-up never lowers it. Credit is what top-ups added this period: room above
the cap until the period ends.</p>`;

/**
 * The same figures in one table cell beside a budget's bar (spent of cap): remaining, and under it the credit
 * and what is held in flight. One cell, so the tables stay as wide as they were.
 */
/** A budget as operators name it: `tenant acme`, `end user bob of acme`, `model gpt-4o of acme`, `global`. */
export function budgetName(status: Pick<BudgetStatus, 'scope' | 'id' | 'tenantId'>): string {
  if (status.id === null) return status.scope;
  if (status.tenantId !== null && status.scope === 'user') return `end user ${status.id} of ${status.tenantId}`;
  if (status.tenantId !== null) return `${status.scope} ${status.id} of ${status.tenantId}`;
  return `${status.scope} ${status.id}`;
}

/** The URL a budget's action is posted to: `<base>/budgets/<scope>/<id>/top-up`, with `?tenant=` for an end user's or a model's. */
export function budgetAction(
  base: string,
  status: Pick<BudgetStatus, 'scope' | 'id' | 'tenantId'>,
  action: 'top-up' | 'reset',
): string {
  if (status.id === null) return `${base}/budgets/${status.scope}/${action}`;
  const path = `${base}/budgets/${status.scope}/${encodeURIComponent(status.id)}/${action}`;
  return status.tenantId === null ? path : `${path}?tenant=${encodeURIComponent(status.tenantId)}`;
}

export function budgetCell(
  status: BudgetStatus | null,
  usd = exactMoney(status ? budgetAmounts(status) : []),
): SafeHtml {
  if (!status) return html`<td></td>`;
  const over = overCapNanoUsd(status);
  const { creditNanoUsd: credit, reservedNanoUsd: held, remainingNanoUsd: remaining } = status;
  const amount = (name: string, nano: number) =>
    html`<span data-figure="${name}" data-nano-usd="${nano}">${usd(nano)}</span>`;
  const overBy = over > 0 ? html` (over by ${amount('over', over)})` : '';
  const forecast = status.forecastNanoUsd == null ? '' : html`<br><small>${forecastNote(status, usd, true)}</small>`;
  return html`<td class="num">${amount('remaining', remaining)}${overBy}<br>
<small class="muted">credit ${amount('credit', credit)} · held ${amount('held', held)}</small>${forecast}</td>`;
}

/**
 * "on course for $12.40 by 2026-12-01 00:00:00 UTC": the spend projected at the period's end at the recent rate,
 * flagged (`data-over`, the error colour) when it passes the cap plus credit; `short` (a table cell) leaves the date
 * to the row and says "(over)". Amounts in `usd`, the figures' own format. Empty while no forecast is known.
 */
function forecastNote(status: BudgetStatus, usd: (nano: number) => string, short = false): SafeHtml {
  const forecast = status.forecastNanoUsd;
  if (forecast === null || forecast === undefined) return html``;
  const over = forecast > status.limitNanoUsd + status.creditNanoUsd;
  const by = short ? '' : html` by <time datetime="${status.resetAt}">${utcTime(status.resetAt)}</time>`;
  const flag = over ? (short ? ' (over)' : ' (over the cap)') : '';
  return html`<span class="forecast${over ? ' error' : ''}" data-figure="forecast" data-nano-usd="${forecast}" data-over="${String(over)}" title="projected at the period's end, at the last hour's rate">on course for ${usd(forecast)}${by}${flag}</span>`;
}

/** A budget's figures, each named and exact to the same decimal, and the sum they make; `more` ends the list. */
export function budgetFigures(status: BudgetStatus, more: SafeHtml = html``): SafeHtml {
  const over = overCapNanoUsd(status);
  const { spentNanoUsd: spent, creditNanoUsd: credit, reservedNanoUsd: held, remainingNanoUsd: remaining } = status;
  const cap = status.limitNanoUsd;
  const usd = exactMoney(budgetAmounts(status));
  const figure = (name: string, label: string, nano: number) =>
    html`<div data-figure="${name}"><dt>${label}</dt><dd data-nano-usd="${nano}">${usd(nano)}</dd></div>`;
  const overTerm = over > 0 ? ` − ${usd(over)} over` : '';
  const sum = `${usd(spent)} spent − ${usd(credit)} credit + ${usd(held)} held + ${usd(remaining)} remaining`;
  return html`<dl class="figures">
${figure('spent', 'Spent', spent)}
${figure('credit', 'Top-up credit', credit)}
${figure('held', 'Held in flight', held)}
${figure('remaining', 'Remaining', remaining)}
${over > 0 ? figure('over', 'Over the cap', over) : ''}
${figure('cap', 'Cap', cap)}
<div class="wide" data-figure="sum"><dt>How they add up</dt><dd>${sum}${overTerm} = ${usd(cap)} cap</dd></div>
${status.forecastNanoUsd == null ? '' : html`<div class="wide"><dt>Forecast</dt><dd>${forecastNote(status, usd)}</dd></div>`}
${more}
</dl>`;
}

const STATE_WORDS: Record<BarState, string> = {
  ok: 'within budget',
  soft: 'past its soft limit',
  over: 'at or over its cap',
  none: 'no budget',
};

/**
 * A bar of spend against a cap, drawn in SVG so it needs neither script nor inline style. Its state
 * is in `data-state` and a class (for tests and styles) and in words (for everyone).
 */
export function spendBar(label: string, status: BudgetStatus, usd = moneyColumn(barAmounts(status))): SafeHtml {
  const { used, state } = budgetState(status);
  const fill = Math.min(100, Math.max(0, (used ?? 0) * 100));
  const at = softLimitAt(status);
  const soft = at === undefined ? undefined : Math.min(100, at * 100);
  const text = `${spentOfCap(status, usd)} (${percent(used ?? 0)}), ${STATE_WORDS[state]}`;
  return html`<div class="bar bar--${state}" data-state="${state}" role="meter" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${Math.round(fill)}" aria-valuetext="${text}" aria-label="${label} spend against its cap">
  <svg viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true" focusable="false"><rect class="bar-track" width="100" height="10"></rect><rect class="bar-fill" width="${fill.toFixed(2)}" height="10"></rect>${soft === undefined ? '' : html`<line class="bar-soft" x1="${soft}" x2="${soft}" y1="0" y2="10"></line>`}</svg>
  <span class="bar-text">${spentOfCap(status, usd)} · ${percent(used ?? 0)}${state === 'soft' ? html` · <strong>soft limit</strong>` : ''}${state === 'over' ? html` · <strong>cap reached</strong>` : ''}</span>
</div>`;
}

/** A table that scrolls sideways on a narrow screen instead of overflowing the page. */
export function table(
  caption: string,
  head: readonly string[],
  rows: readonly SafeHtml[],
  empty = 'Nothing yet.',
): SafeHtml {
  if (rows.length === 0) return html`<section class="table"><h2>${caption}</h2><p class="empty">${empty}</p></section>`;
  return html`<section class="table"><h2>${caption}</h2><div class="scroll" tabindex="0" role="region" aria-label="${caption}"><table>
<thead><tr>${head.map((cell) => html`<th scope="col">${cell}</th>`)}</tr></thead>
<tbody>${rows}</tbody></table></div></section>`;
}

/** Calls served, and under them what tollgate refused itself, apart: those cost nothing and reached no provider. */
export function requestsCell(served: number, refusals: number): SafeHtml {
  const refused = refusals
    ? html`<br><small class="muted" data-refusals="${refusals}">${count(refusals)} refused</small>`
    : '';
  return html`<td class="num" data-requests="${served}">${count(served)}${refused}</td>`;
}

/** How each unit of a quota reads: its limit (`requests per minute`), and what runs out (`No tokens left`). */
export const QUOTA_UNITS: Record<QuotaStatus['unit'], { per: (window: string | undefined) => string; left: string }> = {
  requests: { per: (window) => `requests per ${window ?? 'window'}`, left: 'requests' },
  tokens: { per: (window) => `tokens per ${window ?? 'window'}`, left: 'tokens' },
  concurrency: { per: () => 'requests in flight', left: 'request slots' },
};

/** Quotas now: used of the limit, what is left, and when the window frees up. */
export function quotaTable(ctx: PageContext, quotas: readonly QuotaStatus[], empty: string): SafeHtml {
  const rows = quotas.map((quota) => {
    const used = quota.used ?? quota.limit - quota.remaining;
    const resets = quota.resetAt
      ? html`<time datetime="${quota.resetAt}" title="${utcTime(quota.resetAt)}">${fromNow(quota.resetAt, ctx.now)}</time>`
      : quota.unit === 'concurrency'
        ? html`<span class="muted">when one ends</span>`
        : html`<span class="muted">no window open</span>`;
    return html`<tr data-quota="${quota.name}" data-unit="${quota.unit}" data-window="${quota.window ?? ''}"><th scope="row">${quota.name}</th><td>${QUOTA_UNITS[quota.unit].per(quota.window)}</td><td class="num" data-used="${used}" data-limit="${quota.limit}">${count(used)} / ${count(quota.limit)}</td><td class="num">${count(quota.remaining)}</td><td>${resets}</td></tr>`;
  });
  return table('Request and token quotas now', ['', 'Limit', 'Used / limit', 'Remaining', 'Resets'], rows, empty);
}

/** A time series for the page's script to draw (uPlot), with the same numbers as a table for screen readers and no-script. */
export interface ChartData {
  /** Epoch seconds of each bucket's start. */
  x: number[];
  /** Epoch seconds where the range asked ends, the last bucket's end: the time axis runs to it, the last day whole. */
  end: number;
  series: { label: string; values: number[] }[];
  /** What a value is, e.g. `USD`. */
  unit: string;
}

export function chart(
  id: string,
  label: string,
  data: ChartData,
  bucketLabel: (epochSeconds: number) => string,
): SafeHtml {
  if (data.x.length === 0 || data.series.length === 0)
    return html`<section class="chart-box"><h2>${label}</h2><p class="empty">No usage recorded in this range.</p></section>`;
  const rows = data.x.map(
    (x, i) =>
      html`<tr><th scope="row">${bucketLabel(x)}</th>${data.series.map((series) => html`<td>${series.values[i]?.toFixed(6)}</td>`)}</tr>`,
  );
  return html`<section class="chart-box"><h2 id="${id}-title">${label}</h2>
<div class="chart" data-chart="${id}" role="img" aria-labelledby="${id}-title"></div>
${jsonBlock(id, data)}
<details><summary>The numbers behind the chart</summary><div class="scroll"><table><thead><tr><th scope="col">Time (UTC)</th>${data.series.map((series) => html`<th scope="col">${series.label} (${data.unit})</th>`)}</tr></thead><tbody>${rows}</tbody></table></div></details>
</section>`;
}

export function timeCell(iso: string | undefined | null): SafeHtml {
  if (!iso) return html`<td></td>`;
  return html`<td><time datetime="${iso}">${utcTime(iso)}</time></td>`;
}
