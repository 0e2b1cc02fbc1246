// /admin/keys: list, create and rotate (a new key is shown once), change the budget of and revoke keys in the key store.
import express from 'express';
import type { Request, Response, Router } from 'express';
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
import { noteAudit } from '@tollgate/core/audit';
import { visibleTenants } from './operator-access.js';
import { asyncRoute } from '@tollgate/core/checks';
import { changeKey, keyPageWith, mergeKeyPages } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord, KeyPage, KeyPageQuery, KeyStore } from '@tollgate/core/store-contracts';
import type { AuthOptions } from './auth-setup.js';

/** A record as operators see it: everything but the hash. */
function publicRecord(record: ApiKeyRecord, source: 'config' | 'store') {
  const { sha256: _sha256, ...rest } = record;
  return { ...rest, source };
}

function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > 128)
    throw new ApiError('invalid_request', `${field} must be a string of 1 to 128 characters.`, { param: field });
  return value;
}

function optionalStringList(body: Record<string, unknown>, field: string): string[] | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (
    !Array.isArray(value) ||
    value.length > 64 ||
    !value.every((item) => typeof item === 'string' && item.length > 0 && item.length <= 128)
  ) {
    throw new ApiError('invalid_request', `${field} must be an array of strings.`, { param: field });
  }
  return value as string[];
}

/** Keys a page holds without `limit`, and at most (docs/tenants.md, "Listing keys at scale"). */
const PAGE_DEFAULT = 100;
const PAGE_MAX = 1000;

/** `?tenant=&q=&after=&limit=` of a list: a tenant, the start of an id, the last id of the page before, a size. */
function keyListQuery(req: Request): KeyPageQuery {
  const single = (name: string) => {
    const value = req.query[name];
    if (value === undefined || value === '') return undefined;
    if (typeof value !== 'string' || value.length > 128)
      throw new ApiError('invalid_request', `${name} must be given once, as text of at most 128 characters.`, {
        param: name,
      });
    return value;
  };
  const limitText = single('limit');
  const limit = limitText === undefined ? PAGE_DEFAULT : Number(limitText);
  if (!/^\d+$/.test(limitText ?? '1') || limit < 1 || limit > PAGE_MAX)
    throw new ApiError('invalid_request', `limit must be an integer from 1 to ${PAGE_MAX}; got "${limitText}".`, {
      param: 'limit',
    });
  const [tenantId, prefix, after] = [single('tenant'), single('q'), single('after')];
  return {
    limit,
    ...(tenantId === undefined ? {} : { tenantId }),
    ...(prefix === undefined ? {} : { prefix }),
    ...(after === undefined ? {} : { after }),
  };
}

/**
 * One page of the config file's keys and the store's together, in id order: a tenant-scoped operator's page merges
 * a page of each of its tenants, so no page reads another tenant's keys.
 */
async function pageOfKeys(
  store: KeyStore,
  configRecords: readonly ApiKeyRecord[],
  query: KeyPageQuery,
  visible: readonly string[] | undefined,
): Promise<KeyPage> {
  const asked = query.tenantId;
  const tenants = visible === undefined ? [asked] : visible.filter((tenant) => asked === undefined || tenant === asked);
  const pages = tenants.map((tenantId) =>
    keyPageWith(store, configRecords, tenantId === undefined ? query : { ...query, tenantId }),
  );
  return mergeKeyPages(await Promise.all(pages), query.limit);
}

/** What a rotation's body may give: the options of `tollgate keys rotate`. */
const ROTATION_FIELDS = ['grace', 'expires', 'id'];

/** What the key routes share: the store, the config's keys (changed in their file, not here) and the key rule. */
interface AdminKeys {
  keyProblems: AuthOptions['keyProblems'];
  configRecords: () => readonly ApiKeyRecord[];
  store: KeyStore;
  isConfigKey(id: string): boolean;
  /** The route's key id, when it names a key of the store: a config file's key is changed in its file (`how`). */
  storeKeyId(req: Request, how: string): string;
}

function listKeysRoute(keys: AdminKeys) {
  const { configRecords, store } = keys;
  // One page, never every key: without parameters the first PAGE_DEFAULT keys and the cursor of the next page.
  return async function listKeys(req: Request, res: Response) {
    const query = keyListQuery(req);
    const config = configRecords();
    const configIds = new Set(config.map((record) => record.id));
    // A tenant-scoped operator sees its own tenants' keys only (docs/operators.md).
    const page = await pageOfKeys(store, config, query, visibleTenants(res));
    res.json({
      keys: page.keys.map((record) => publicRecord(record, configIds.has(record.id) ? 'config' : 'store')),
      ...(page.next === undefined ? {} : { next: page.next }),
    });
  };
}

