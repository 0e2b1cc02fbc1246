// Key changes from the dashboard: create (the key shown once), revoke, rotate; records shaped and hashed as @tollgate/auth does.
import { randomBytes } from 'node:crypto';
import {
  generateApiKey,
  hashApiKey,
  isValidKeyId,
  keyExpiry,
  keyTermOrRefusal,
  rotateApiKey,
  rotationGrace,
} from '@tollgate/auth';
import { ApiError } from '@tollgate/core';
import { changeKey } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord, KeyStore } from '@tollgate/core/store-contracts';
import type { DashboardConfig } from './options.js';
import { listedKey } from './sources.js';
import { hasControlCharacter } from './text-checks.js';
import type { ListedKey } from './sources.js';

/** A key made here: the only moment the key exists outside its owner. */
interface CreatedKey {
  key: string;
  record: ListedKey;
}

type Fields = Record<string, unknown>;

function text(fields: Fields, name: string): string | undefined {
  const value = fields[name];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || value.length > 128 || hasControlCharacter(value))
    throw new ApiError('invalid_request', `${name} must be text of 1 to 128 characters.`, { param: name });
  return value.trim() || undefined;
}

/** A list from a form (`chat, embeddings`) or from JSON (`["chat"]`). */
function list(fields: Fields, name: string): string[] | undefined {
  const value = fields[name];
  if (value === undefined || value === '') return undefined;
  const items = typeof value === 'string' ? value.split(/[\s,]+/).filter(Boolean) : value;
  if (
    !Array.isArray(items) ||
    items.length > 64 ||
    !items.every((item) => typeof item === 'string' && item.length > 0 && item.length <= 128)
  ) {
    throw new ApiError('invalid_request', `${name} must be a list of names (comma-separated on the form).`, {
      param: name,
    });
  }
  return items as string[];
}

/** `30d` from now, or an ISO time in the future; nothing for "never". */
function expiry(fields: Fields, name: string, now: number): string | undefined {
  return keyTermOrRefusal(name, () => keyExpiry(text(fields, name), now, name));
}

function oneOf(value: string | undefined, allowed: (() => readonly string[]) | undefined, name: string): void {
  if (value === undefined || allowed === undefined) return;
  if (!allowed().includes(value)) throw new ApiError('invalid_request', `Unknown ${name} "${value}".`, { param: name });
}

function needStore(config: DashboardConfig): KeyStore {
  if (!config.keys)
    throw new ApiError('invalid_request', 'No key store is connected to the dashboard: keys cannot be changed here.', {
      status: 409,
    });
  return config.keys;
}

async function idTaken(config: DashboardConfig, store: KeyStore, id: string): Promise<boolean> {
  return config.configKeys().some((record) => record.id === id) || (await store.findById(id)) !== undefined;
}

function isConfigKey(config: DashboardConfig, id: string): boolean {
  return config.configKeys().some((record) => record.id === id);
}

export async function createKey(config: DashboardConfig, fields: Fields): Promise<CreatedKey> {
  const store = needStore(config);
  const now = config.now();
  const tenantId = text(fields, 'tenant');
  const tier = text(fields, 'tier');
  oneOf(tenantId, config.tenants, 'tenant');
  oneOf(tier, config.tiers, 'tier');
  const id =
    text(fields, 'id') ?? [tenantId, text(fields, 'user'), randomBytes(4).toString('hex')].filter(Boolean).join('-');
  if (!isValidKeyId(id))
    throw new ApiError('invalid_request', 'id may hold letters, digits and . _ : @ - only (at most 128).', {
      param: 'id',
    });
  if (await idTaken(config, store, id))
    throw new ApiError('invalid_request', `A key with id "${id}" exists.`, { param: 'id', status: 409 });
  const key = generateApiKey();
  const record: ApiKeyRecord = {
    id,
    sha256: hashApiKey(key),
    scopes: list(fields, 'scopes') ?? [],
    createdAt: new Date(now).toISOString(),
  };
  const userId = text(fields, 'user');
  const feature = text(fields, 'feature');
  const models = list(fields, 'models');
  const expiresAt = expiry(fields, 'expires', now);
  if (tenantId !== undefined) record.tenantId = tenantId;
  if (userId !== undefined) record.userId = userId;
  if (tier !== undefined) record.tier = tier;
  if (feature !== undefined) record.feature = feature;
  if (models !== undefined) record.models = models;
  if (expiresAt !== undefined) record.expiresAt = expiresAt;
  await store.put(record);
  return { key, record: listedKey(record, 'store', now) };
}

async function storedKey(config: DashboardConfig, id: string): Promise<{ store: KeyStore; record: ApiKeyRecord }> {
  const store = needStore(config);
  if (isConfigKey(config, id))
    throw new ApiError(
      'invalid_request',
      `The key "${id}" comes from the config file: change it there (or set "disabled": true).`,
      { param: 'id', status: 409 },
    );
  const record = await store.findById(id);
  if (!record) throw new ApiError('not_found', `No key "${id}" in the key store.`);
  return { store, record };
}

/** Revokes a key at once: one store call, so a concurrent write cannot undo it. */
export async function revokeKey(config: DashboardConfig, id: string): Promise<ListedKey> {
  const { store } = await storedKey(config, id);
  if (!(await store.disable(id))) throw new ApiError('not_found', `No key "${id}" in the key store.`);
  const record = await store.findById(id);
  return listedKey(record!, 'store', config.now());
}

/**
 * A new key with the old one's attributes; the old one then stops at once (`grace` 0), after the
 * grace (`1h`: its expiry moves no later than that), or stays until revoked (`grace` absent).
 */
export async function rotateKey(
  config: DashboardConfig,
  id: string,
  fields: Fields,
): Promise<CreatedKey & { previous: ListedKey }> {
  const { store, record: old } = await storedKey(config, id);
  if (old.disabled === true)
    throw new ApiError('invalid_request', `The key "${id}" is revoked: create a new key instead.`, {
      param: 'id',
      status: 409,
    });
  const now = config.now();
  // Read before anything is stored: a bad grace after the new key is stored would leave a key nobody was shown.
  const grace = keyTermOrRefusal('grace', () => rotationGrace(text(fields, 'grace'), now));
  const newId = text(fields, 'id');
  if (newId !== undefined && !isValidKeyId(newId))
    throw new ApiError('invalid_request', 'id may hold letters, digits and . _ : @ - only (at most 128).', {
      param: 'id',
    });
  if (newId !== undefined && (await idTaken(config, store, newId)))
    throw new ApiError('invalid_request', `A key with id "${newId}" exists.`, { param: 'id', status: 409 });
  const expiresAt = expiry(fields, 'expires', now);
  // The rule of every rotation (@tollgate/auth): one atomic store call, a revoke meanwhile never undone.
  const rotation = await rotateApiKey((keyId, decide) => changeKey(store, keyId, decide), id, {
    grace,
    expiresAt,
    id: newId,
    now,
  });
  if (rotation.outcome === 'taken')
    throw new ApiError('invalid_request', `A key with id "${rotation.successorId}" exists.`, {
      param: 'id',
      status: 409,
    });
  if (rotation.outcome === 'missing') throw new ApiError('not_found', `No key "${id}" in the key store.`);
  if (rotation.outcome === 'declined')
    throw new ApiError('invalid_request', `The key "${id}" is revoked: create a new key instead.`, {
      param: 'id',
      status: 409,
    });
  const previous = (await store.findById(id)) ?? old;
  return {
    key: rotation.key,
    record: listedKey(rotation.record, 'store', now),
    previous: listedKey(previous, 'store', now),
  };
}
