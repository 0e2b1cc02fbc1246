// The proxy config's `keys` entries (see examples/proxy/README.md) as core ApiKeyRecords, and back.
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { TollgateError } from '@tollgate/core';
import { isSha256Hex } from './api-keys.js';

/** One entry of the config file's `keys` array. Fields beyond these are kept in `metadata`. */
export interface ConfigKeyEntry {
  id: string;
  /** SHA-256 hex of the whole key string. */
  sha256: string;
  tenant?: string;
  user?: string;
  tier?: string;
  feature?: string;
  /** The team of its tenant the key's calls are charged to. */
  team?: string;
  /** Tags every request of the key carries. */
  tags?: string[];
  scopes?: string[];
  models?: string[];
  /** MCP tools the key may call (`server/tool` patterns), besides its tier's and tenant's. */
  tools?: string[];
  /** ISO 8601. */
  createdAt?: string;
  /** ISO 8601; the key stops working at this instant. */
  expiresAt?: string;
  disabled?: boolean;
  /** The key's own budget (the config's form; the gateway's config checks it). */
  budget?: unknown;
  /** The key whose budget this one continues (set by a rotation). */
  budgetOf?: string;
  [extra: string]: unknown;
}

const ENTRY_FIELDS = [
  'id',
  'sha256',
  'tenant',
  'user',
  'tier',
  'feature',
  'team',
  'tags',
  'scopes',
  'models',
  'tools',
  'createdAt',
  'expiresAt',
  'disabled',
  'budget',
  'budgetOf',
];
const ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
/** Config keys written by hand carry no creation time; this stands in for "unknown". */
const UNKNOWN_CREATED_AT = new Date(0).toISOString();

function invalid(path: string, message: string): TollgateError {
  return new TollgateError('ERR_TG_AUTH_INVALID_KEY_CONFIG', `${path} ${message}`);
}

function optionalString(entry: Record<string, unknown>, field: string, path: string): string | undefined {
  const value = entry[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw invalid(`${path}.${field}`, 'must be a non-empty string');
  return value;
}

function optionalStringList(entry: Record<string, unknown>, field: string, path: string): string[] | undefined {
  const value = entry[field];
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item !== ''))
    throw invalid(`${path}.${field}`, 'must be an array of non-empty strings');
  return [...value] as string[];
}

function optionalTime(entry: Record<string, unknown>, field: string, path: string): string | undefined {
  const value = optionalString(entry, field, path);
  if (value !== undefined && !Number.isFinite(Date.parse(value)))
    throw invalid(`${path}.${field}`, 'must be an ISO 8601 time');
  return value;
}

/** True when `id` can name a key (letters, digits, `._:@-`, at most 128 characters). */
export function isValidKeyId(id: unknown): id is string {
  return typeof id === 'string' && ID.test(id);
}

/**
 * Validates the config's `keys` array and turns it into core ApiKeyRecords
 * (`tenant` -> `tenantId`, `user` -> `userId`, fields it does not know -> `metadata`).
 * Throws a TollgateError (`ERR_TG_AUTH_INVALID_KEY_CONFIG`) naming the faulty field, e.g. `keys[2].sha256`.
 */
