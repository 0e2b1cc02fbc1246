// Top-ups outlive the store that lost them: $2 credited to a $1 tenant budget (and $0.50 to an end user's, through
// the dashboard) with $0.25 spent, then Redis is flushed (a failover to an empty replica) or a proxy on memory stores
// with a data directory is restarted (cleanly, then killed): after the rebuild every scope (tenant, key, end user,
// model) shows spent = the usage ledger's own sum, credit = what was added, remaining = limit + credit - spent - held,
// in the admin API and the dashboard's JSON. Before, the credit was kept in the store only and came back as $0.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import pg from 'pg';
import { createClient } from 'redis';
import { migrateUsageLedger } from '@tollgate/metering';
import { insertUsageRecords } from '../packages/metering/src/postgres-ledger.js';
import { ledgerClient } from '../packages/metering/src/ledger-socket.js';
import type { Queryable } from '@tollgate/metering';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { sampleRecord } from '../packages/metering/test/sample-record.js';
import { MOCK_UPSTREAMS, newApiKey, sentUntilAnswered, sha256Hex, spawnProxy } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-credit-loss-'));
const adminKey = newApiKey();
const apiKey = newApiKey();
const running: SpawnedProxy[] = [];

afterAll(async () => {
  await Promise.all(running.map((proxy) => proxy.stop()));
  rmSync(dir, { recursive: true, force: true });
});

/** A $1 tenant budget, its key's, its end users' and a model's, all per day; the built-in mock provider. */
function configOf(extra: Record<string, unknown>): string {
  const file = path.join(dir, `config-${randomUUID()}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      upstreams: MOCK_UPSTREAMS,
      ...extra,
      adminKeySha256: sha256Hex(adminKey),
      tenants: {
        acme: {
          budget: { usd: 1, period: 'day' },
          userBudget: { usd: 0.5, period: 'day' },
          modelBudgets: { 'gpt-4o-mini': { usd: 0.75, period: 'day' } },
        },
      },
      keys: [
        {
          id: 'acme-key',
          sha256: sha256Hex(apiKey),
          tenant: 'acme',
          user: 'bob',
          scopes: [],
          budget: { usd: 2, period: 'day' },
        },
      ],
    }),
  );
  return file;
}

async function start(env: Record<string, string>): Promise<SpawnedProxy> {
  const proxy = await spawnProxy(env);
  running.push(proxy);
  return proxy;
}

interface Shown {
  scope: string;
  id: string | null;
  limitNanoUsd: number;
  spentNanoUsd: number;
  creditNanoUsd: number;
  reservedNanoUsd: number;
  remainingNanoUsd: number;
}

/** Each scope: its admin path, the ledger rows it counts, the credit given to it. */
const SCOPES = {
  tenant: { path: 'tenant/acme', where: "tenant_id = 'acme'", credit: 2_000_000_000 },
  key: { path: 'key/acme-key', where: "key_id = 'acme-key'", credit: 0 },
  user: { path: 'user/bob?tenant=acme', where: "tenant_id = 'acme' AND user_id = 'bob'", credit: 500_000_000 },
  model: { path: 'model/gpt-4o-mini?tenant=acme', where: "tenant_id = 'acme' AND model = 'gpt-4o-mini'", credit: 0 },
} as const;
type ScopeName = keyof typeof SCOPES;

const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };

/** A GET as the operator; a read refused while the store comes back (503) is asked again. */
async function read<T>(url: string): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(url, { headers: admin });
    if (response.status === 200) return (await response.json()) as T;
    if (attempt > 100) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
    await sleep(100);
  }
}

/** What an operator sees of each scope, in the admin API and the dashboard's JSON, beside the ledger's own sum. */
async function views(proxy: SpawnedProxy, ledger: Queryable) {
  const out = {} as Record<ScopeName, { admin: Shown; ledger: number }>;
  for (const [name, scope] of Object.entries(SCOPES) as [ScopeName, (typeof SCOPES)[ScopeName]][]) {
    const { budgets } = await read<{ budgets: Shown[] }>(`${proxy.url}/admin/budgets/${scope.path}`);
    const { rows } = await ledger.query<{ spent: string }>(
      `SELECT coalesce(sum(cost_nano_usd), 0)::text AS spent FROM ${ledgerTable} WHERE ${scope.where}`,
    );
    out[name] = { admin: budgets[0]!, ledger: Number(rows[0]!.spent) };
  }
  const tenantPage = await read<{ budgets: Shown[] }>(`${proxy.url}/dashboard/api/tenants/acme`);
  const overview = await read<{ tenants: { id: string; budget: Shown }[] }>(`${proxy.url}/dashboard/api/overview`);
  return {
    scopes: out,
    dashboard: {
      tenant: tenantPage.budgets.find((b) => b.scope === 'tenant'),
      user: tenantPage.budgets.find((b) => b.scope === 'user' && b.id === 'bob'),
      overview: overview.tenants.find((row) => row.id === 'acme')?.budget,
    },
  };
}
let ledgerTable = 'tollgate_usage';

/** The figures each scope must show: the ledger's spend, the credit given, limit + credit - spent - held. */
function expected(limit: number, spent: number, credit: number) {
  return {
    limitNanoUsd: limit,
    spentNanoUsd: spent,
    creditNanoUsd: credit,
    reservedNanoUsd: 0,
    remainingNanoUsd: Math.max(0, limit + credit - spent),
  };
}

/** Once every record is written and nothing is held (or 20 s passed): every view against the ledger. */
async function expectEveryScopeAtTheLedger(proxy: SpawnedProxy, ledger: Queryable, records: number) {
  const settled = (view: Awaited<ReturnType<typeof views>>) =>
    Object.values(view.scopes).every((s) => s.admin.reservedNanoUsd === 0 && s.admin.spentNanoUsd === s.ledger);
  const count = async () =>
    Number((await ledger.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ledgerTable}`)).rows[0]!.n);
  let view = await views(proxy, ledger);
  for (let i = 0; i < 100 && !(settled(view) && (await count()) >= records); i++) {
    await sleep(200);
    view = await views(proxy, ledger);
  }
  for (const [name, scope] of Object.entries(view.scopes) as [ScopeName, (typeof view.scopes)[ScopeName]][]) {
    const want = expected(scope.admin.limitNanoUsd, scope.ledger, SCOPES[name].credit);
    expect({ ...scope.admin, name }).toMatchObject({ ...want, name });
  }
  expect(view.scopes.tenant.ledger).toBeGreaterThan(0);
  const tenant = view.scopes.tenant;
  const user = view.scopes.user;
  expect(view.dashboard.tenant).toMatchObject(expected(1_000_000_000, tenant.ledger, 2_000_000_000));
  expect(view.dashboard.overview).toMatchObject(expected(1_000_000_000, tenant.ledger, 2_000_000_000));
  expect(view.dashboard.user).toMatchObject(expected(500_000_000, user.ledger, 500_000_000));
  return view;
}