function createKeyRoute(keys: AdminKeys) {
  const { keyProblems, store, isConfigKey } = keys;
  return async function createKey(req: Request, res: Response) {
    noteAudit(req, res, { action: 'key.create', target: 'key' });
    const body: unknown = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new ApiError('invalid_request', 'The body must be a JSON object.', { param: 'body' });
    const fields = body as Record<string, unknown>;
    const id = optionalString(fields, 'id') ?? `key-${Date.now().toString(36)}`;
    noteAudit(req, res, { target: `key:${id}` });
    if (!isValidKeyId(id))
      throw new ApiError('invalid_request', 'id may hold letters, digits and . _ : @ - only.', { param: 'id' });
    if (isConfigKey(id) || (await store.findById(id)))
      throw new ApiError('invalid_request', `A key with id "${id}" exists.`, { param: 'id', status: 409 });
    const tenantId = optionalString(fields, 'tenant');
    const tier = optionalString(fields, 'tier');
    const tools = optionalStringList(fields, 'tools');
    const team = optionalString(fields, 'team');
    // The rule the config's own keys pass at start, with its did-you-mean (the first problem names its field).
    const budget = fields.budget;
    const [problem] = keyProblems({ tenant: tenantId, tier, tools, budget, team }, 'body');
    if (problem) throw new ApiError('invalid_request', problem, { param: /^body\.(\w+)/.exec(problem)?.[1] ?? null });
    const key = generateApiKey();
    const record: ApiKeyRecord = {
      id,
      sha256: hashApiKey(key),
      scopes: optionalStringList(fields, 'scopes') ?? [],
      createdAt: new Date().toISOString(),
    };
    const userId = optionalString(fields, 'user');
    const feature = optionalString(fields, 'feature');
    const models = optionalStringList(fields, 'models');
    if (tenantId !== undefined) record.tenantId = tenantId;
    if (tier !== undefined) record.tier = tier;
    if (userId !== undefined) record.userId = userId;
    if (feature !== undefined) record.feature = feature;
    if (team !== undefined) record.team = team;
    if (models !== undefined) record.models = models;
    if (tools !== undefined) record.tools = tools;
    // Part of the key: every process serving it counts it from its first request.
    if (budget !== undefined) record.budget = budget;
    await store.put(record);
    noteAudit(req, res, { before: null, after: publicRecord(record, 'store') });
    // The only time the key exists outside the client: it is not stored, only its hash.
    res.status(201).json({ key, record: publicRecord(record, 'store') });
  };
}

/**
 * `{ "budget": {...} | [...] | null }`: the key's budget set or taken away, in one atomic store call (a revoke
 * meanwhile stays); the period's spend stays where it is.
 */
function changeKeyBudgetRoute(keys: AdminKeys) {
  const { keyProblems, store, storeKeyId } = keys;
  return async function changeKeyBudget(req: Request, res: Response) {
    noteAudit(req, res, { action: 'key.budget', target: `key:${String(req.params.id)}` });
    const id = storeKeyId(req, 'change it there');
    const body: unknown = req.body;
    const fields = typeof body === 'object' && body !== null && !Array.isArray(body) ? body : {};
    const unknownField = Object.keys(fields).find((field) => field !== 'budget');
    if (!Object.hasOwn(fields, 'budget') || unknownField !== undefined)
      throw new ApiError('invalid_request', 'The body changes a key\'s budget: { "budget": { "usd": 5 } } or null.', {
        param: unknownField ?? 'budget',
      });
    const budget = (fields as { budget: unknown }).budget;
    const [problem] = budget === null ? [] : keyProblems({ budget }, 'body');
    if (problem) throw new ApiError('invalid_request', problem, { param: 'budget' });
    let changed: ApiKeyRecord | undefined;
    let before: ApiKeyRecord | undefined;
    const outcome = await changeKey(store, id, (current) => {
      const { budget: _old, ...rest } = current;
      before = current;
      changed = budget === null ? rest : { ...rest, budget };
      return { record: changed };
    });
    if (outcome !== 'done' || !changed) throw new ApiError('not_found', `No key "${id}" in the key store.`);
    noteAudit(req, res, {
      before: before ? publicRecord(before, 'store') : null,
      after: publicRecord(changed, 'store'),
    });
    res.json({ record: publicRecord(changed, 'store') });
  };
}

