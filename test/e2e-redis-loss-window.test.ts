// What a Redis loss costs: two spawned proxies on a private redis-server, blocks at their defaults (10 s), PostgreSQL as
// the usage ledger, calls going on from both; Redis forgets everything (FLUSHALL). Budgeted calls get 503 only until
// the scopes are rebuilt: at most 3 s from the first 503 to the last (before: 13 s and more, a block's age and a
// margin), and every budget then equals the ledger to the nano-USD.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { createClient } from 'redis';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { newApiKey, sentUntilAnswered, sha256Hex, spawnProxy } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const table = `tg_window_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-loss-window-'));
const adminKey = newApiKey();
const key = newApiKey();
const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
let redis: PrivateRedis;
let proxies: SpawnedProxy[] = [];

beforeAll(async () => {
  redis = new PrivateRedis(await freePort());
  await redis.start();
  const configPath = path.join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      postgresUrl: POSTGRES_URL,
      postgresTable: table,
      spool: path.join(dir, 'spool'),
      upstreams: { mock: { kind: 'mock' } },
      adminKeySha256: sha256Hex(adminKey),
      global: { budget: { usd: 100, period: 'day' } },
      tenants: { acme: { budget: { usd: 10, period: 'day' } } },
      keys: [{ id: 'acme-key', sha256: sha256Hex(key), tenant: 'acme', scopes: [] }],
    }),
  );
  const env = { TOLLGATE_CONFIG: configPath, REDIS_URL: redis.url };
  proxies = await Promise.all([spawnProxy(env), spawnProxy(env)]);
}, 90_000);

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  await redis?.stop();
  await pool.query(
    `DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_credits", "${table}_audit"`,
  );
  await pool.query(`DROP FUNCTION IF EXISTS "${table}_audit_append_only"()`);
  await pool.end();
  rmSync(dir, { recursive: true, force: true });
});

/** One call's status and when its answer came (epoch ms). */
async function call(proxy: SpawnedProxy, i: number): Promise<{ status: number; at: number }> {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `call ${i}` }], max_tokens: 20 }),
  });
  await response.arrayBuffer();
  return { status: response.status, at: Date.now() };
}

/** When the last 503 came (epoch ms; 0: none yet). */
let lastRefusal = 0;

/** Calls one after another on `proxy` until `stop()` says so; every answer's status and time. */
async function traffic(proxy: SpawnedProxy, stop: () => boolean): Promise<{ status: number; at: number }[]> {
  const answers: { status: number; at: number }[] = [];
  for (let i = 0; !stop(); i++) {
    const answer = await call(proxy, i);
    if (answer.status === 503) lastRefusal = answer.at;
    answers.push(answer);
    await sleep(20);
  }
  return answers;
}

/** A budget's spent and held as the admin API shows it. */
async function shown(scope: string): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
  return sentUntilAnswered(async () => {
    const response = await fetch(`${proxies[0]!.url}/admin/budgets/${scope}`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    const body = (await response.json()) as { budgets?: { spentNanoUsd: number; reservedNanoUsd: number }[] };
    if (response.status !== 200 || !body.budgets?.[0]) throw new Error(JSON.stringify(body));
    return body.budgets[0];
  });
}

describe('a Redis loss under two proxies with blocks at their defaults', () => {
  it('answers 503 for at most 3 s, then every budget equals the ledger', async () => {
    // Both proxies hand out from blocks when Redis forgets.
    for (let i = 0; i < 10; i++) for (const proxy of proxies) expect((await call(proxy, i)).status).toBe(200);
    let flushedAt = Infinity;
    // Until 4 s after the last refusal (or 30 s after the loss).
    const stop = () => Date.now() > flushedAt + 30_000 || (lastRefusal > 0 && Date.now() > lastRefusal + 4_000);
    const running = proxies.map((proxy) => traffic(proxy, stop));
    await sleep(1_000);
    const client = createClient({ url: redis.url });
    await client.connect();
    await client.flushAll();
    await client.quit();
    flushedAt = Date.now();
    const answers = (await Promise.all(running)).flat().filter((answer) => answer.at >= flushedAt);
    const refused = answers.filter((answer) => answer.status === 503).map((answer) => answer.at);
    const others = answers.filter((answer) => answer.status !== 200 && answer.status !== 503);
    expect(others).toEqual([]);
    expect(refused.length).toBeGreaterThan(0);
    const window = Math.max(...refused) - Math.min(...refused);
    process.stdout.write(`503 window after the loss: ${window} ms (${refused.length} refusals)\n`);
    // Before: 13 s and more (the blocks' 10 s age, 3 s of margin, the rebuild).
    expect(window).toBeLessThanOrEqual(3_000);

    // Money: every budget at the ledger's own sum once blocks went back and records were written.
    const ledger = async () =>
      Number(
        (await pool.query<{ s: string }>(`SELECT coalesce(sum(cost_nano_usd), 0)::text AS s FROM "${table}"`)).rows[0]!
          .s,
      );
    let tenant = await shown('tenant/acme');
    let global = await shown('global');
    for (let i = 0; i < 150; i++) {
      const recorded = await ledger();
      if (tenant.reservedNanoUsd === 0 && tenant.spentNanoUsd === recorded && global.spentNanoUsd === recorded) break;
      await sleep(200);
      tenant = await shown('tenant/acme');
      global = await shown('global');
    }
    const recorded = await ledger();
    expect({ tenant: tenant.spentNanoUsd, global: global.spentNanoUsd, held: tenant.reservedNanoUsd }).toEqual({
      tenant: recorded,
      global: recorded,
      held: 0,
    });
  }, 120_000);
});
