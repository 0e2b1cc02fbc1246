// The cache key of a provider call: who may share the answer, the API, the model after routing and the body in a normal form.
import { hash } from 'node:crypto';
import type { Identity } from '@tollgate/core';

/** Who shares cached answers: each tenant, each key, or everyone. */
export type CacheScope = 'tenant' | 'key' | 'global';

/**
 * Body fields that do not change the answer: who asked (`user`, `metadata`, `safety_identifier`),
 * how it is delivered (`stream`, `stream_options`) and routing hints for the provider's own cache
 * (`prompt_cache_key`). A JSON answer and a stream of the same request share one entry.
 */
export const IGNORED_BODY_FIELDS: readonly string[] = ['user', 'metadata', 'safety_identifier', 'stream', 'stream_options', 'prompt_cache_key'];

const IGNORED = new Set(IGNORED_BODY_FIELDS);

/**
 * `value` as JSON with object keys in sorted order, so `{a, b}` and `{b, a}` read alike. Arrays
 * keep their order (the order of messages is the request). Built by concatenation: V8 joins the
 * pieces lazily, which is cheaper here than collecting them in an array.
 */
function normalJson(value: unknown, topLevel: boolean): string {
  if (value === null || typeof value !== 'object') {
    // undefined is what JSON.stringify drops from objects; a body parsed from JSON holds none.
    return value === undefined ? 'null' : JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let index = 0; index < value.length; index++) out += (index > 0 ? ',' : '') + normalJson(value[index], false);
    return `${out}]`;
  }
  const keys = Object.keys(value);
  if (keys.length > 1) sortKeys(keys);
  let out = '{';
  let first = true;
  for (const key of keys) {
    const field = (value as Record<string, unknown>)[key];
    if (field === undefined || (topLevel && IGNORED.has(key))) continue;
    out += `${first ? '' : ','}${JSON.stringify(key)}:${normalJson(field, false)}`;
    first = false;
  }
  return `${out}}`;
}

/** Objects with more keys than this are sorted by the built-in sort: an insertion sort is quadratic. */
const INSERTION_SORT_MAX_KEYS = 16;

/**
 * Sorts in place, in the order of `Array.prototype.sort()` (by UTF-16 code units). A body's objects
 * have a few keys each, and the built-in sort allocates for every call: an insertion sort for those.
 * An object with many keys (a client may send one with tens of thousands) goes to the built-in sort,
 * so no body costs quadratic time.
 */
function sortKeys(keys: string[]): void {
  if (keys.length > INSERTION_SORT_MAX_KEYS) {
    keys.sort();
    return;
  }
  for (let index = 1; index < keys.length; index++) {
    const key = keys[index]!;
    let at = index - 1;
    for (; at >= 0 && keys[at]! > key; at--) keys[at + 1] = keys[at]!;
    keys[at + 1] = key;
  }
}

/** The body as JSON with sorted keys and the fields that do not change the answer left out. */
export function normaliseBody(body: unknown): string {
  return normalJson(body, true);
}

/**
 * Whose answers a request may share under `scope`, or undefined when it may share none (no
 * identity: an unauthenticated caller never reads another's answer). A tenant scope without a
 * tenant falls back to the key.
 */
export function scopeOf(scope: CacheScope, identity: Pick<Identity, 'keyId' | 'tenantId'> | undefined): string | undefined {
  if (scope === 'global') return 'global';
  if (!identity) return undefined;
  if (scope === 'tenant' && identity.tenantId) return `tenant:${identity.tenantId}`;
  return identity.keyId ? `key:${identity.keyId}` : undefined;
}

/** The entry's key: SHA-256 over the scope, the API, the model and the normal body, as hex. */
export function cacheKey(scope: string, api: string, model: string, body: unknown): string {
  // One call into the hash (crypto.hash): a third of createHash().update().digest() for short input.
  return hash('sha256', `${scope}\n${api}\n${model}\n${normaliseBody(body)}`, 'hex');
}
