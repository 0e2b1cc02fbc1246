// The keys page: a page of keys in id order with their state and expiry, searched by the start of the id, and forms to
// create, revoke and rotate. One page of the key store is read (KeyStore.page), never every key.
import { ApiError } from '@tollgate/core';
import { keyPageWith } from '@tollgate/core/store-contracts';
import type { KeyPage, KeyPageQuery } from '@tollgate/core/store-contracts';
import { fromNow, utcTime } from './format.js';
import { html } from './html.js';
import type { SafeHtml } from './html.js';
import { csrfField, layout, table, timeCell } from './layout.js';
import type { PageContext } from './layout.js';
import type { DashboardConfig } from './options.js';
import { listedKey, SourceProblems } from './sources.js';
import type { ListedKey } from './sources.js';

/** Keys per page. */
export const KEYS_PER_PAGE = 100;
/** Cursors of earlier pages a Previous link keeps (older ones lead back to the first page). */
const MAX_TRAIL = 20;

interface KeysQuery {
  /** Only keys whose id starts with this. */
  search?: string;
  /** Only this tenant's keys. */
  tenant?: string;
  /** The last id of the page before ('' or absent: the first page). */
  after?: string;
  /** The `after` of each page before this one, oldest first ('' for the first page): where Previous leads. */
  trail: string[];
}

interface KeysData {
  /** This page's keys, in id order. */
  keys: ListedKey[];
  search: string | null;
  tenant: string | null;
  after: string | null;
  trail: string[];
  /** The cursor of the next page, when there is one. */
  next: string | null;
  /** False without a key store: the list is read-only. */
  canChange: boolean;
  tenants: readonly string[] | null;
  tiers: readonly string[] | null;
  problems: string[];
}

function queryText(query: Record<string, unknown>, name: string, what: string): string | undefined {
  const value = query[name];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || value.length > 128)
    throw new ApiError('invalid_request', `${name} must be ${what}, at most 128 characters.`, { param: name });
  return value;
}

/** `?q=&tenant=&after=&trail=` of the keys page. */
export function readKeysQuery(query: Record<string, unknown>): KeysQuery {
  const trailText = query.trail;
  if (trailText !== undefined && (typeof trailText !== 'string' || trailText.length > MAX_TRAIL * 130))
    throw new ApiError('invalid_request', 'trail must be the cursors of the pages before, comma-separated.', {
      param: 'trail',
    });
  const search = queryText(query, 'q', 'the start of a key id');
  const tenant = queryText(query, 'tenant', 'a tenant id');
  const after = queryText(query, 'after', 'the last key id of the page before');
  return {
    ...(search === undefined ? {} : { search }),
    ...(tenant === undefined ? {} : { tenant }),
    ...(after === undefined ? {} : { after }),
    trail: trailText ? trailText.split(',').slice(-MAX_TRAIL) : [],
  };
}

/** One page of the config file's keys and the store's, in id order (KeyStore.page: never every key). */
export async function loadKeyPage(
  config: DashboardConfig,
  problems: SourceProblems,
  query: Omit<KeysQuery, 'trail'>,
): Promise<{ keys: ListedKey[]; next: string | null }> {
  const now = config.now();
  const pageQuery: KeyPageQuery = {
    limit: KEYS_PER_PAGE,
    ...(query.search === undefined ? {} : { prefix: query.search }),
    ...(query.tenant === undefined ? {} : { tenantId: query.tenant }),
    ...(query.after === undefined ? {} : { after: query.after }),
  };
  const fromConfig = await problems.read('keys', [], () => [...config.configKeys()]);
  const configIds = new Set(fromConfig.map((record) => record.id));
  const none: KeyPage = { keys: [] };
  const page = await problems.read('keys', none, () => keyPageWith(config.keys, fromConfig, pageQuery));
  return {
    keys: page.keys.map((record) => listedKey(record, configIds.has(record.id) ? 'config' : 'store', now)),
    next: page.next ?? null,
  };
}