export function keyRecordsFromConfig(configKeys: unknown, path = 'keys'): ApiKeyRecord[] {
  if (configKeys === undefined) return [];
  if (!Array.isArray(configKeys)) throw invalid(path, 'must be an array of key entries');
  const ids = new Set<string>();
  const hashes = new Set<string>();
  return configKeys.map((raw: unknown, index) => {
    const at = `${path}[${index}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(at, 'must be an object');
    const entry = raw as Record<string, unknown>;
    if (!isValidKeyId(entry.id)) throw invalid(`${at}.id`, 'must be 1-128 characters: letters, digits, . _ : @ -');
    if (ids.has(entry.id)) throw invalid(`${at}.id`, `repeats the id "${entry.id}"`);
    ids.add(entry.id);
    if (!isSha256Hex(entry.sha256)) throw invalid(`${at}.sha256`, 'must be the 64-character SHA-256 hex of the key');
    const sha256 = entry.sha256.toLowerCase();
    // Named by index only: quoting a hash in an error would put it in logs.
    if (hashes.has(sha256)) throw invalid(`${at}.sha256`, 'repeats the hash of an earlier key');
    hashes.add(sha256);
    if (entry.disabled !== undefined && typeof entry.disabled !== 'boolean')
      throw invalid(`${at}.disabled`, 'must be true or false');

    const record: ApiKeyRecord = {
      id: entry.id,
      sha256,
      scopes: optionalStringList(entry, 'scopes', at) ?? [],
      createdAt: optionalTime(entry, 'createdAt', at) ?? UNKNOWN_CREATED_AT,
    };
    const tenantId = optionalString(entry, 'tenant', at);
    const userId = optionalString(entry, 'user', at);
    const tier = optionalString(entry, 'tier', at);
    const feature = optionalString(entry, 'feature', at);
    const team = optionalString(entry, 'team', at);
    if (team !== undefined && tenantId === undefined)
      throw invalid(`${at}.team`, "needs the key's tenant: a team is a tenant's");
    const models = optionalStringList(entry, 'models', at);
    const tools = optionalStringList(entry, 'tools', at);
    const tags = optionalStringList(entry, 'tags', at);
    const expiresAt = optionalTime(entry, 'expiresAt', at);
    if (tenantId !== undefined) record.tenantId = tenantId;
    if (userId !== undefined) record.userId = userId;
    if (tier !== undefined) record.tier = tier;
    if (feature !== undefined) record.feature = feature;
    if (team !== undefined) record.team = team;
    if (models !== undefined) record.models = models;
    if (tools !== undefined) record.tools = tools;
    if (tags !== undefined) record.tags = tags;
    if (expiresAt !== undefined) record.expiresAt = expiresAt;
    if (entry.disabled === true) record.disabled = true;
    // Its limits are checked by the budget's rules where it is served (the gateway's config, @tollgate/budget).
    if (entry.budget !== undefined) record.budget = entry.budget;
    const budgetOf = optionalString(entry, 'budgetOf', at);
    if (budgetOf !== undefined) record.budgetOf = budgetOf;
    const metadata = Object.fromEntries(Object.entries(entry).filter(([field]) => !ENTRY_FIELDS.includes(field)));
    if (Object.keys(metadata).length > 0) record.metadata = metadata;
    return record;
  });
}

/** The config-file form of a record (the inverse of `keyRecordsFromConfig`). */
export function configKeyFromRecord(record: ApiKeyRecord): ConfigKeyEntry {
  const entry: ConfigKeyEntry = { ...(record.metadata ?? {}), id: record.id, sha256: record.sha256 };
  if (record.tenantId !== undefined) entry.tenant = record.tenantId;
  if (record.userId !== undefined) entry.user = record.userId;
  if (record.tier !== undefined) entry.tier = record.tier;
  if (record.feature !== undefined) entry.feature = record.feature;
  if (record.team !== undefined) entry.team = record.team;
  entry.scopes = [...record.scopes];
  if (record.models !== undefined) entry.models = [...record.models];
  if (record.tools !== undefined) entry.tools = [...record.tools];
  if (record.tags !== undefined) entry.tags = [...record.tags];
  if (record.createdAt !== UNKNOWN_CREATED_AT) entry.createdAt = record.createdAt;
  if (record.expiresAt !== undefined) entry.expiresAt = record.expiresAt;
  if (record.disabled === true) entry.disabled = true;
  if (record.budget !== undefined) entry.budget = record.budget;
  if (record.budgetOf !== undefined) entry.budgetOf = record.budgetOf;
  return entry;
}

/**
 * The record of the proxy's admin key (`adminKeySha256` in the config): scope `admin`.
 * Pair it with `apiKeyAuth({ keys: [adminKeyRecord(hex)], keyFormat: null })` and `requireScope('admin')`.
 */
export function adminKeyRecord(sha256: string, id = 'admin'): ApiKeyRecord {
  if (!isSha256Hex(sha256)) throw invalid('adminKeySha256', 'must be the 64-character SHA-256 hex of the admin key');
  return { id, sha256: sha256.toLowerCase(), scopes: ['admin'], createdAt: UNKNOWN_CREATED_AT };
}