/** `count` calls through the OpenAI SDK as bob; a call refused while the spend is rebuilt (503) is sent again. */
async function calls(proxy: SpawnedProxy, count: number): Promise<void> {
  const client = new OpenAI({ apiKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  for (let i = 0; i < count; i++) {
    await sentUntilAnswered(() =>
      client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: `call ${i}` }],
        max_tokens: 20,
      }),
    );
  }
}

/** $2 to the tenant through the admin API, $0.50 to its end user bob through the dashboard. */
async function topUp(proxy: SpawnedProxy): Promise<void> {
  const tenant = await fetch(`${proxy.url}/admin/budgets/tenant/acme/top-up`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ usd: 2 }),
  });
  expect(tenant.status).toBe(200);
  const user = await fetch(`${proxy.url}/dashboard/api/budgets/user/bob/top-up?tenant=acme`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ usd: 0.5 }),
  });
  expect(user.status).toBe(200);
}

describe('credit after Redis loses its data', () => {
  const table = `tg_credit_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  let redis: PrivateRedis;
  let proxy: SpawnedProxy;

  beforeAll(async () => {
    ledgerTable = `"${table}"`;
    redis = new PrivateRedis(await freePort());
    await redis.start();
    // $0.25 spent earlier today by bob on gpt-4o-mini: in the usage ledger, read by the proxy's first rebuild.
    await migrateUsageLedger(pool, { table });
    const spent = sampleRecord({
      id: `earlier-${randomUUID()}`,
      timestamp: new Date(Date.now() - 120_000).toISOString(),
      keyId: 'acme-key',
      userId: 'bob',
      feature: undefined,
      model: 'gpt-4o-mini',
      requestedModel: 'gpt-4o-mini',
      costNanoUsd: 250_000_000,
    });
    await insertUsageRecords(pool, [spent], { table });
    const config = configOf({ postgresUrl: POSTGRES_URL, postgresTable: table, redis: { blocks: false } });
    proxy = await start({ TOLLGATE_CONFIG: config, REDIS_URL: redis.url });
  }, 60_000);

  afterAll(async () => {
    await proxy?.stop();
    await redis?.stop();
    await pool.query(
      `DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_credits", "${table}_audit"`,
    );
    await pool.query(`DROP FUNCTION IF EXISTS "${table}_audit_append_only"()`);
    await pool.end();
  });

  it('shows every scope at the ledger with the credit given, after FLUSHALL and the rebuild', async () => {
    await calls(proxy, 3);
    await topUp(proxy);
    const before = await expectEveryScopeAtTheLedger(proxy, pool, 4);
    expect(before.scopes.tenant.admin.spentNanoUsd).toBeGreaterThanOrEqual(250_000_000);
    // A failover to an empty replica: Redis forgets spend and credit at once.
    const client = createClient({ url: redis.url });
    await client.connect();
    await client.flushAll();
    await client.quit();
    // Calls go on (refused with 503 until the rebuild, then sent again).
    await calls(proxy, 2);
    await expectEveryScopeAtTheLedger(proxy, pool, 6);
    expect(proxy.output()).toMatch(
      /Redis had lost budget spend; rebuilt \d+ of \d+ budget scope\(s\)[^\n]*credit of 2 scope\(s\) raised to the credit journal/,
    );
  }, 120_000);
});

describe('credit of memory stores with a data directory, across restarts', () => {
  it('shows every scope at the ledger with the credit given, after a clean stop and after a SIGKILL', async () => {
    ledgerTable = 'tollgate_usage';
    const dataDir = path.join(dir, 'data');
    const env = { TOLLGATE_CONFIG: configOf({ dataDir }) };
    const ledger = ledgerClient(path.join(dataDir, 'ledger.sock'));
    const first = await start(env);
    await calls(first, 3);
    await topUp(first);
    await expectEveryScopeAtTheLedger(first, ledger, 3);
    await first.stop();

    const second = await start(env);
    await expectEveryScopeAtTheLedger(second, ledger, 3);
    await calls(second, 2);
    await expectEveryScopeAtTheLedger(second, ledger, 5);
    second.child.kill('SIGKILL');
    await new Promise((resolve) => second.child.once('exit', resolve));

    const third = await start(env);
    await expectEveryScopeAtTheLedger(third, ledger, 5);
    await third.stop();
  }, 180_000);
});
