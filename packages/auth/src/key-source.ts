// Where API key records come from (a KeyStore, a lookup function, a list of records) and what makes a record valid now.
import type { Identity } from '@tollgate/core';
import type { ApiKeyRecord, AuthMethod, KeyStore } from '@tollgate/core/store-contracts';
import { TollgateError } from '@tollgate/core';
import { keyBudgetOf, withTimeout } from '@tollgate/core/store-contracts';
import { hashApiKey, isSha256Hex, sha256Equal } from './api-keys.js';

/** A user function that finds the record of a key by the key's SHA-256 hex. */
export type KeyLookup = (sha256: string) => Promise<ApiKeyRecord | undefined> | ApiKeyRecord | undefined;

/**
 * A source of key records: a core `KeyStore` (memory, Redis), a lookup function, or a fixed
 * list of records (for keys from a config file).
 */
export type KeySource = KeyStore | KeyLookup | readonly ApiKeyRecord[];

function isKeyStore(value: unknown): value is KeyStore {
  return typeof value === 'object' && value !== null && typeof (value as KeyStore).findByHash === 'function';
}

/** True when a lookup answered with a promise (or another thenable), not with the record itself. */
export function isPending<T>(found: PromiseLike<T> | T): found is PromiseLike<T> {
  return typeof (found as PromiseLike<T> | undefined)?.then === 'function';
}

/**
 * Turns a KeySource into one lookup function; done once at factory time. Sources held in memory
 * (a store with `findByHashSync`, a list of records, a store's cached records) answer with the
 * record itself, not a promise.
 */
export function resolveKeySource(keys: unknown, code: string, factory: string): KeyLookup {
  if (isKeyStore(keys)) {
    if (typeof keys.findByHashSync === 'function') return keys.findByHashSync.bind(keys);
    // A store that caches records (Redis) answers a cached key at once, and asks itself for the rest.
    if (typeof keys.findCachedByHash === 'function')
      return (sha256) => keys.findCachedByHash!(sha256) ?? keys.findByHash(sha256);
    return (sha256) => keys.findByHash(sha256);
  }
  if (typeof keys === 'function') return keys as KeyLookup;
  if (Array.isArray(keys)) {
    const byHash = new Map<string, ApiKeyRecord>();
    for (const [index, record] of (keys as unknown[]).entries()) {
      const sha256 = (record as ApiKeyRecord | undefined)?.sha256;
      if (!isSha256Hex(sha256))
        throw new TollgateError(code, `${factory}(): keys[${index}].sha256 must be the SHA-256 hex of a key`);
      byHash.set(sha256.toLowerCase(), record as ApiKeyRecord);
    }
    return (sha256) => byHash.get(sha256);
  }
  throw new TollgateError(
    code,
    `${factory}() needs a "keys" option: a KeyStore, a function (sha256) => record, or an array of key records`,
  );
}

type KeyCheck = { ok: true; record: ApiKeyRecord } | { ok: false; reason: 'unknown' | 'disabled' | 'expired' };

const UNKNOWN: KeyCheck = Object.freeze({ ok: false, reason: 'unknown' });
const DISABLED: KeyCheck = Object.freeze({ ok: false, reason: 'disabled' });
const EXPIRED: KeyCheck = Object.freeze({ ok: false, reason: 'expired' });

/**
 * Whether the record a lookup found for `sha256` lets its key be used at `now` (epoch ms, read
 * only when the record expires). Nothing is cached here; expiry is checked on every request.
 */
export function judgeKeyRecord(sha256: string, record: ApiKeyRecord | undefined, now?: number): KeyCheck {
  if (!record || !sha256Equal(sha256, record.sha256)) return UNKNOWN;
  if (record.disabled === true) return DISABLED;
  if (record.expiresAt !== undefined) {
    const expiresAt = Date.parse(record.expiresAt);
    // An unreadable expiry is treated as expired: failing closed is the only safe reading.
    if (!Number.isFinite(expiresAt) || expiresAt <= (now ?? Date.now())) return EXPIRED;
  }
  return { ok: true, record };
}

/**
 * Looks a key up and decides whether it may be used now. A lookup that answers with a promise
 * gets the `timeoutMs` deadline. A store may cache records (the Redis one does, and drops them by
 * pub/sub when any process changes a key).
 */
export async function checkApiKey(
  key: string,
  lookup: KeyLookup,
  options: { timeoutMs: number; now: number },
): Promise<KeyCheck> {
  const sha256 = hashApiKey(key);
  const found = lookup(sha256);
  const record = isPending(found)
    ? await withTimeout(Promise.resolve(found), options.timeoutMs, 'keys.findByHash')
    : found;
  return judgeKeyRecord(sha256, record, options.now);
}

/** The Identity a key record stands for. Only the key id identifies the credential. */
export function identityFromRecord(record: ApiKeyRecord, authMethod: AuthMethod): Identity {
  const identity: Identity = { keyId: record.id, scopes: [...(record.scopes ?? [])], authMethod };
  if (record.tenantId !== undefined) identity.tenantId = record.tenantId;
  if (record.userId !== undefined) identity.userId = record.userId;
  if (record.tier !== undefined) identity.tier = record.tier;
  if (record.feature !== undefined) identity.feature = record.feature;
  if (record.team !== undefined) identity.team = record.team;
  if (record.tags !== undefined && record.tags.length > 0) identity.tags = [...record.tags];
  if (record.models !== undefined) identity.models = [...record.models];
  if (record.tools !== undefined) identity.tools = [...record.tools];
  // The record's own limits object: budgetGuard validates each once, not on every request.
  const keyBudget = keyBudgetOf(record);
  if (keyBudget) identity.keyBudget = keyBudget;
  return identity;
}

/** Why a known key is refused; an unknown one gets the 401 naming what the route accepts. Never the key itself. */
export const KEY_REJECTION_MESSAGES: Record<'disabled' | 'expired', string> = {
  disabled: 'This API key has been revoked.',
  expired: 'This API key has expired.',
};

/** True when an earlier auth middleware already identified the caller (anonymous does not count). */
export function isAuthenticated(identity: Identity | undefined): identity is Identity {
  return identity !== undefined && identity.authMethod !== 'anonymous';
}

/** The identity given to requests let through by `optional: true`. */
export function anonymousIdentity(): Identity {
  return { keyId: 'anonymous', scopes: [], authMethod: 'anonymous' };
}
