// Abuse: the subjects the guard's abuse model scored highest, what it did about them, and why.
import { fromNow, utcTime } from './format.js';
import { html } from './html.js';
import { layout, table } from './layout.js';
import type { PageContext } from './layout.js';
import type { AbuseSubjectStatus, DashboardConfig } from './options.js';

/** Subjects shown: the highest scores. */
const SHOWN = 50;

interface AbuseData {
  /** False when the app gave no abuse scoring (`abuse` option). */
  watched: boolean;
  subjects: readonly AbuseSubjectStatus[];
}

export function loadAbuse(config: DashboardConfig): AbuseData {
  return { watched: config.abuse !== undefined, subjects: (config.abuse?.() ?? []).slice(0, SHOWN) };
}

const HEAD = ['Subject', 'Score', 'Requests', 'Action', 'Until', 'Why: its value (the population’s)'];

const NOTE = html`<p class="muted">Scored by the guard's isolation forest over its window: 1 is isolated at once, about 0.5
like the rest. An action is a throttle (its limits and rate cut) or a block; a shadow action was recorded, not
taken. An operator clears one with <code>DELETE /admin/abuse/&lt;subject&gt;</code>.</p>`;

export function renderAbuse(ctx: PageContext, data: AbuseData): string {
  const rows = data.subjects.map((entry) => {
    const action = entry.action === 'none' ? '' : `${entry.action}${entry.shadow ? ' (shadow)' : ''}`;
    const ends = entry.until === undefined || entry.action === 'none' ? undefined : new Date(entry.until).toISOString();
    const until = ends ? html`<time datetime="${ends}" title="${utcTime(ends)}">${fromNow(ends, ctx.now)}</time>` : '';
    const why = entry.reasons.map((reason) => html`<li>${reason.feature} ${reason.value} (${reason.population})</li>`);
    return html`<tr data-subject="${entry.subject}" data-action="${entry.action}">
<th scope="row" class="id">${entry.subject}</th><td class="num${entry.action !== 'none' ? ' warn' : ''}">${entry.score.toFixed(2)}</td>
<td class="num">${entry.requests}</td><td>${action}</td><td>${until}</td><td><ul class="reasons">${why}</ul></td></tr>`;
  });
  const body = html`${data.watched ? '' : html`<p class="muted">The guard's abuse detection is off: nothing is scored.</p>`}
${table('Top subjects', HEAD, rows, 'No subject scored yet: the model waits until it has seen enough subjects.')}
${NOTE}`;
  return layout(ctx, { title: 'Abuse', current: '/abuse', body });
}
