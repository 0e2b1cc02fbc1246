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
import { changeKey } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord, KeyStore } from '@tollgate/core/store-contracts';
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

/** What a rotation's body may give: the options of `tollgate keys rotate`. */
const ROTATION_FIELDS = ['grace', 'expires', 'id'];

export function adminKeysRouter(
  keyProblems: AuthOptions['keyProblems'],
  configRecords: () => readonly ApiKeyRecord[],
  store: KeyStore,
): Router {
  const router = express.Router();
  const isConfigKey = (id: string) => configRecords().some((record) => record.id === id);
  /** The route's key id, when it names a key of the store: a config file's key is changed in its file (`how`). */
  const storeKeyId = (req: Request, how: string): string => {
    const id = req.params.id as string;
    if (isConfigKey(id))
      throw new ApiError('invalid_request', `The key "${id}" comes from the config file: ${how}.`, { param: 'id' });
    return id;
  };

  router.get(
    '/',
    asyncRoute(async function listKeys(_req: Request, res: Response) {
      const stored = await store.list();
      // A tenant-scoped operator sees its own tenants' keys only (docs/operators.md).
      const visible = visibleTenants(res);
      const shown = (record: ApiKeyRecord) =>
        visible === undefined || (record.tenantId !== undefined && visible.includes(record.tenantId));
      res.json({
        keys: [
          ...configRecords()
            .filter(shown)
            .map((record) => publicRecord(record, 'config')),
          ...stored.filter(shown).map((record) => publicRecord(record, 'store')),
        ],
      });
    }),
  );

  router.post(
    '/',
    asyncRoute(async function createKey(req: Request, res: Response) {
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
      // The rule the config's own keys pass at start, with its did-you-mean (the first problem names its field).
      const budget = fields.budget;
      const [problem] = keyProblems({ tenant: tenantId, tier, tools, budget }, 'body');
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
      if (models !== undefined) record.models = models;
      if (tools !== undefined) record.tools = tools;
      // Part of the key: every process serving it counts it from its first request.
      if (budget !== undefined) record.budget = budget;
      await store.put(record);
      noteAudit(req, res, { before: null, after: publicRecord(record, 'store') });
      // The only time the key exists outside the client: it is not stored, only its hash.
      res.status(201).json({ key, record: publicRecord(record, 'store') });
    }),
  );

  // `{ "budget": {...} | [...] | null }`: the key's budget set or taken away, in one atomic store call (a revoke
  // meanwhile stays); the period's spend stays where it is.
  router.patch(
    '/:id',
    asyncRoute(async function changeKeyBudget(req: Request, res: Response) {
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
    }),
  );

  router.post(
    '/:id/revoke',
    asyncRoute(async function revokeKey(req: Request, res: Response) {
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
    }),
  );

  // `{ "grace"?, "expires"?, "id"? }`, the terms of `tollgate keys rotate`: the successor (its secret shown once)
  // continues the old key's budget and period's spend; one atomic store call, so a revoke meanwhile stays.
  router.post(
    '/:id/rotate',
    asyncRoute(async function rotateKey(req: Request, res: Response) {
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
    }),
  );

  return router;
}