export async function loadKeysPage(config: DashboardConfig, query: KeysQuery): Promise<KeysData> {
  const problems = new SourceProblems();
  const { keys, next } = await loadKeyPage(config, problems, query);
  return {
    keys,
    search: query.search ?? null,
    tenant: query.tenant ?? null,
    after: query.after ?? null,
    trail: query.trail,
    next,
    canChange: config.keys !== undefined,
    tenants: config.tenants?.() ?? null,
    tiers: config.tiers?.() ?? null,
    problems: problems.alerts().map((alert) => alert.message),
  };
}

function choice(name: string, label: string, options: readonly string[] | null, hint: string): SafeHtml {
  const id = `key-${name}`;
  if (options === null)
    return html`<label for="${id}">${label}</label><input id="${id}" name="${name}" maxlength="128" placeholder="${hint}">`;
  return html`<label for="${id}">${label}</label><select id="${id}" name="${name}"><option value="">(none)</option>${options.map((option) => html`<option>${option}</option>`)}</select>`;
}

function createForm(ctx: PageContext, data: KeysData): SafeHtml {
  return html`<section><h2>Create a key</h2>
<form method="post" action="${ctx.base}/keys" class="card grid-form">${csrfField(ctx)}
  ${choice('tenant', 'Tenant', data.tenants, 'acme')}
  <label for="key-user">User</label><input id="key-user" name="user" maxlength="128" placeholder="alice">
  <label for="key-feature">Feature</label><input id="key-feature" name="feature" maxlength="128" placeholder="support-bot">
  ${choice('tier', 'Tier', data.tiers, 'pro')}
  <label for="key-scopes">Scopes</label><input id="key-scopes" name="scopes" value="chat" maxlength="2000" aria-describedby="key-scopes-hint"><small id="key-scopes-hint">Comma-separated.</small>
  <label for="key-models">Models</label><input id="key-models" name="models" maxlength="2000" placeholder="gpt-4o-mini, claude-*" aria-describedby="key-models-hint"><small id="key-models-hint">Optional; the tier's rules still apply.</small>
  <label for="key-expires">Expires</label><input id="key-expires" name="expires" list="expiry-choices" placeholder="never" maxlength="40" aria-describedby="key-expires-hint"><small id="key-expires-hint">A duration (30d) or a date (2027-01-31); empty for never.</small>
  <datalist id="expiry-choices"><option value="7d"><option value="30d"><option value="90d"><option value="365d"></datalist>
  <label for="key-id">Id</label><input id="key-id" name="id" maxlength="128" placeholder="made from tenant and user">
  <button type="submit">Create key</button>
</form></section>`;
}

function actions(ctx: PageContext, key: ListedKey, canChange: boolean): SafeHtml {
  if (key.source === 'config') return html`<span class="muted">in the config file</span>`;
  if (!canChange || key.state === 'revoked') return html``;
  const id = encodeURIComponent(key.id);
  return html`<div class="actions">
<form method="post" action="${ctx.base}/keys/${id}/revoke" data-confirm="Revoke key ${key.id}? Requests with it are refused at once.">${csrfField(ctx)}<button type="submit" class="danger" aria-label="Revoke ${key.id}">Revoke</button></form>
<form method="post" action="${ctx.base}/keys/${id}/rotate" class="rotate">${csrfField(ctx)}
<label class="visually-hidden" for="grace-${key.id}">Old key of ${key.id} stops</label>
<select id="grace-${key.id}" name="grace"><option value="1h">old key: 1 h more</option><option value="24h">old key: 24 h more</option><option value="0">old key: stop now</option><option value="keep">old key: until revoked</option></select>
<button type="submit" aria-label="Rotate ${key.id}">Rotate</button></form>
</div>`;
}

function keyRow(ctx: PageContext, key: ListedKey, canChange: boolean): SafeHtml {
  const created =
    key.createdAt === null
      ? html`<td class="muted" title="No creation date was recorded">unknown</td>`
      : timeCell(key.createdAt);
  const expiry =
    key.expiresAt === undefined
      ? html`<td class="muted">never</td>`
      : html`<td><time datetime="${key.expiresAt}" title="${utcTime(key.expiresAt)}">${fromNow(key.expiresAt, ctx.now)}</time></td>`;
  return html`<tr data-key="${key.id}" data-key-state="${key.state}">
<th scope="row">${key.id}</th>
<td><span class="state state--${key.state}">${key.state}</span></td>
<td class="id">${key.tenantId ? html`<a href="${ctx.base}/tenants/${encodeURIComponent(key.tenantId)}">${key.tenantId}</a>` : ''}</td>
<td class="id">${key.userId ?? ''}</td><td>${key.feature ?? ''}</td><td>${key.tier ?? ''}</td>
<td>${key.scopes.join(' ')}</td>
${created}
${expiry}
<td>${actions(ctx, key, canChange)}</td>
</tr>`;
}

