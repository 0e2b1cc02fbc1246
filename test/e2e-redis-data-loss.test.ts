// Two proxies with budgets in blocks on a Redis that loses its data while blocks are open (a restart without persistence,
// a failover to an empty replica): nothing is admitted against a forgotten budget (503 until rebuilt), one process
// rebuilds every scope (tenant, end user, model, global) from the PostgreSQL ledger, and each then equals the ledger;
// streams (through the OpenAI SDK) and calls in flight across the loss are counted once, whether their records or their
// settles reached the stores first.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import pg from 'pg';
import { createClient } from 'redis';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { newApiKey, sentUntilAnswered, sha256Hex, spawnProxy, startMockUpstream } from './helpers/proxy.js';
import type { RunningMock, SpawnedProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const table = `tg_loss_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-data-loss-'));
const adminKey = newApiKey();
const key = newApiKey();
let redis: PrivateRedis;
let upstream: RunningMock;
let proxies: SpawnedProxy[] = [];

beforeAll(async () => {
  redis = new PrivateRedis(await freePort());
  await redis.start();
  upstream = await startMockUpstream({ chunkDelayMs: 40, replyTokens: 400, requireApiKey: 'sk-upstream' });
  const configPath = path.join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      postgresUrl: POSTGRES_URL,
      postgresTable: table,
      spool: path.join(dir, 'spool'),
      adminKeySha256: sha256Hex(adminKey),
      // A block is 5% of a budget, held at most 2 s: blocks are open when Redis restarts.
      redis: { blocks: { share: 0.05, size: 'share', maxAge: 2_000 } },
      // A provider whose streams send one event per 40 ms: streams run across the loss.
      upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' } },
      global: { budget: { usd: 1, period: 'day' } },
      tenants: {
        acme: {
          budget: { usd: 0.1, period: 'day' },
          userBudget: { usd: 0.05, period: 'day' },
          modelBudgets: { 'gpt-4o-mini': { usd: 0.08, period: 'day' } },
        },
      },
      keys: [{ id: 'acme-key', sha256: sha256Hex(key), tenant: 'acme', user: 'bob', scopes: [] }],
    }),
  );
  const env = { TOLLGATE_CONFIG: configPath, REDIS_URL: redis.url };
  proxies = await Promise.all([spawnProxy(env), spawnProxy(env)]);
}, 60_000);

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  await redis.stop();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
  await client.end();
});

interface BudgetView {
  spentNanoUsd: number;
  reservedNanoUsd: number;
}

/** The admin view of a budget; a read refused while Redis comes back (503) is asked again. */
async function budget(scope: string): Promise<BudgetView> {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(`${proxies[0]!.url}/admin/budgets/${scope}`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    const body = (await response.json()) as { budgets?: BudgetView[] };
    if (response.status === 200 && body.budgets?.[0]) return body.budgets[0];
    if (attempt > 50) throw new Error(`GET /admin/budgets/${scope}: ${response.status} ${JSON.stringify(body)}`);
    await sleep(100);
  }
}

/** `count` calls over both proxies, one at a time; a call refused while Redis is away is sent again. */
async function calls(count: number): Promise<void> {
  const clients = proxies.map((proxy) => new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 }));
  for (let i = 0; i < count; i++) {
    await sentUntilAnswered(() =>
      clients[i % clients.length]!.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: `call ${i}` }],
        max_tokens: 20,
      }),
    );
  }
}

/** Redis forgets everything at once, under both proxies' connections: a failover to an empty replica. */
async function loseRedisData(): Promise<void> {
  const client = createClient({ url: redis.url });
  await client.connect();
  await client.flushAll();
  await client.quit();
}

/** Each scope as the admin API shows it (spent, held) and the ledger's own sum, once `paid` calls are recorded. */
async function scopesOnceSettled(paid: number) {
  const ledger = new pg.Client({ connectionString: POSTGRES_URL });
  await ledger.connect();
  try {
    const recorded = async (where: string) => {
      const { rows } = await ledger
        .query(`SELECT coalesce(sum(cost_nano_usd), 0) AS spent FROM "${table}" WHERE ${where}`)
        .catch(() => ({ rows: [{ spent: -1 }] }));
      return Number(rows[0].spent);
    };
    const count = async () =>
      Number((await ledger.query(`SELECT count(*) AS n FROM "${table}" WHERE cost_nano_usd > 0`)).rows[0].n);
    const scopes = {
      tenant: ['tenant/acme', 'true'],
      user: ['user/bob?tenant=acme', "user_id = 'bob'"],
      model: ['model/gpt-4o-mini?tenant=acme', "model = 'gpt-4o-mini'"],
      global: ['global', 'true'],
    } as const;
    const read = async () => {
      const out: Record<string, { shown: number; held: number; ledger: number }> = {};
      for (const [name, [path, where]] of Object.entries(scopes)) {
        const view = await budget(path);
        out[name] = { shown: view.spentNanoUsd, held: view.reservedNanoUsd, ledger: await recorded(where) };
      }
      return out;
    };
    const settledDown = (view: Awaited<ReturnType<typeof read>>) =>
      Object.values(view).every((scope) => scope.held === 0 && scope.shown === scope.ledger);
    // Every block retired and settled, every record written.
    let view = await read();
    for (let i = 0; i < 150 && !(settledDown(view) && (await count()) >= paid); i++) {
      await sleep(200);
      view = await read();
    }
    return { view, paid: await count() };
  } finally {
    await ledger.end();
  }
}

/** Streams `tokens` output tokens (one event per 40 ms upstream) through the SDK, to its end. */
async function stream(client: OpenAI, tokens: number): Promise<number> {
  const events = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: `stream of ${tokens}` }],
    max_tokens: tokens,
    stream: true,
    stream_options: { include_usage: true },
  });
  let output = 0;
  for await (const event of events) output = event.usage?.completion_tokens ?? output;
  return output;
}

describe('Redis losing its data while budget blocks are open', () => {
  it('admits nothing until rebuilt, then every scope equals the ledger to the nano-USD', async () => {
    await calls(20);
    // Their blocks retire (held 2 s at most) and settle: this spend is in Redis only as spend.
    await sleep(2_500);
    await calls(10);
    // New blocks are open in both processes: Redis forgets them and every spend.
    await loseRedisData();
    await calls(20);
    const { view, paid } = await scopesOnceSettled(50);
    // Before: the tenant showed spend counted twice (blocks taken from the empty store while the rebuild ran settled on
    // top of it), the model budget less than recorded (never rebuilt), the end user less (never rebuilt). Now each
    // scope is the ledger's own sum, exactly.
    for (const scope of Object.values(view)) expect(scope.shown).toBe(scope.ledger);
    expect(view.tenant!.ledger).toBeGreaterThan(0);
    // 50 answered calls (a call refused while spend was rebuilt is recorded too, at no cost, and was sent again).
    expect(paid).toBe(50);
    const output = proxies.map((proxy) => proxy.output()).join('\n');
    expect(output).toMatch(/Redis had lost budget spend; rebuilt \d+ of \d+ budget scope/);
    // One process rebuilt, under the lock.
    expect(output.match(/Redis had lost budget spend/g)).toHaveLength(1);
  }, 120_000);

  it('counts once each call in flight across the loss: streams ending before and after the rebuild, calls meanwhile', async () => {
    const clients = proxies.map((proxy) => new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 }));
    const before = (await scopesOnceSettled(50)).paid;
    // A call on each proxy first: the streams' scopes are hot, and each proxy grants all three from one block.
    await calls(2);
    // Streams of 2.4 s, 6 s and 12 s on both proxies, from blocks opened before the loss: the rebuild (at the first
    // refusal, after the blocks' 2 s and 3 s more) reads the records of the short ones; the long ones end after it,
    // and the blocks settle once their last stream has, with every record they served.
    const streams = [60, 150, 300].flatMap((tokens) => clients.map((client) => stream(client, tokens)));
    await sleep(800);
    await loseRedisData();
    // Calls go on meanwhile, two at a time (each refused with 503 until rebuilt, then sent again).
    const outputs = await Promise.all([...streams, calls(10).then(() => 0), calls(10).then(() => 0)]);
    expect(outputs.slice(0, 6)).toEqual([60, 60, 150, 150, 300, 300]);
    const { view, paid } = await scopesOnceSettled(before + 28);
    // Before: the calls whose records the rebuild read and whose settles (their blocks') landed after it counted twice.
    for (const scope of Object.values(view))
      expect(scope).toEqual({ shown: scope.ledger, held: 0, ledger: scope.ledger });
    expect(paid).toBe(before + 28);
  }, 120_000);
});
