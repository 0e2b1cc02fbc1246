// Tenants kept as data through /admin/tenants: created while serving and called with the OpenAI SDK, a budget lowered
// and held from the next call, deleted and its keys refused, imported as NDJSON, listed page by page; kept across a
// restart in a data directory's PGlite and in PostgreSQL, and seen by a second process on one Redis within a second.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import pg from 'pg';
import { runCli } from '@tollgate/cli';
import type { GatewayConfig } from '@tollgate/gateway';
import { deleteRedisPrefix, newApiKey, REDIS_URL, sha256Hex, spawnProxy, startProxy } from './helpers/proxy.js';
import type { RunningProxy, SpawnedProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-tenants-admin-'));
const adminKey = newApiKey();
const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };

const TIERS = {
  pro: { requestsPerMinute: 600, models: ['*'] },
  free: { requestsPerMinute: 600, models: ['*'] },
};

function baseConfig(extra: Partial<GatewayConfig> = {}): GatewayConfig {
  return {
    upstreams: { mock: { kind: 'mock' } },
    adminKeySha256: sha256Hex(adminKey),
    tiers: TIERS,
    tenants: { acme: { tier: 'pro' } },
    ...extra,
  } as GatewayConfig;
}

interface Answer<T = Record<string, unknown>> {
  status: number;
  body: T;
}

