// Where API key records come from (a KeyStore, a lookup function, a list of records) and what makes a record valid now.
import type { ApiKeyRecord, AuthMethod, Identity, KeyStore } from '@tollgate/core';
import { TollgateError, withTimeout } from '@tollgate/core';
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

/** Turns a KeySource into one lookup function; done once at factory time. */
export function resolveKeySource(keys: unknown, code: string, factory: string): (sha256: string) => Promise<ApiKeyRecord | undefined> {
  if (isKeyStore(keys)) return (sha256) => keys.findByHash(sha256);
  if (typeof keys === 'function') {
    const lookup = keys as KeyLookup;
    return async (sha256) => lookup(sha256);
  }
  if (Array.isArray(keys)) {
    const byHash = new Map<string, ApiKeyRecord>();
    for (const [index, record] of (keys as unknown[]).entries()) {
      const sha256 = (record as ApiKeyRecord | undefined)?.sha256;
      if (!isSha256Hex(sha256)) throw new TollgateError(code, `${factory}(): keys[${index}].sha256 must be the SHA-256 hex of a key`);
      byHash.set(sha256.toLowerCase(), record as ApiKeyRecord);
    }
    return async (sha256) => byHash.get(sha256);
  }
  throw new TollgateError(code, `${factory}() needs a "keys" option: a KeyStore, a function (sha256) => record, or an array of key records`);
}

export type KeyCheck =
  | { ok: true; record: ApiKeyRecord }
  | { ok: false; reason: 'unknown' | 'disabled' | 'expired' };

/**
 * Looks a key up and decides whether it may be used now. Nothing is cached here; expiry is
 * checked against `now` on every request. A store may cache records (the Redis one does, and
 * drops them by pub/sub when any process changes a key).
 */
export async function checkApiKey(
  key: string,
  lookup: (sha256: string) => Promise<ApiKeyRecord | undefined>,
  options: { timeoutMs: number; now: number },
): Promise<KeyCheck> {
  const sha256 = hashApiKey(key);
  const record = await withTimeout(lookup(sha256), options.timeoutMs, 'keys.findByHash');
  if (!record || !sha256Equal(sha256, record.sha256)) return { ok: false, reason: 'unknown' };
  if (record.disabled === true) return { ok: false, reason: 'disabled' };
  if (record.expiresAt !== undefined) {
    const expiresAt = Date.parse(record.expiresAt);
    // An unreadable expiry is treated as expired: failing closed is the only safe reading.
    if (!Number.isFinite(expiresAt) || expiresAt <= options.now) return { ok: false, reason: 'expired' };
  }
  return { ok: true, record };
}

/** The Identity a key record stands for. Only the key id identifies the credential. */
export function identityFromRecord(record: ApiKeyRecord, authMethod: AuthMethod): Identity {
  const identity: Identity = { keyId: record.id, scopes: [...(record.scopes ?? [])], authMethod };
  if (record.tenantId !== undefined) identity.tenantId = record.tenantId;
  if (record.userId !== undefined) identity.userId = record.userId;
  if (record.tier !== undefined) identity.tier = record.tier;
  if (record.feature !== undefined) identity.feature = record.feature;
  if (record.models !== undefined) identity.models = [...record.models];
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
