// A key's budget is part of the key, live: a key rotated by `tollgate keys rotate` or POST /admin/keys/<id>/rotate
// continues its predecessor's budget and period's spend; a key created through POST /admin/keys with a budget, or given
// another one by PATCH, is held to it at once by every gateway process on one Redis; real processes, started as
// `pnpm start` starts them.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { runCli } from '@tollgate/cli';
import { deleteRedisPrefix, newApiKey, REDIS_URL, sha256Hex, spawnProxy, waitFor } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-key-budgets-'));
const prefix = `tg-test:${randomUUID()}:`;
const running: SpawnedProxy[] = [];
const adminKey = newApiKey();
const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };
/** The figure: about two calls of the built-in mock a day. */
const TINY_BUDGET = { usd: 0.00003, period: 'day' };

afterAll(async () => {
  await Promise.all(running.map((proxy) => proxy.stop()));
  rmSync(dir, { recursive: true, force: true });
  await deleteRedisPrefix(prefix);
});

async function start(env: Record<string, string>): Promise<SpawnedProxy> {
  const proxy = await spawnProxy({ REDIS_URL: '', TOLLGATE_DATA_DIR: '', ...env });
  running.push(proxy);
  return proxy;
}

function writeConfig(name: string, extra: Record<string, unknown>): string {
  const file = path.join(dir, name);
  const config = {
    upstreams: { mock: { kind: 'mock' } },
    adminKeySha256: sha256Hex(adminKey),
    tiers: { pro: { requestsPerMinute: 600, models: ['*'] } },
    tenants: { acme: { tier: 'pro' } },
    ...extra,
  };
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  return file;
}

/** One chat call with `key`: its status and error code. */
async function call(proxy: SpawnedProxy, key: string): Promise<{ status: number; code?: string }> {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 16 }),
  });
  const body = (await response.json()) as { error?: { code?: string } };
  return { status: response.status, ...(body.error?.code ? { code: body.error.code } : {}) };
}

/** Calls until the budget refuses (at most `max` calls); the number of calls served. */
async function spendUntilRefused(proxies: SpawnedProxy[], key: string, max = 20): Promise<number> {
  for (let served = 0; served < max; served++) {
    const answer = await call(proxies[served % proxies.length]!, key);
    if (answer.status === 429) {
      expect(answer.code).toBe('insufficient_quota');
      return served;
    }
    expect(answer.status).toBe(200);
  }
  throw new Error(`the key was served ${max} calls: no budget held it`);
}

interface BudgetStatus {
  scope: string;
  id: string;
  limitNanoUsd: number;
  spentNanoUsd: number;
  reservedNanoUsd: number;
}

async function keyBudget(proxy: SpawnedProxy, id: string): Promise<{ status: number; budgets: BudgetStatus[] }> {
  const response = await fetch(`${proxy.url}/admin/budgets/key/${id}`, { headers: admin });
  const body = (await response.json()) as { budgets?: BudgetStatus[] };
  return { status: response.status, budgets: body.budgets ?? [] };
}

async function tollgate(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  };
  const code = await runCli(argv, io, { ...process.env, TOLLGATE_CONFIG: '' });
  return { code, stdout, stderr };
}

describe('a key rotated by `tollgate keys rotate --config` (a gateway reading the file, memory stores)', () => {
  const key = newApiKey();
  let proxy: SpawnedProxy;
  let configPath: string;

  it('keeps its budget and the period spend: the new key is refused as the old one was', async () => {
    configPath = writeConfig('rotate.json', {
      keys: [{ id: 'acme-app', sha256: sha256Hex(key), tenant: 'acme', scopes: ['chat'], budget: TINY_BUDGET }],
    });
    proxy = await start({ TOLLGATE_CONFIG: configPath });
    const served = await spendUntilRefused([proxy], key);
    expect(served).toBeGreaterThan(0);
    const before = await keyBudget(proxy, 'acme-app');
    expect(before.budgets[0]!.spentNanoUsd).toBeGreaterThan(0);

    const rotated = await tollgate('keys', 'rotate', 'acme-app', '--config', configPath, '--id', 'acme-app-2');
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toContain(`pid ${proxy.child.pid}`);
    const newKey = /tgk_\S+/.exec(rotated.stdout)![0];

    // The same period's spend: refused at once, never a fresh budget.
    expect(await call(proxy, newKey)).toEqual({ status: 429, code: 'insufficient_quota' });
    const after = await keyBudget(proxy, 'acme-app-2');
    expect(after.status).toBe(200);
    expect(after.budgets).toHaveLength(1);
    expect(after.budgets[0]).toMatchObject({
      scope: 'key',
      id: 'acme-app',
      limitNanoUsd: 30_000,
      spentNanoUsd: before.budgets[0]!.spentNanoUsd,
    });
    // The operator's list shows it once: both keys count under the first one's id.
    const listed = (await (await fetch(`${proxy.url}/admin/budgets`, { headers: admin })).json()) as {
      budgets: BudgetStatus[];
    };
    expect(listed.budgets.filter((status) => status.scope === 'key').map((status) => status.id)).toEqual(['acme-app']);
  }, 120_000);

  it('a budget given to the key in the file counts from the next request, with the spend so far', async () => {
    const raised = await tollgate(
      'keys',
      'budget',
      'acme-app-2',
      '--config',
      configPath,
      '--budget',
      '{"usd":1,"period":"day"}',
    );
    expect(raised.code).toBe(0);
    const after = await keyBudget(proxy, 'acme-app-2');
    expect(after.budgets[0]).toMatchObject({ id: 'acme-app', limitNanoUsd: 1_000_000_000 });
    expect(after.budgets[0]!.spentNanoUsd).toBeGreaterThan(0);
  }, 60_000);
});