async function send<T = Record<string, unknown>>(
  url: string,
  method: string,
  route: string,
  body?: unknown,
  headers: Record<string, string> = admin,
): Promise<Answer<T>> {
  const response = await fetch(`${url}${route}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as T };
}

type ErrorBody = { error: { message: string; code: string; param: string | null } };

/** A key for `tenant` made through /admin/keys: its secret. */
async function keyFor(url: string, tenant: string): Promise<string> {
  const created = await send<{ key: string }>(url, 'POST', '/admin/keys', { tenant, scopes: ['chat'] });
  expect(created.status).toBe(201);
  return created.body.key;
}

/** One chat call with the OpenAI SDK: 200, or the refusal's status and code. */
async function chat(url: string, key: string): Promise<{ status: number; code?: string }> {
  const client = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 });
  try {
    await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 16,
    });
    return { status: 200 };
  } catch (error) {
    if (!(error instanceof OpenAI.APIError)) throw error;
    return { status: error.status ?? 0, ...(error.code ? { code: error.code } : {}) };
  }
}

/** `tollgate ...` run in this process against the gateway at `url`: its exit code and output. */
async function tollgate(url: string, ...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  };
  const code = await runCli(argv, io, { ...process.env, TOLLGATE_ADMIN_KEY: adminKey, TOLLGATE_URL: url });
  return { code, stdout, stderr };
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('/admin/tenants on one gateway (a data directory: PGlite, memory stores)', () => {
  const dataDir = path.join(dir, 'data');
  let proxy: RunningProxy;

  beforeAll(async () => {
    proxy = await startProxy(baseConfig({ dataDir }));
    await proxy.app.spendReady();
  }, 60_000);

  afterAll(async () => proxy?.close());

  it('serves a tenant created while serving, holds a lowered budget from the next call, refuses it once deleted', async () => {
    const created = await send(proxy.url, 'POST', '/admin/tenants', {
      id: 'globex',
      tier: 'pro',
      budget: { usd: 50, period: 'day' },
      metadata: { plan: 'enterprise' },
    });
    expect(created.status).toBe(201);
    expect(created.body.tenant).toMatchObject({
      id: 'globex',
      source: 'store',
      tier: 'pro',
      metadata: { plan: 'enterprise' },
    });
    const key = await keyFor(proxy.url, 'globex');
    expect(await chat(proxy.url, key)).toEqual({ status: 200 });

    const lowered = await send(proxy.url, 'PATCH', '/admin/tenants/globex', {
      budget: { usd: 0.000001, period: 'day' },
    });
    expect(lowered.status).toBe(200);
    expect(lowered.body.tenant).toMatchObject({ budget: { usd: 0.000001, period: 'day' } });
    expect(await chat(proxy.url, key)).toEqual({ status: 429, code: 'insufficient_quota' });
    // The budget shows where operators read budgets, in the tenant's scope.
    const budgets = await send<{ budgets: { scope: string; id: string }[] }>(
      proxy.url,
      'GET',
      '/admin/budgets/tenant/globex',
    );
    expect(budgets.body.budgets).toEqual([expect.objectContaining({ scope: 'tenant', id: 'globex' })]);

    // Taking the budget away (null) serves it again.
    expect((await send(proxy.url, 'PATCH', '/admin/tenants/globex', { budget: null })).status).toBe(200);
    expect(await chat(proxy.url, key)).toEqual({ status: 200 });

    expect(await send(proxy.url, 'DELETE', '/admin/tenants/globex')).toEqual({
      status: 200,
      body: { deleted: 'globex' },
    });
    expect(await chat(proxy.url, key)).toEqual({ status: 401, code: 'invalid_api_key' });
    expect((await send(proxy.url, 'GET', '/admin/tenants/globex')).status).toBe(404);
    // Created again, its keys are served again.
    expect((await send(proxy.url, 'POST', '/admin/tenants', { id: 'globex', tier: 'free' })).status).toBe(201);
    expect(await chat(proxy.url, key)).toEqual({ status: 200 });
  });

  it('refuses bad input with a 4xx naming the field and the value', async () => {
    const unknownTier = await send<ErrorBody>(proxy.url, 'POST', '/admin/tenants', { id: 'initech', tier: 'gold' });
    expect(unknownTier.status).toBe(400);
    expect(unknownTier.body.error.param).toBe('tier');
    expect(unknownTier.body.error.message).toContain('"gold"');
    expect(unknownTier.body.error.message).toContain('known: pro, free');

    const badBudget = await send<ErrorBody>(proxy.url, 'POST', '/admin/tenants', {
      id: 'initech',
      tier: 'pro',
      budget: { usd: -1 },
    });
    expect(badBudget.status).toBe(400);
    expect(badBudget.body.error.param).toBe('budget');
    expect(badBudget.body.error.message).toContain('budget.usd');

    const unknownField = await send<ErrorBody>(proxy.url, 'POST', '/admin/tenants', {
      id: 'initech',
      tier: 'pro',
      teir: 1,
    });
    expect(unknownField.status).toBe(400);
    expect(unknownField.body.error.message).toContain('"teir"');

    const badId = await send<ErrorBody>(proxy.url, 'POST', '/admin/tenants', { id: 'a b', tier: 'pro' });
    expect(badId).toMatchObject({ status: 400, body: { error: { param: 'id' } } });
    expect(badId.body.error.message).toContain('"a b"');

    const configOnly = await send<ErrorBody>(proxy.url, 'POST', '/admin/tenants', {
      id: 'initech',
      tier: 'pro',
      tools: ['search/*'],
    });
    expect(configOnly).toMatchObject({ status: 400, body: { error: { param: 'tools' } } });

    // The config file's tenant wins: the API names why it will not touch it.
    const configTenant = await send<ErrorBody>(proxy.url, 'POST', '/admin/tenants', { id: 'acme', tier: 'free' });
    expect(configTenant.status).toBe(409);
    expect(configTenant.body.error.message).toContain('config file');
    expect((await send(proxy.url, 'PATCH', '/admin/tenants/acme', { tier: 'free' })).status).toBe(409);
    expect((await send(proxy.url, 'DELETE', '/admin/tenants/acme')).status).toBe(409);
    expect((await send(proxy.url, 'GET', '/admin/tenants/acme')).body.tenant).toMatchObject({ source: 'config' });

    expect((await send(proxy.url, 'POST', '/admin/tenants', 'not json')).status).toBe(400);
    expect((await send(proxy.url, 'PATCH', '/admin/tenants/nobody', { tier: 'pro' })).status).toBe(404);
    expect((await send(proxy.url, 'GET', '/admin/tenants?limit=0')).status).toBe(400);
    // Without the admin key: nothing.
    expect((await send(proxy.url, 'GET', '/admin/tenants', undefined, {})).status).toBe(401);
  });

  it('imports 1,000 tenants as NDJSON idempotently, reports bad lines by number, lists them page by page', async () => {
    const lines = Array.from({ length: 1000 }, (_, i) =>
      JSON.stringify({
        id: `bulk-${String(i).padStart(4, '0')}`,
        tier: i % 2 ? 'pro' : 'free',
        budget: { usd: 10 + i },
      }),
    );
    const ndjson = { ...admin, 'content-type': 'application/x-ndjson' };
    const first = await send(proxy.url, 'POST', '/admin/tenants:import', lines.join('\n'), ndjson);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ created: 1000, updated: 0, unchanged: 0, errors: 0 });
    const second = await send(proxy.url, 'POST', '/admin/tenants:import', `${lines.join('\n')}\n`, ndjson);
    expect(second.body).toMatchObject({ created: 0, updated: 0, unchanged: 1000, errors: 0 });

    const mixed = [
      JSON.stringify({ id: 'bulk-0001', tier: 'free', budget: { usd: 11 } }),
      '{"id": "broken",',
      JSON.stringify({ id: 'bulk-new', tier: 'pro' }),
      JSON.stringify({ id: 'bulk-bad-tier', tier: 'platinum' }),
      '[1, 2]',
      JSON.stringify({ id: 'acme', tier: 'pro' }),
    ].join('\n');
    const report = await send<{ lines: { line: number; outcome: string; id?: string; param?: string }[] }>(
      proxy.url,
      'POST',
      '/admin/tenants:import',
      mixed,
      ndjson,
    );
    expect(report.status).toBe(200);
    expect(report.body).toMatchObject({ created: 1, updated: 1, unchanged: 0, errors: 4 });
    expect(report.body.lines.map(({ line, outcome }) => [line, outcome])).toEqual([
      [1, 'updated'],
      [2, 'error'],
      [3, 'created'],
      [4, 'error'],
      [5, 'error'],
      [6, 'error'],
    ]);
    expect(report.body.lines[3]).toMatchObject({ id: 'bulk-bad-tier', param: 'tier' });

    // Too large a body: refused whole, nothing written.
    const huge = `${JSON.stringify({ id: 'x', tier: 'pro', metadata: { note: 'y'.repeat(200) } })}\n`.repeat(30_000);
    const tooLarge = await fetch(`${proxy.url}/admin/tenants:import`, { method: 'POST', headers: ndjson, body: huge });
    expect(tooLarge.status).toBe(413);

    // Pages of 300 by id, each after the last id of the one before.
    const seen: string[] = [];
    let cursor = '';
    for (;;) {
      const page = await send<{ tenants: { id: string }[]; nextCursor?: string }>(
        proxy.url,
        'GET',
        `/admin/tenants?q=bulk-&limit=300${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(page.status).toBe(200);
      seen.push(...page.body.tenants.map((tenant) => tenant.id));
      if (!page.body.nextCursor) break;
      cursor = page.body.nextCursor;
    }
    expect(seen).toHaveLength(1001);
    expect(new Set(seen).size).toBe(1001);
    expect([...seen].sort()).toEqual(seen);
    const found = await send<{ tenants: { id: string }[] }>(proxy.url, 'GET', '/admin/tenants?q=0999');
    expect(found.body.tenants.map((tenant) => tenant.id)).toEqual(['bulk-0999']);
    const everyone = await send<{ tenants: { id: string; source: string }[] }>(
      proxy.url,
      'GET',
      '/admin/tenants?limit=1',
    );
    expect(everyone.body.tenants).toEqual([expect.objectContaining({ id: 'acme', source: 'config' })]);
  }, 60_000);

  it('is driven by `tollgate tenants` through the admin API', async () => {
    const created = await tollgate(
      proxy.url,
      'tenants',
      'create',
      'umbrella',
      '--tier',
      'pro',
      '--json-fields',
      '{"budget": {"usd": 7}}',
    );
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(created.stdout)).toMatchObject({
      id: 'umbrella',
      tier: 'pro',
      budget: { usd: 7, period: 'month' },
    });
    const updated = await tollgate(proxy.url, 'tenants', 'update', 'umbrella', '--json-fields', '{"budget": null}');
    expect(updated.code).toBe(0);
    expect(JSON.parse(updated.stdout)).not.toHaveProperty('budget');
    const listed = await tollgate(proxy.url, 'tenants', 'list', '--q', 'umbrel', '--format', 'json');
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({ id: 'umbrella', source: 'store', tier: 'pro' }),
    ]);
    expect(JSON.parse((await tollgate(proxy.url, 'tenants', 'get', 'umbrella')).stdout)).toMatchObject({
      id: 'umbrella',
    });

    const file = path.join(dir, 'tenants.ndjson');
    writeFileSync(file, `${JSON.stringify({ id: 'umbrella', tier: 'free' })}\n{oops\n`);
    const imported = await tollgate(proxy.url, 'tenants', 'import', file);
    expect(imported.code).toBe(1);
    expect(imported.stdout).toBe('0 created, 1 updated, 0 unchanged, 1 refused\n');
    expect(imported.stderr).toContain('line 2: not JSON');

    const refused = await tollgate(proxy.url, 'tenants', 'create', 'x', '--tier', 'gold');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('400');
    expect(refused.stderr).toContain('"gold"');
    expect((await tollgate(proxy.url, 'tenants', 'delete', 'umbrella')).stdout).toBe('deleted umbrella\n');
    expect((await tollgate(proxy.url, 'tenants', 'frob')).code).toBe(2);
  });

  it('keeps the tenants and their keys across a restart', async () => {
    await proxy.close();
    proxy = await startProxy(baseConfig({ dataDir }));
    await proxy.app.spendReady();
    const kept = await send(proxy.url, 'GET', '/admin/tenants/bulk-0500');
    expect(kept.body.tenant).toMatchObject({ id: 'bulk-0500', tier: 'free', budget: { usd: 510, period: 'month' } });
    const listed = await send<{ tenants: unknown[] }>(proxy.url, 'GET', '/admin/tenants?q=bulk-&limit=1000');
    expect(listed.body.tenants).toHaveLength(1000);
    const key = await keyFor(proxy.url, 'bulk-0500');
    expect(await chat(proxy.url, key)).toEqual({ status: 200 });

    // Started on a config without the tier some stored tenants name: those are not served (said once), the rest are.
    await proxy.close();
    const lines: string[] = [];
    proxy = await startProxy(baseConfig({ dataDir, tiers: { pro: TIERS.pro } }), { log: (line) => lines.push(line) });
    await proxy.app.spendReady();
    expect((await send(proxy.url, 'GET', '/admin/tenants/bulk-0500')).status).toBe(404);
    expect(await chat(proxy.url, key)).toEqual({ status: 401, code: 'invalid_api_key' });
    expect((await send(proxy.url, 'GET', '/admin/tenants/bulk-0501')).status).toBe(200);
    expect(lines.filter((line) => line.includes('"bulk-0500" is not served'))).toHaveLength(1);
  }, 60_000);
});

