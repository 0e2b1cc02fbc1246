// Calls in flight when Redis loses its data settle before, during and after the rebuild from the usage ledger: each is
// counted once, whichever reached the store first (its settle or the rebuild's read of its record), on Redis and on a
// Redis Cluster, with budget blocks and without, over two processes' stores.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { createClient } from 'redis';
import request from 'supertest';
import { createPricing } from '@tollgate/core';
import { blockStores } from '@tollgate/core';
import { postgresSpendSource } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard } from '@tollgate/budget';
import { createRedisStores } from '@tollgate/redis';
import type { RedisStores } from '@tollgate/redis';
import { eventually, freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { testCluster, type TestCluster } from '../packages/redis/test/redis-cluster.js';
import { budgetApp } from './helpers/budget-app.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const pricing = createPricing({ models: { 'gpt-4o': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 2 } } });
const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4 });
/** How long process A sums its settles before it sends them: its settles land after the rebuild read their records. */
const LATE_SETTLE_MS = 4_000;
let redis: PrivateRedis;
let cluster: TestCluster;
const tables: string[] = [];

beforeAll(async () => {
  redis = new PrivateRedis(await freePort());
  await redis.start();
  cluster = await testCluster();
}, 60_000);

afterAll(async () => {
  await redis.stop();
  await cluster.stop();
  for (const table of tables) {
    await pool.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
    await pool.query(`DROP FUNCTION IF EXISTS "${table}_add_to_rollups"`);
  }
  await pool.end();
});

