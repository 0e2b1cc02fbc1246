// /admin/tenants: tenants kept as data (list, search, create, change, delete, import NDJSON); see docs/tenants.md.
import express from 'express';
import type { Request, RequestHandler, Response, Router } from 'express';
import { ApiError } from '@tollgate/core';
import { noteAudit } from '@tollgate/core/audit';
import { asyncRoute } from '@tollgate/core/checks';
import type { TenantConfig } from './config/schema.js';
import { visibleTenants } from './operator-access.js';
import type { ServedTenant, TenantDirectory } from './tenant-directory.js';

/** A problem of a tenant's input, naming its field. */
export interface TenantProblem {
  message: string;
  param: string;
}

/** What the tenants of a gateway are made of: the config file's, and the rule a stored one passes. */
export interface TenantOptions {
  /** The config file's tenants: they win over stored tenants, and cannot be changed through the API. */
  config: Readonly<Record<string, TenantConfig>>;
  /** The config's schema for a tenant, a tier the gateway knows, no config-only field; `fields` when it passes. */
  problems(id: unknown, fields: unknown): { fields?: TenantConfig; problems: TenantProblem[] };
  /** The Redis the stores are on: changes are published there and every process subscribes. */
  redisUrl?: string | undefined;
}

/** What an import's body may hold: the largest body, and the most lines. */
const IMPORT_LIMIT = '5mb';
const IMPORT_MAX_LINES = 50_000;
const PAGE_DEFAULT = 50;
const PAGE_MAX = 1_000;

/** A tenant as operators see it. */
const shown = (tenant: ServedTenant) => ({
  id: tenant.id,
  source: tenant.source,
  ...tenant.fields,
  ...(tenant.updatedAt ? { updatedAt: tenant.updatedAt } : {}),
});

/** The same value, whatever the order of its object fields: an import line that changes nothing is `unchanged`. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null)
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}

function refusal(problems: readonly TenantProblem[]): ApiError {
  return new ApiError('invalid_request', problems.map((problem) => problem.message).join('; '), {
    param: problems[0]?.param ?? null,
  });
}

function bodyObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new ApiError('invalid_request', 'The body must be a JSON object.', { param: 'body' });
  return body as Record<string, unknown>;
}

/** What a write did: the tenant before and after it (undefined where there was or is none), for an audit line. */
interface TenantWrite {
  before: ServedTenant | undefined;
  after: ServedTenant | undefined;
}

/** The writes of the API, each computing what it changes: the routes and the import call them. */
function tenantWrites(options: TenantOptions, directory: TenantDirectory) {
  const configOwned = (id: string, how: string) =>
    new ApiError(
      'invalid_request',
      `The tenant "${id}" comes from the config file, which wins over stored tenants: ${how} there.`,
      { param: 'id', status: 409 },
    );
  return {
    /** `{ id, ...fields }` stored as a new tenant. */
    async createTenant(body: Record<string, unknown>): Promise<TenantWrite> {
      const { id, ...fields } = body;
      const { fields: tenant, problems } = options.problems(id, fields);
      if (!tenant) throw refusal(problems);
      const tenantId = id as string;
      if (directory.isConfigTenant(tenantId)) throw configOwned(tenantId, 'change it');
      if (directory.has(tenantId))
        throw new ApiError('invalid_request', `A tenant with id "${tenantId}" exists: PATCH it.`, {
          param: 'id',
          status: 409,
        });
      return { before: undefined, after: await directory.put(tenantId, tenant) };
    },
    /** The stored tenant with `changes` over its fields (`null` takes a field away), checked whole. */
    async changeTenant(id: string, changes: Record<string, unknown>): Promise<TenantWrite> {
      if (directory.isConfigTenant(id)) throw configOwned(id, 'change it');
      const before = directory.find(id);
      if (!before) throw new ApiError('not_found', `No tenant "${id}".`);
      if (changes.id !== undefined && changes.id !== id)
        throw new ApiError('invalid_request', `id cannot change (the route names "${id}").`, { param: 'id' });
      const merged: Record<string, unknown> = { ...before.fields };
      for (const [field, value] of Object.entries(changes)) {
        if (field === 'id') continue;
        if (value === null) delete merged[field];
        else merged[field] = value;
      }
      const { fields: tenant, problems } = options.problems(id, merged);
      if (!tenant) throw refusal(problems);
      return { before, after: await directory.put(id, tenant) };
    },
    async deleteTenant(id: string): Promise<TenantWrite> {
      if (directory.isConfigTenant(id)) throw configOwned(id, 'remove it');
      const before = directory.find(id);
      // A stored row this gateway does not serve (its tier gone from the config) is removed as well.
      if (!(await directory.remove(id))) throw new ApiError('not_found', `No tenant "${id}".`);
      return { before, after: undefined };
    },
    /** One import line's tenant: created, replaced whole, or left as it is when it holds the same fields. */
    async importTenant(body: Record<string, unknown>): Promise<TenantWrite & { outcome: string }> {
      const { id, ...fields } = body;
      const { fields: tenant, problems } = options.problems(id, fields);
      if (!tenant) throw refusal(problems);
      const tenantId = id as string;
      if (directory.isConfigTenant(tenantId)) throw configOwned(tenantId, 'change it');
      const before = directory.find(tenantId);
      if (before && canonical(before.fields) === canonical(tenant))
        return { outcome: 'unchanged', before, after: before };
      const after = await directory.put(tenantId, tenant);
      return { outcome: before ? 'updated' : 'created', before, after };
    },
  };
}