/** Suspensions are the guard's, not the key store's: where they live, as this page cannot show them. */
const SUSPENSION_NOTE = html`<p class="muted">The state here is the key store's: revoke a key to stop it for good.
The guard (<code>@tollgate/guard</code>) can also suspend a key or a tenant, on unusual spend or by an operator:
its requests get 403 <code>key_suspended</code> until the suspension is lifted through the guard's admin routes
(<code>POST /keys/:id/lift</code>, under <code>/admin/guard</code> in the example proxy). This page does not show
suspensions.</p>`;

function searchForm(ctx: PageContext, data: KeysData): SafeHtml {
  return html`<form method="get" action="${ctx.base}/keys" class="inline" role="search">${data.tenant ? html`<input type="hidden" name="tenant" value="${data.tenant}">` : ''}
<label for="key-search">Key id starts with</label><input id="key-search" name="q" maxlength="128" value="${data.search ?? ''}"><button type="submit">Search</button></form>
${data.tenant ? html`<p>Keys of tenant <a href="${ctx.base}/tenants/${encodeURIComponent(data.tenant)}">${data.tenant}</a> (<a href="${ctx.base}/keys">every tenant</a>).</p>` : ''}`;
}

/** Previous and Next: a cursor each (the last id of the page before), the earlier cursors carried in `trail`. */
function pageLinks(ctx: PageContext, data: KeysData): SafeHtml {
  const link = (after: string | null, trail: string[]) =>
    `${ctx.base}/keys?${new URLSearchParams({
      ...(data.search ? { q: data.search } : {}),
      ...(data.tenant ? { tenant: data.tenant } : {}),
      ...(after ? { after } : {}),
      ...(trail.length > 0 ? { trail: trail.join(',') } : {}),
    })}`;
  const previous =
    data.after === null
      ? ''
      : html`<li><a href="${link(data.trail.at(-1) ?? null, data.trail.slice(0, -1))}" rel="prev">Previous</a></li>`;
  const next =
    data.next === null
      ? ''
      : html`<li><a href="${link(data.next, [...data.trail, data.after ?? ''])}" rel="next">Next</a></li>`;
  return html`<nav class="pages" aria-label="Pages"><ul>${previous}<li>${data.keys.length} keys, from ${data.keys[0]?.id ?? '-'}</li>${next}</ul></nav>`;
}

export function renderKeys(
  ctx: PageContext,
  data: KeysData,
  created?: { id: string; key: string; note?: string },
): string {
  const shown = created
    ? html`<section class="created" role="alert" aria-labelledby="created-title"><h2 id="created-title">New key ${created.id}</h2>
<p>Copy it now: this is the only time it is shown. Only its SHA-256 is kept.</p>
<p><code class="secret" id="created-key">${created.key}</code> <button type="button" class="copy" data-copy="created-key">Copy</button></p>
${created.note ? html`<p>${created.note}</p>` : ''}</section>`
    : '';
  const problems = data.problems.map((message) => html`<p class="error" role="alert">${message}</p>`);
  const rows = data.keys.map((key) => keyRow(ctx, key, data.canChange));
  const body = html`${shown}${problems}
${searchForm(ctx, data)}
${table('Keys', ['Id', 'State', 'Tenant', 'User', 'Feature', 'Tier', 'Scopes', 'Created', 'Expires', ''], rows, data.search || data.tenant ? 'No key matches.' : 'No keys yet.')}
${pageLinks(ctx, data)}
${SUSPENSION_NOTE}
${data.canChange ? createForm(ctx, data) : html`<p class="muted">No key store is connected: keys are listed, not changed.</p>`}`;
  return layout(ctx, { title: 'Keys', current: '/keys', body });
}