/** Answers a call once the test lets it go (`x-hold`): a call in flight across the loss. */
class Holds {
  readonly #waiting = new Map<string, () => void>();
  readonly #held = new Map<string, Promise<void>>();
  hold(name: string): void {
    this.#held.set(name, new Promise((resolve) => this.#waiting.set(name, resolve)));
  }
  release(name: string): void {
    this.#waiting.get(name)!();
  }
  wait(name: string | undefined): Promise<void> {
    return (name && this.#held.get(name)) || Promise.resolve();
  }
}

interface Process {
  stores: RedisStores;
  guard: BudgetGuard;
  sink: ReturnType<typeof postgresSink>;
  call(key: string, user: string, tokens: number, hold?: string): request.Test;
  retire(): Promise<void>;
}

function startProcess(
  table: string,
  holds: Holds,
  where: { url?: string; cluster?: string[] },
  prefix: string,
  late: boolean,
  blocks: boolean,
): Process {
  const raw = createRedisStores({
    ...where,
    prefix,
    timeoutMs: 2_000,
    ...(late ? { settleDelayMs: LATE_SETTLE_MS } : {}),
  });
  // Blocks of a fifth of each budget, opened at the first request, held past the rebuild (retired by the test).
  const stores = blocks ? blockStores(raw, { share: 0.2, hotAfter: 1, maxAgeMs: 600_000, size: 'share' }) : raw;
  // The records reach the ledger when the test flushes them (a sink's batching, made explicit).
  const sink = postgresSink({ pool, table, flushIntervalMs: 600_000 });
  const guard = budgetGuard({
    ledger: stores.ledger,
    pricing,
    log: false,
    tenants: {
      acme: [
        { usd: 10, period: 'day' },
        { usd: 50, period: 'month' },
      ],
    },
    keys: { 'acme-bot': { usd: 5, period: 'day' } },
    tenantUsers: { acme: { usd: 5, period: 'day' } },
    modelBudgets: { acme: { 'gpt-4o': { usd: 8, period: 'day' } } },
    global: { usd: 100, period: 'day' },
  });
  const app = budgetApp(pricing, sink, guard, (req) => holds.wait(req.headers['x-hold'] as string | undefined));
  return {
    stores: raw,
    guard,
    sink,
    call: (key, user, tokens, hold) =>
      request(app)
        .post('/v1/chat/completions')
        .set({ 'x-key': key, 'x-user': user, ...(hold ? { 'x-hold': hold } : {}) })
        .send({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: tokens }),
    retire: async () => {
      if (blocks) await (stores as ReturnType<typeof blockStores<RedisStores>>).blocks.retireAll();
    },
  };
}

/** Each scope as the guard shows it (spent, held) and the ledger's own sum of the same records. */
async function scopesAgainstLedger(guard: BudgetGuard, table: string) {
  const sum = async (where: string) =>
    Number(
      (await pool.query<{ s: string }>(`SELECT coalesce(sum(cost_nano_usd), 0) AS s FROM "${table}" WHERE ${where}`))
        .rows[0]!.s,
    );
  const scopes = [
    [{ scope: 'tenant', id: 'acme' }, 'true'],
    [{ scope: 'key', id: 'acme-bot' }, "key_id = 'acme-bot'"],
    [{ scope: 'user', id: 'bob', tenant: 'acme' }, "user_id = 'bob'"],
    [{ scope: 'user', id: 'alice', tenant: 'acme' }, "user_id = 'alice'"],
    [{ scope: 'model', id: 'gpt-4o', tenant: 'acme' }, "model = 'gpt-4o'"],
    [{ scope: 'global' }, 'true'],
  ] as const;
  const shown: Record<string, { spent: number; held: number }[]> = {};
  const ledger: Record<string, { spent: number; held: number }[]> = {};
  for (const [selector, where] of scopes) {
    const name = `${selector.scope}:${'id' in selector ? selector.id : ''}`;
    const statuses = await guard.status(selector);
    const recorded = await sum(where);
    shown[name] = statuses.map((status) => ({ spent: status.spentNanoUsd, held: status.reservedNanoUsd }));
    ledger[name] = statuses.map(() => ({ spent: recorded, held: 0 }));
  }
  return { shown, ledger };
}

const variants = [
  ['Redis', false],
  ['Redis', true],
  ['Cluster', false],
  ['Cluster', true],
] as const;

describe('settles of calls in flight across a Redis data loss', () => {
  it.each(variants)(
    '%s, blocks %s: every scope ends at the ledger, each call counted once',
    async (kind, blocks) => {
      const table = `tg_inflight_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
      tables.push(table);
      const prefix = `inflight:${randomUUID()}:`;
      const where = kind === 'Redis' ? { url: redis.url } : { cluster: cluster.urls };
      const holds = new Holds();
      // A: settles sent 4 s after the call ends; B: at once. Both write the one usage ledger.
      const a = startProcess(table, holds, where, prefix, true, blocks);
      const b = startProcess(table, holds, where, prefix, false, blocks);
      const gate = b.stores.ledger.rebuildGate!;
      for (const p of [a, b]) p.stores.ledger.rebuildGate!.require();
      await gate.markRebuilt([]);
      const flush = () => Promise.all([a.sink.flush(), b.sink.flush()]);
      try {
        // Before the loss: settled spend, and six calls reserved and still running.
        for (const p of [a, b]) expect((await p.call('acme-bot', 'bob', 100)).status).toBe(200);
        const running = new Map<string, Promise<request.Response>>();
        for (const name of ['a1', 'a2', 'b1', 'b2', 'b3', 'b4']) {
          holds.hold(name);
          const p = name.startsWith('a') ? a : b;
          running.set(
            name,
            p.call(name === 'b4' ? 'acme-ops' : 'acme-bot', name === 'b2' ? 'alice' : 'bob', 200, name).then((r) => r),
          );
        }
        await sleep(300);
        await flush();
        await eventually(async () => {
          const [global] = await b.guard.status({ scope: 'global' });
          expect(global!.reservedNanoUsd).toBeGreaterThan(0);
        });

        // Redis forgets everything (a failover to an empty replica).
        if (kind === 'Redis') {
          const client = createClient({ url: redis.url });
          await client.connect();
          await client.flushAll();
          await client.quit();
        } else await cluster.deleteKeys(prefix);

        // Before the rebuild: b1 ends, its settle and its record land; b2 ends, its settle lands, its record not yet;
        // a1 ends and its record lands, its settle only after the rebuild.
        for (const name of ['b1', 'b2', 'a1']) {
          holds.release(name);
          expect((await running.get(name)!).status).toBe(200);
        }
        await b.sink.flush();
        await a.sink.flush();
        await sleep(100);
        const b2 = await pool.query(`SELECT 1 FROM "${table}" WHERE user_id = 'alice'`);
        expect(b2.rowCount).toBe(1);
        // b2's record is written after the rebuild: held back by deleting it and writing it again later.
        const b2Row = await pool.query(`SELECT * FROM "${table}" WHERE user_id = 'alice'`);
        await pool.query(`DELETE FROM "${table}" WHERE user_id = 'alice'`);

        const report = await b.guard.rebuild(postgresSpendSource(pool, { table }));
        await gate.markRebuilt(report.slots);
        const row = b2Row.rows[0] as Record<string, unknown>;
        const columns = Object.keys(row);
        await pool.query(
          `INSERT INTO "${table}" (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`,
          columns.map((c) => row[c]),
        );

        // After the rebuild: a2, b3 and b4 end (records the rebuild never read); a1's settle lands; traffic goes on.
        for (const name of ['a2', 'b3', 'b4']) {
          holds.release(name);
          expect((await running.get(name)!).status).toBe(200);
        }
        for (const p of [a, b]) expect((await p.call('acme-bot', 'bob', 50)).status).toBe(200);
        await sleep(LATE_SETTLE_MS + 500);
        await a.retire();
        await b.retire();
        await flush();
        await eventually(async () => {
          const { shown, ledger } = await scopesAgainstLedger(b.guard, table);
          expect(shown).toEqual(ledger);
        }, 10_000);
        const { shown } = await scopesAgainstLedger(b.guard, table);
        // 2 settled before, 6 in flight, 2 after: 10 calls of 1,000 input tokens and 100 to 200 output tokens.
        expect(shown['global:']![0]!.spent).toBe(10 * 1_000_000 + (2 * 100 + 6 * 200 + 2 * 50) * 2_000);
      } finally {
        for (const p of [a, b]) {
          await p.guard.close();
          await p.sink.close();
          await p.stores.close();
        }
      }
    },
    60_000,
  );
});