describe('keys made and changed through /admin/keys, two gateway processes on one Redis', () => {
  let a: SpawnedProxy;
  let b: SpawnedProxy;

  it('a key created with a budget is held to it at once by both processes', async () => {
    const configPath = writeConfig('redis.json', { redisPrefix: prefix, redis: { blocks: { maxAge: '1s' } } });
    [a, b] = await Promise.all([
      start({ TOLLGATE_CONFIG: configPath, REDIS_URL }),
      start({ TOLLGATE_CONFIG: configPath, REDIS_URL }),
    ]);
    const created = await fetch(`${a.url}/admin/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id: 'made-live', tenant: 'acme', scopes: ['chat'], budget: TINY_BUDGET }),
    });
    expect(created.status).toBe(201);
    const { key, record } = (await created.json()) as { key: string; record: { budget?: unknown } };
    expect(record.budget).toEqual(TINY_BUDGET);
    // Both processes see the budget before any call, and refuse once it is spent, whichever served the calls.
    for (const proxy of [a, b])
      expect((await keyBudget(proxy, 'made-live')).budgets[0]).toMatchObject({ limitNanoUsd: 30_000, spentNanoUsd: 0 });
    const served = await spendUntilRefused([a, b], key);
    expect(served).toBeLessThan(6);
    for (const proxy of [a, b]) expect(await call(proxy, key)).toEqual({ status: 429, code: 'insufficient_quota' });
  }, 120_000);

  it('a budget a bad request gives is refused with a 400 naming the field, and nothing is stored', async () => {
    const refused = await fetch(`${a.url}/admin/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id: 'bad-budget', tenant: 'acme', budget: { usd: -1, period: 'day' } }),
    });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain('body.budget.usd');
    const keys = (await (await fetch(`${a.url}/admin/keys`, { headers: admin })).json()) as { keys: { id: string }[] };
    expect(keys.keys.map((listed) => listed.id)).not.toContain('bad-budget');
  }, 30_000);

  it('a budget changed on a live key counts at once in both processes, its spend kept', async () => {
    const created = await fetch(`${b.url}/admin/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id: 'changed-live', tenant: 'acme', scopes: ['chat'], budget: { usd: 1, period: 'day' } }),
    });
    const { key } = (await created.json()) as { key: string };
    for (const proxy of [a, b, a]) expect((await call(proxy, key)).status).toBe(200);
    const spent = await waitFor(async () => {
      const [status] = (await keyBudget(a, 'changed-live')).budgets;
      return status && status.reservedNanoUsd === 0 && status.spentNanoUsd > 0 ? status.spentNanoUsd : undefined;
    }, 'the calls to settle');
    // The limit cut to what was spent: nothing left.
    const changed = await fetch(`${a.url}/admin/keys/changed-live`, {
      method: 'PATCH',
      headers: admin,
      body: JSON.stringify({ budget: { usd: spent / 1e9, period: 'day' } }),
    });
    expect(changed.status).toBe(200);
    for (const proxy of [a, b]) {
      expect(await call(proxy, key)).toEqual({ status: 429, code: 'insufficient_quota' });
      expect((await keyBudget(proxy, 'changed-live')).budgets[0]).toMatchObject({
        limitNanoUsd: spent,
        spentNanoUsd: spent,
      });
    }
    // Taken away: served again, by both.
    const removed = await fetch(`${b.url}/admin/keys/changed-live`, {
      method: 'PATCH',
      headers: admin,
      body: JSON.stringify({ budget: null }),
    });
    expect(removed.status).toBe(200);
    for (const proxy of [a, b]) expect((await call(proxy, key)).status).toBe(200);
  }, 120_000);
});

describe('a key rotated through POST /admin/keys/<id>/rotate, two gateway processes on one Redis', () => {
  let a: SpawnedProxy;
  let b: SpawnedProxy;

  /** Creates a store key with the tiny budget through `proxy`; its secret. */
  async function createKey(proxy: SpawnedProxy, id: string, budget: unknown = TINY_BUDGET): Promise<string> {
    const created = await fetch(`${proxy.url}/admin/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id, tenant: 'acme', scopes: ['chat'], budget }),
    });
    expect(created.status).toBe(201);
    return ((await created.json()) as { key: string }).key;
  }

  async function rotate(proxy: SpawnedProxy, id: string, body?: unknown, headers: Record<string, string> = admin) {
    const response = await fetch(`${proxy.url}/admin/keys/${id}/rotate`, {
      method: 'POST',
      headers,
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    return {
      status: response.status,
      body: (await response.json()) as {
        key?: string;
        record?: { id: string; budgetOf?: string; budget?: unknown; disabled?: boolean };
        previous?: { id: string; disabled?: boolean; expiresAt?: string };
        error?: { code: string; param: string | null; message: string };
      },
    };
  }

  /** Calls with `key` (budget counted under `scope`), each settled before the next, until refused: the calls served. */
  async function spendSettled(proxies: SpawnedProxy[], key: string, scope: string): Promise<number> {
    for (let served = 0; ; served++) {
      const answer = await call(proxies[served % proxies.length]!, key);
      if (answer.status === 429) return served;
      expect(answer.status).toBe(200);
      await settled(proxies[0]!, scope);
    }
  }

  /** The spend of key budget `id` once nothing is held on it. */
  async function settled(proxy: SpawnedProxy, id: string): Promise<number> {
    return waitFor(async () => {
      const [status] = (await keyBudget(proxy, id)).budgets;
      return status && status.reservedNanoUsd === 0 ? status.spentNanoUsd : undefined;
    }, `the calls of ${id} to settle`);
  }

  async function storedKey(proxy: SpawnedProxy, id: string) {
    const listed = (await (await fetch(`${proxy.url}/admin/keys`, { headers: admin })).json()) as {
      keys: { id: string; disabled?: boolean; budgetOf?: string }[];
    };
    return listed.keys.find((key) => key.id === id);
  }

  it("the new key continues the old one's spend and is refused where the old one would be; the old key stops", async () => {
    const configPath = writeConfig('rotate-admin.json', { redisPrefix: prefix, redis: { blocks: { maxAge: '1s' } } });
    [a, b] = await Promise.all([
      start({ TOLLGATE_CONFIG: configPath, REDIS_URL }),
      start({ TOLLGATE_CONFIG: configPath, REDIS_URL }),
    ]);
    // What the budget serves when no key is rotated: the point the rotated key must be refused at too.
    const unrotated = await spendSettled([a, b], await createKey(a, 'never-rotated'), 'never-rotated');
    expect(unrotated).toBeGreaterThan(1);
    const spentUnrotated = await settled(a, 'never-rotated');

    const oldKey = await createKey(b, 'rotated-live');
    expect((await call(a, oldKey)).status).toBe(200);
    const spent = await settled(b, 'rotated-live');
    expect(spent).toBeGreaterThan(0);

    const rotated = await rotate(a, 'rotated-live', { grace: '0', id: 'rotated-live-2' });
    expect(rotated.status).toBe(201);
    expect(rotated.body.key).toMatch(/^tgk_/);
    expect(rotated.body.record).toMatchObject({ id: 'rotated-live-2', budgetOf: 'rotated-live', budget: TINY_BUDGET });
    expect(rotated.body.record).not.toHaveProperty('sha256');
    expect(rotated.body.previous).toMatchObject({ id: 'rotated-live', disabled: true });
    // Both processes, no restart: the old key refused at once, the new one counted under the old one's budget.
    for (const proxy of [a, b]) {
      expect((await call(proxy, oldKey)).status).toBe(401);
      expect((await keyBudget(proxy, 'rotated-live-2')).budgets[0]).toMatchObject({
        scope: 'key',
        id: 'rotated-live',
        limitNanoUsd: 30_000,
        spentNanoUsd: spent,
      });
    }
    expect(await spendSettled([b, a], rotated.body.key!, 'rotated-live-2')).toBe(unrotated - 1);
    for (const proxy of [a, b]) {
      expect(await call(proxy, rotated.body.key!)).toEqual({ status: 429, code: 'insufficient_quota' });
      expect(await settled(proxy, 'rotated-live-2')).toBe(spentUnrotated);
    }
  }, 120_000);

  it('with a grace the old key works on until the grace ends, counted in the same budget', async () => {
    const oldKey = await createKey(a, 'graced', { usd: 1, period: 'day' });
    const rotated = await rotate(b, 'graced', { grace: '3s' });
    expect(rotated.status).toBe(201);
    // The default id keeps the line of keys readable.
    expect(rotated.body.record!.id).toMatch(/^graced--[0-9a-f]{8}$/);
    expect(Date.parse(rotated.body.previous!.expiresAt!)).toBeGreaterThan(Date.now());
    for (const proxy of [a, b]) {
      expect((await call(proxy, oldKey)).status).toBe(200);
      expect((await call(proxy, rotated.body.key!)).status).toBe(200);
    }
    // Four calls, one budget: the old key's and the new key's views are the same scope.
    const spent = await settled(a, rotated.body.record!.id);
    expect((await keyBudget(b, rotated.body.record!.id)).budgets[0]).toMatchObject({
      id: 'graced',
      spentNanoUsd: spent,
    });
    expect(await settled(b, 'graced')).toBe(spent);
    await waitFor(
      async () => ((await call(a, oldKey)).status === 401 && (await call(b, oldKey)).status === 401 ? true : undefined),
      'the grace to end',
    );
    for (const proxy of [a, b]) expect((await call(proxy, rotated.body.key!)).status).toBe(200);
  }, 60_000);

  it('a revoke at the same time as a rotation is never undone', async () => {
    for (let round = 0; round < 6; round++) {
      const id = `raced-${round}`;
      const oldKey = await createKey(a, id, { usd: 1, period: 'day' });
      // The grace keeps the old key: only the revoke may stop it, whichever lands first.
      const [rotated, revoked] = await Promise.all([
        rotate(round % 2 ? a : b, id, { grace: 'keep' }),
        fetch(`${(round % 2 ? b : a).url}/admin/keys/${id}/revoke`, { method: 'POST', headers: admin }),
      ]);
      expect(revoked.status).toBe(200);
      expect((await storedKey(a, id))?.disabled).toBe(true);
      for (const proxy of [a, b]) expect((await call(proxy, oldKey)).status).toBe(401);
      if (rotated.status === 201) {
        for (const proxy of [a, b]) expect((await call(proxy, rotated.body.key!)).status).toBe(200);
      } else {
        expect(rotated).toMatchObject({ status: 409, body: { error: { code: 'invalid_request', param: 'id' } } });
      }
    }
  }, 60_000);

  it('bad requests get a clear 4xx and store nothing; without the admin key a 401', async () => {
    const oldKey = await createKey(a, 'asked-badly');
    const refusals: [unknown, number, string | null][] = [
      [{ grace: 5 }, 400, 'grace'],
      [{ grace: 'soon' }, 400, 'grace'],
      [{ expires: '2001-01-01' }, 400, 'expires'],
      [{ expires: ['30d'] }, 400, 'expires'],
      [{ id: '../x' }, 400, 'id'],
      [{ id: 'never-rotated' }, 409, 'id'],
      [{ graze: '1h' }, 400, 'graze'],
      [[], 400, 'body'],
      ['"0"', 400, 'body'],
    ];
    for (const [body, status, param] of refusals) {
      const refused = await rotate(a, 'asked-badly', body);
      expect({ body, status: refused.status, param: refused.body.error?.param }).toEqual({ body, status, param });
    }
    expect((await rotate(a, 'asked-badly', `{"id":"${'x'.repeat(2 * 1024 * 1024)}"}`)).status).toBe(413);
    expect((await rotate(a, 'nobody-has-this')).status).toBe(404);
    expect((await rotate(a, 'rotated-live')).body.error).toMatchObject({ code: 'invalid_request', param: 'id' });
    expect((await rotate(a, 'rotated-live')).status).toBe(409);
    expect((await rotate(a, 'asked-badly', {}, { 'content-type': 'application/json' })).status).toBe(401);
    const wrongAdmin = { authorization: `Bearer ${oldKey}`, 'content-type': 'application/json' };
    expect((await rotate(a, 'asked-badly', {}, wrongAdmin)).status).toBe(401);
    // Nothing rotated: the key works, no successor was stored.
    expect((await call(b, oldKey)).status).toBe(200);
    const listed = (await (await fetch(`${a.url}/admin/keys`, { headers: admin })).json()) as {
      keys: { id: string; budgetOf?: string }[];
    };
    expect(listed.keys.filter((key) => key.budgetOf === 'asked-badly')).toEqual([]);
  }, 60_000);
});
