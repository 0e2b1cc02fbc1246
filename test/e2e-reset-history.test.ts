// A budget reset is history: a tenant spends its day's budget (429), an operator tops it up, resets it and tops it up
// again, one call is made; then a restart of a proxy with a data directory (PGlite), or Redis losing its data under a
// proxy with PostgreSQL, shows spent = the calls since the reset and credit = the top-up since it, and calls go on.
// Before, the rebuild read the day's ledger from its start: the whole day's spend came back, and 429.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import pg from 'pg';
import { createClient } from 'redis';
import { ledgerClient } from '../packages/metering/src/ledger-socket.js';
import type { Queryable } from '@tollgate/metering';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { newApiKey, sentUntilAnswered, sha256Hex, spawnProxy } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-reset-history-'));
const adminKey = newApiKey();
const apiKey = newApiKey();
const running: SpawnedProxy[] = [];
const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };

afterAll(async () => {
  await Promise.all(running.map((proxy) => proxy.stop()));
  rmSync(dir, { recursive: true, force: true });
});

/** A tenant budget of $0.0001 a day (a handful of calls), its key; the built-in mock provider. */
function configOf(extra: Record<string, unknown>): string {
  const file = path.join(dir, `config-${randomUUID()}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      ...extra,
      upstreams: { mock: { kind: 'mock' } },
      adminKeySha256: sha256Hex(adminKey),
      tenants: { acme: { budget: { usd: 0.0001, period: 'day' } } },
      keys: [{ id: 'acme-key', sha256: sha256Hex(apiKey), tenant: 'acme', scopes: [] }],
    }),
  );
  return file;
}

async function start(env: Record<string, string>): Promise<SpawnedProxy> {
  const proxy = await spawnProxy(env);
  running.push(proxy);
  return proxy;
}

/** One call's status: 200, 429 when the budget is spent, 503 while spend is rebuilt. */
async function call(proxy: SpawnedProxy): Promise<number> {
  const client = new OpenAI({ apiKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  try {
    await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'one more' }],
      max_tokens: 20,
    });
    return 200;
  } catch (error) {
    return (error as { status?: number }).status ?? 0;
  }
}

/** A call answered 200, sent again while it gets 503 (spend being rebuilt). */
async function paidCall(proxy: SpawnedProxy): Promise<void> {
  await sentUntilAnswered(async () => {
    const status = await call(proxy);
    if (status !== 200) throw new Error(`call answered ${status}`);
  });
}

async function post(proxy: SpawnedProxy, action: string, body?: unknown): Promise<void> {
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme/${action}`, {
    method: 'POST',
    headers: admin,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  expect(response.status).toBe(200);
}

interface Shown {
  spentNanoUsd: number;
  creditNanoUsd: number;
  reservedNanoUsd: number;
}

/** The tenant's budget as the admin API shows it, once nothing is held (a 503 while rebuilt is asked again). */
async function shown(proxy: SpawnedProxy): Promise<Shown> {
  return sentUntilAnswered(async () => {
    const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, { headers: admin });
    const body = (await response.json()) as { budgets?: Shown[] };
    const budget = body.budgets?.[0];
    if (response.status !== 200 || !budget || budget.reservedNanoUsd !== 0) throw new Error(JSON.stringify(body));
    return budget;
  });
}

/** Calls until the budget refuses: the day's spend is at its limit. */
async function spendItAll(proxy: SpawnedProxy): Promise<void> {
  for (let i = 0; i < 40; i++) if ((await call(proxy)) === 429) return;
  throw new Error('the budget never refused');
}

/** The ledger's spend of the calls that started from `since` (epoch ms), once `paid` such calls with a cost are in it. */
async function ledgerSpentSince(ledger: Queryable, table: string, since: number, paid: number): Promise<number> {
  return sentUntilAnswered(async () => {
    const { rows } = await ledger.query<{ n: string; spent: string }>(
      `SELECT count(*)::text AS n, coalesce(sum(cost_nano_usd), 0)::text AS spent FROM ${table}
        WHERE ts >= $1 AND cost_nano_usd > 0`,
      [new Date(since).toISOString()],
    );
    if (Number(rows[0]!.n) < paid) throw new Error(`${rows[0]!.n} paid calls of ${paid} in the ledger`);
    return Number(rows[0]!.spent);
  });
}

/** The day's budget spent, $0.00005 credited, reset, $0.00002 credited, then one call: resolves when the reset was made. */
async function spendResetAndCall(proxy: SpawnedProxy): Promise<number> {
  await spendItAll(proxy);
  await post(proxy, 'top-up', { usd: 0.00005 });
  const resetAt = Date.now();
  await post(proxy, 'reset');
  await post(proxy, 'top-up', { usd: 0.00002 });
  expect(await shown(proxy)).toMatchObject({ spentNanoUsd: 0, creditNanoUsd: 20_000 });
  await paidCall(proxy);
  return resetAt;
}

describe('a reset survives a restart of a proxy with a data directory', () => {
  it('shows the calls since the reset, not the whole day, after a clean stop and after a SIGKILL', async () => {
    const dataDir = path.join(dir, 'data');
    const env = { TOLLGATE_CONFIG: configOf({ dataDir }) };
    const ledger = ledgerClient(path.join(dataDir, 'ledger.sock'));
    const first = await start(env);
    const resetAt = await spendResetAndCall(first);
    const sinceReset = await ledgerSpentSince(ledger, 'tollgate_usage', resetAt, 1);
    expect(sinceReset).toBeGreaterThan(0);
    expect(await shown(first)).toMatchObject({ spentNanoUsd: sinceReset, creditNanoUsd: 20_000 });
    await first.stop();

    const second = await start(env);
    // Before: spent was the whole day's again (over the limit), and the next call got 429.
    expect(await shown(second)).toMatchObject({ spentNanoUsd: sinceReset, creditNanoUsd: 20_000 });
    expect(await call(second)).toBe(200);
    second.child.kill('SIGKILL');
    await new Promise((resolve) => second.child.once('exit', resolve));

    const third = await start(env);
    const twoCalls = await ledgerSpentSince(ledger, 'tollgate_usage', resetAt, 2);
    expect(await shown(third)).toMatchObject({ spentNanoUsd: twoCalls, creditNanoUsd: 20_000 });
    await third.stop();
  }, 180_000);
});

describe('a reset survives Redis losing its data, with PostgreSQL', () => {
  const table = `tg_reset_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  let redis: PrivateRedis | undefined;

  afterAll(async () => {
    await Promise.all(running.map((proxy) => proxy.stop()));
    await redis?.stop();
    await pool.query(
      `DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_credits", "${table}_audit"`,
    );
    await pool.query(`DROP FUNCTION IF EXISTS "${table}_audit_append_only"()`);
    await pool.end();
  });

  it('rebuilds the spend since the reset and the credit since it after FLUSHDB', async () => {
    redis = new PrivateRedis(await freePort());
    await redis.start();
    const config = configOf({ postgresUrl: POSTGRES_URL, postgresTable: table, redis: { blocks: false } });
    const proxy = await start({ TOLLGATE_CONFIG: config, REDIS_URL: redis.url });
    const resetAt = await spendResetAndCall(proxy);
    await paidCall(proxy);
    // Written by the sink within its second: both calls since the reset are in the ledger before Redis forgets.
    await ledgerSpentSince(pool, `"${table}"`, resetAt, 2);
    const client = createClient({ url: redis.url });
    await client.connect();
    await client.flushDb();
    await client.quit();
    // The next call is refused (503) until the spend is rebuilt, then answered: three calls since the reset.
    await paidCall(proxy);
    const sinceReset = await ledgerSpentSince(pool, `"${table}"`, resetAt, 3);
    expect(await shown(proxy)).toMatchObject({ spentNanoUsd: sinceReset, creditNanoUsd: 20_000 });
    expect(proxy.output()).toMatch(/Redis had lost budget spend; rebuilt/);
  }, 120_000);
});