/** `cursor` (the last id of the page before), `limit` and `q` (a part of the id, any case) of a list. */
function pageOf(req: Request): { cursor: string; limit: number; q: string } {
  const single = (name: string) => {
    const value = req.query[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string')
      throw new ApiError('invalid_request', `${name} must be given once, as text.`, { param: name });
    return value;
  };
  const limitText = single('limit');
  const limit = limitText === undefined ? PAGE_DEFAULT : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > PAGE_MAX)
    throw new ApiError('invalid_request', `limit must be an integer from 1 to ${PAGE_MAX}; got "${limitText}".`, {
      param: 'limit',
    });
  return { cursor: single('cursor') ?? '', limit, q: (single('q') ?? '').toLowerCase() };
}

/** One NDJSON line's result. */
interface ImportLine {
  line: number;
  id?: string;
  outcome: 'created' | 'updated' | 'unchanged' | 'error';
  error?: string;
  param?: string | null;
}

export function adminTenantsRouter(options: TenantOptions, directory: TenantDirectory): Router {
  const router = express.Router();
  const writes = tenantWrites(options, directory);

  router.get('/', function listTenants(req: Request, res: Response) {
    const { cursor, limit, q } = pageOf(req);
    // A tenant-scoped operator sees its own tenants only (docs/operators.md).
    const visible = visibleTenants(res);
    const matching = directory
      .all()
      .filter((tenant) => tenant.id > cursor && tenant.id.toLowerCase().includes(q))
      .filter((tenant) => visible === undefined || visible.includes(tenant.id));
    const page = matching.slice(0, limit);
    res.json({
      tenants: page.map(shown),
      ...(matching.length > limit ? { nextCursor: page[page.length - 1]!.id } : {}),
    });
  });

  router.post(
    '/',
    asyncRoute(async function createTenant(req: Request, res: Response) {
      const id = (req.body as { id?: unknown } | undefined)?.id;
      noteAudit(req, res, { action: 'tenant.create', target: typeof id === 'string' ? `tenant:${id}` : 'tenant' });
      const { after } = await writes.createTenant(bodyObject(req.body));
      noteAudit(req, res, { target: `tenant:${after!.id}`, before: null, after: shown(after!) });
      res.status(201).json({ tenant: shown(after!) });
    }),
  );

  router.get('/:id', function showTenant(req: Request, res: Response) {
    const tenant = directory.find(req.params.id as string);
    if (!tenant) throw new ApiError('not_found', `No tenant "${req.params.id as string}".`);
    res.json({ tenant: shown(tenant) });
  });

  router.patch(
    '/:id',
    asyncRoute(async function changeTenant(req: Request, res: Response) {
      noteAudit(req, res, { action: 'tenant.change', target: `tenant:${req.params.id as string}` });
      const { before, after } = await writes.changeTenant(req.params.id as string, bodyObject(req.body));
      noteAudit(req, res, { before: before ? shown(before) : null, after: shown(after!) });
      res.json({ tenant: shown(after!) });
    }),
  );

  router.delete(
    '/:id',
    asyncRoute(async function deleteTenant(req: Request, res: Response) {
      const id = req.params.id as string;
      noteAudit(req, res, { action: 'tenant.delete', target: `tenant:${id}` });
      const { before } = await writes.deleteTenant(id);
      noteAudit(req, res, { before: before ? shown(before) : null, after: null });
      res.json({ deleted: id });
    }),
  );
  return router;
}

/**
 * `POST /admin/tenants:import`: NDJSON, one tenant a line, each written as `createTenant` would, or replaced whole
 * when it exists (`unchanged` when it holds the same fields). A bad line is reported with its number and does not
 * stop the others.
 */
export function importTenantsRoute(options: TenantOptions, directory: TenantDirectory): RequestHandler[] {
  const writes = tenantWrites(options, directory);
  const readText = express.text({ type: () => true, limit: IMPORT_LIMIT });
  const importTenants = asyncRoute(async function importTenants(req: Request, res: Response) {
    noteAudit(req, res, { action: 'tenant.import', target: 'tenants' });
    if (typeof req.body !== 'string')
      throw new ApiError('invalid_request', 'The body must be NDJSON (Content-Type: application/x-ndjson).', {
        param: 'body',
      });
    const lines = req.body.split('\n');
    if (lines.length > IMPORT_MAX_LINES)
      throw new ApiError('request_too_large', `An import holds at most ${IMPORT_MAX_LINES} lines.`, { status: 413 });
    const results: ImportLine[] = [];
    for (const [i, text] of lines.entries()) {
      if (text.trim() === '') continue;
      const line = i + 1;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        results.push({ line, outcome: 'error', error: `not JSON: ${(error as Error).message}`, param: null });
        continue;
      }
      try {
        const { outcome } = await writes.importTenant(bodyObject(value));
        results.push({ line, id: (value as { id: string }).id, outcome: outcome as ImportLine['outcome'] });
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        const id = (value as { id?: unknown }).id;
        results.push({
          line,
          ...(typeof id === 'string' ? { id } : {}),
          outcome: 'error',
          error: error.message,
          param: error.param,
        });
      }
    }
    const count = (outcome: ImportLine['outcome']) => results.filter((result) => result.outcome === outcome).length;
    // Each line's outcome: what the import changed, by tenant (its fields are on GET /admin/tenants/<id>).
    noteAudit(req, res, { before: null, after: { lines: results } });
    res.json({
      created: count('created'),
      updated: count('updated'),
      unchanged: count('unchanged'),
      errors: count('error'),
      lines: results,
    });
  });
  return [readText, importTenants];
}
