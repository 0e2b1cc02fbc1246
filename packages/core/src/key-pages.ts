// Pages of keys in id order (KeyStore.page): the query's bounds, one page cut from records in memory, pages merged.
import type { ApiKeyRecord, KeyPage, KeyPageQuery, KeyStore } from './stores.js';

/** Id order: the byte order Redis keeps in a sorted set of equal scores (ids are ASCII, see isValidKeyId). */
export function compareKeyIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Where a page starts: the ids from `from` (after it when `exclusive`), or nowhere when the cursor is past every id
 * that starts with the prefix.
 */
export function keyPageStart(
  query: Pick<KeyPageQuery, 'prefix' | 'after'>,
): { from: string; exclusive: boolean } | undefined {
  const prefix = query.prefix ?? '';
  const after = query.after;
  if (after === undefined || after === '' || compareKeyIds(after, prefix) < 0)
    return { from: prefix, exclusive: false };
  if (after.startsWith(prefix)) return { from: after, exclusive: true };
  return undefined;
}

/** Whether `id` lies within the page query's bounds (prefix and cursor; the tenant is the caller's). */
function inBounds(id: string, query: KeyPageQuery): boolean {
  if (query.prefix !== undefined && !id.startsWith(query.prefix)) return false;
  return query.after === undefined || query.after === '' || compareKeyIds(id, query.after) > 0;
}

/** One page cut from records already sorted by id: the memory store's and a config file's keys. */
export function pageOfSorted(sorted: readonly ApiKeyRecord[], query: KeyPageQuery): KeyPage {
  const start = keyPageStart(query);
  if (!start) return { keys: [] };
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    const order = compareKeyIds(sorted[middle]!.id, start.from);
    if (order < 0 || (order === 0 && start.exclusive)) low = middle + 1;
    else high = middle;
  }
  const keys: ApiKeyRecord[] = [];
  for (let at = low; at < sorted.length; at++) {
    const record = sorted[at]!;
    if (!inBounds(record.id, query)) break;
    if (query.tenantId !== undefined && record.tenantId !== query.tenantId) continue;
    if (keys.length === query.limit) return { keys, next: keys[keys.length - 1]!.id };
    keys.push(record);
  }
  return { keys };
}

/**
 * One page of several sources, each in id order and each paged by the same query: the first `limit` of their pages
 * merged. The next cursor is the last id shown, so a source's key after it comes on the next page.
 */
export function mergeKeyPages(pages: readonly KeyPage[], limit: number): KeyPage {
  const all = pages.flatMap((page) => page.keys).sort((a, b) => compareKeyIds(a.id, b.id));
  const more = all.length > limit || pages.some((page) => page.next !== undefined);
  const keys = all.slice(0, limit);
  const last = keys[keys.length - 1];
  return more && last ? { keys, next: last.id } : { keys };
}

/** `store.page` where the store has it; else every key read and one page cut from them (a store of your own). */
export async function keyPage(store: KeyStore, query: KeyPageQuery): Promise<KeyPage> {
  if (store.page) return store.page(query);
  const sorted = (await store.list()).sort((a, b) => compareKeyIds(a.id, b.id));
  return pageOfSorted(sorted, query);
}

/**
 * One page of a key store (when there is one) and of keys held beside it (a config file's), merged in id order: what
 * /admin/keys, the dashboard and `tollgate keys list` show.
 */
export async function keyPageWith(
  store: KeyStore | undefined,
  beside: readonly ApiKeyRecord[],
  query: KeyPageQuery,
): Promise<KeyPage> {
  const sorted = [...beside].sort((a, b) => compareKeyIds(a.id, b.id));
  const pages = [pageOfSorted(sorted, query)];
  if (store) pages.push(await keyPage(store, query));
  return mergeKeyPages(pages, query.limit);
}

/** The records whose `expiresAt` lies in [`from`, `until`) (epoch ms), soonest first, at most `limit`. */
export function soonestExpiring(
  records: Iterable<ApiKeyRecord>,
  from: number,
  until: number,
  limit: number,
): ApiKeyRecord[] {
  const within: [number, ApiKeyRecord][] = [];
  for (const record of records) {
    const at = record.expiresAt === undefined ? Number.NaN : Date.parse(record.expiresAt);
    if (at >= from && at < until) within.push([at, record]);
  }
  within.sort((a, b) => a[0] - b[0] || compareKeyIds(a[1].id, b[1].id));
  return within.slice(0, limit).map(([, record]) => record);
}

/**
 * The keys of a store (when there is one) and held beside it (a config file's) that expire in [`from`, `until`),
 * soonest first, at most `limit`: `store.expiring` where the store has it, else every key read (a store of your own).
 */
export async function expiringKeysWith(
  store: KeyStore | undefined,
  beside: readonly ApiKeyRecord[],
  from: number,
  until: number,
  limit: number,
): Promise<ApiKeyRecord[]> {
  const stored = !store
    ? []
    : store.expiring
      ? await store.expiring(from, until, limit)
      : soonestExpiring(await store.list(), from, until, limit);
  return soonestExpiring([...beside, ...stored], from, until, limit);
}