function revokeKeyRoute(keys: AdminKeys) {
  const { store, storeKeyId } = keys;
  return async function revokeKey(req: Request, res: Response) {
    noteAudit(req, res, { action: 'key.revoke', target: `key:${String(req.params.id)}` });
    const id = storeKeyId(req, 'remove it there (or set "disabled": true)');
    const before = await store.findById(id);
    if (!(await store.disable(id))) throw new ApiError('not_found', `No key "${id}" in the key store.`);
    const after = await store.findById(id);
    noteAudit(req, res, {
      before: before ? publicRecord(before, 'store') : null,
      after: after ? publicRecord(after, 'store') : null,
    });
    res.json({ revoked: id });
  };
}

/**
 * `{ "grace"?, "expires"?, "id"? }`, the terms of `tollgate keys rotate`: the successor (its secret shown once)
 * continues the old key's budget and period's spend; one atomic store call, so a revoke meanwhile stays.
 */
function rotateKeyRoute(keys: AdminKeys) {
  const { store, isConfigKey, storeKeyId } = keys;
  return async function rotateKey(req: Request, res: Response) {
    noteAudit(req, res, { action: 'key.rotate', target: `key:${String(req.params.id)}` });
    const id = storeKeyId(req, 'rotate it there (tollgate keys rotate --config)');
    const before = await store.findById(id);
    const body: unknown = req.body ?? {};
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new ApiError('invalid_request', 'The body must be a JSON object.', { param: 'body' });
    const fields = body as Record<string, unknown>;
    const unknownField = Object.keys(fields).find((field) => !ROTATION_FIELDS.includes(field));
    if (unknownField !== undefined)
      throw new ApiError('invalid_request', 'The body may give "grace", "expires" and "id" only.', {
        param: unknownField,
      });
    // Read before anything is stored: a bad term after the successor is stored would leave a key nobody was shown.
    const now = Date.now();
    const grace = keyTermOrRefusal('grace', () => rotationGrace(optionalString(fields, 'grace'), now));
    const expiresAt = keyTermOrRefusal('expires', () => keyExpiry(optionalString(fields, 'expires'), now));
    const newId = optionalString(fields, 'id');
    if (newId !== undefined && !isValidKeyId(newId))
      throw new ApiError('invalid_request', 'id may hold letters, digits and . _ : @ - only.', { param: 'id' });
    if (newId !== undefined && isConfigKey(newId))
      throw new ApiError('invalid_request', `A key with id "${newId}" exists.`, { param: 'id', status: 409 });
    const rotation = await rotateApiKey((keyId, decide) => changeKey(store, keyId, decide), id, {
      grace,
      expiresAt,
      id: newId,
      now,
    });
    if (rotation.outcome === 'missing') throw new ApiError('not_found', `No key "${id}" in the key store.`);
    if (rotation.outcome === 'declined')
      throw new ApiError('invalid_request', `The key "${id}" is revoked: create a new key instead.`, {
        param: 'id',
        status: 409,
      });
    if (rotation.outcome === 'taken')
      throw new ApiError('invalid_request', `A key with id "${rotation.successorId}" exists.`, {
        param: 'id',
        status: 409,
      });
    noteAudit(req, res, {
      before: before ? publicRecord(before, 'store') : null,
      after: { record: publicRecord(rotation.record, 'store'), previous: publicRecord(rotation.previous, 'store') },
    });
    res.status(201).json({
      key: rotation.key,
      record: publicRecord(rotation.record, 'store'),
      previous: publicRecord(rotation.previous, 'store'),
    });
  };
}

export function adminKeysRouter(
  keyProblems: AuthOptions['keyProblems'],
  configRecords: () => readonly ApiKeyRecord[],
  store: KeyStore,
): Router {
  const isConfigKey = (id: string) => configRecords().some((record) => record.id === id);
  const storeKeyId = (req: Request, how: string): string => {
    const id = req.params.id as string;
    if (isConfigKey(id))
      throw new ApiError('invalid_request', `The key "${id}" comes from the config file: ${how}.`, { param: 'id' });
    return id;
  };
  const keys: AdminKeys = { keyProblems, configRecords, store, isConfigKey, storeKeyId };
  const router = express.Router();
  router.get('/', asyncRoute(listKeysRoute(keys)));
  router.post('/', asyncRoute(createKeyRoute(keys)));
  router.patch('/:id', asyncRoute(changeKeyBudgetRoute(keys)));
  router.post('/:id/revoke', asyncRoute(revokeKeyRoute(keys)));
  router.post('/:id/rotate', asyncRoute(rotateKeyRoute(keys)));
  return router;
}