describe('/admin/tenants on two gateway processes (PostgreSQL, one Redis)', () => {
  const schema = `tg_tenants_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const prefix = `tg-test:tenants:${randomUUID()}:`;
  const db = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  const running: SpawnedProxy[] = [];
  let configPath: string;

  const start = async () => {
    const proxy = await spawnProxy({ TOLLGATE_CONFIG: configPath, REDIS_URL, TOLLGATE_DATA_DIR: '' });
    running.push(proxy);
    return proxy;
  };

  beforeAll(() => {
    configPath = path.join(dir, 'processes.json');
    const config = baseConfig({ postgresUrl: POSTGRES_URL, postgresSchema: schema, redisPrefix: prefix });
    writeFileSync(configPath, JSON.stringify(config));
  });

  afterAll(async () => {
    await Promise.all(running.map((proxy) => proxy.stop()));
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await db.end();
    await deleteRedisPrefix(prefix);
  });

  it('serves on one process a tenant created on the other within a second, and keeps it across a restart', async () => {
    const [one, two] = await Promise.all([start(), start()]);
    const created = await send(one!.url, 'POST', '/admin/tenants', { id: 'hooli', tier: 'pro' });
    expect(created.status).toBe(201);
    const createdAt = Date.now();
    const key = await keyFor(one!.url, 'hooli');
    // The other process: served as soon as the change arrived.
    let answer = await chat(two!.url, key);
    while (answer.status !== 200 && Date.now() - createdAt < 1000) answer = await chat(two!.url, key);
    expect(answer).toEqual({ status: 200 });
    expect(Date.now() - createdAt).toBeLessThan(1000);

    // A budget lowered on the second is held by the first from its next call.
    expect((await send(two!.url, 'PATCH', '/admin/tenants/hooli', { budget: { usd: 0.000001 } })).status).toBe(200);
    const patchedAt = Date.now();
    answer = await chat(one!.url, key);
    while (answer.status === 200 && Date.now() - patchedAt < 1000) answer = await chat(one!.url, key);
    expect(answer).toEqual({ status: 429, code: 'insufficient_quota' });

    // Deleted on the first, refused by the second.
    expect((await send(one!.url, 'DELETE', '/admin/tenants/hooli')).status).toBe(200);
    const deletedAt = Date.now();
    answer = await chat(two!.url, key);
    while (answer.status !== 401 && Date.now() - deletedAt < 1000) answer = await chat(two!.url, key);
    expect(answer).toEqual({ status: 401, code: 'invalid_api_key' });

    expect((await send(one!.url, 'POST', '/admin/tenants', { id: 'kept', tier: 'free' })).status).toBe(201);
    const rows = await db.query<{ id: string }>(`SELECT id FROM "${schema}"."tollgate_usage_tenants"`);
    expect(rows.rows.map((row) => row.id)).toEqual(['kept']);
    await Promise.all([one!.stop(), two!.stop()]);
    const again = await start();
    expect((await send(again.url, 'GET', '/admin/tenants/kept')).body.tenant).toMatchObject({
      id: 'kept',
      tier: 'free',
    });
  }, 180_000);
});
