// Many processes, one Redis: concurrent reserves and consumes from separate clients never admit past the limit.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { connectTestRedis, deleteKeysWithPrefix } from './conformance/redis.js';

const CLIENTS = 5;
const CALLS = 1000;

describe('Redis stores under concurrency', () => {
  const prefix = `tg-test:${randomUUID()}:`;
  let url: string;
  /** One createRedisStores per simulated process: each has its own node-redis client and connection. */
  let processes: RedisStores[];
  const pick = (i: number) => processes[i % CLIENTS]!;

  beforeAll(async () => {
    url = await connectTestRedis();
    processes = Array.from({ length: CLIENTS }, () => createRedisStores({ url, prefix, timeoutMs: 10_000 }));
    await Promise.all(processes.map((p) => p.ping()));
  });

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.close()));
    await deleteKeysWithPrefix(url, prefix);
  });

  const redisNow = async () => {
    const [seconds, micros] = (await processes[0]!.sendCommand(['TIME'])) as [string, string];
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  };

  it(`admits exactly the limit out of ${CALLS} concurrent reserves from ${CLIENTS} clients`, async () => {
    const expiresAt = (await redisNow()) + 3_600_000;
    const tenant = { key: 'tenant:acme', limit: 250, expiresAt };
    const global = { key: 'global', limit: 10_000, expiresAt };
    const results = await Promise.all(
      Array.from({ length: CALLS }, (_, i) =>
        pick(i).ledger.reserve({
          id: `all-${i}`,
          amount: 1,
          ttlMs: 60_000,
          scopes: [{ key: `key:${i % 7}`, limit: 1_000, expiresAt }, tenant, global],
        }),
      ),
    );
    const admitted = results.filter((r) => r.ok);
    expect(admitted).toHaveLength(250);
    for (const refused of results.filter((r) => !r.ok))
      expect(refused).toMatchObject({ scope: 'tenant:acme', remaining: 0 });
    const [tenantUsage, globalUsage] = await processes[1]!.ledger.usage(['tenant:acme', 'global']);
    expect(tenantUsage).toEqual({ key: 'tenant:acme', spent: 0, reserved: 250, credit: 0 });
    expect(globalUsage).toEqual({ key: 'global', spent: 0, reserved: 250, credit: 0 });
  });

  it('grants exactly what is left when reserves may be clamped (minAmount)', async () => {
    const scope = { key: 'tenant:clamped', limit: 2_503, expiresAt: (await redisNow()) + 3_600_000 };
    const results = await Promise.all(
      Array.from({ length: CALLS }, (_, i) =>
        pick(i).ledger.reserve({ id: `clamp-${i}`, amount: 10, minAmount: 1, ttlMs: 60_000, scopes: [scope] }),
      ),
    );
    const granted = results.reduce((sum, r) => sum + (r.ok ? r.amount : 0), 0);
    expect(granted).toBe(2_503);
    expect(results.filter((r) => r.ok && r.amount < 10)).toHaveLength(1);
    expect((await processes[2]!.ledger.usage([scope.key]))[0]).toMatchObject({ reserved: 2_503 });
  });

  it('counts a settle sent twice, from two clients at once, once', async () => {
    const scope = { key: 'tenant:settle', limit: 1_000_000, expiresAt: (await redisNow()) + 3_600_000 };
    const ids = Array.from({ length: 200 }, (_, i) => `settle-${i}`);
    await Promise.all(ids.map((id, i) => pick(i).ledger.reserve({ id, amount: 100, ttlMs: 60_000, scopes: [scope] })));
    const settles = await Promise.all(
      ids.flatMap((id, i) => [pick(i).ledger.settle(id, 40), pick(i + 1).ledger.settle(id, 40)]),
    );
    expect(settles.filter((s) => s.settled)).toHaveLength(200);
    expect(settles.filter((s) => !s.settled)).toHaveLength(200);
    expect((await processes[0]!.ledger.usage([scope.key]))[0]).toEqual({
      key: scope.key,
      spent: 200 * 40,
      reserved: 0,
      credit: 0,
    });
  });

  it('charges an unsettled reservation its amount after its TTL, seen alike by every client', async () => {
    const scope = { key: 'tenant:ttl', limit: 200, expiresAt: (await redisNow()) + 3_600_000 };
    // A process that reserves and dies: nothing settles it.
    expect(
      await processes[0]!.ledger.reserve({ id: 'crashed-process', amount: 100, ttlMs: 300, scopes: [scope] }),
    ).toMatchObject({ ok: true });
    expect(
      await processes[1]!.ledger.reserve({ id: 'blocked', amount: 101, ttlMs: 60_000, scopes: [scope] }),
    ).toMatchObject({ ok: false, remaining: 100 });
    await new Promise((resolve) => setTimeout(resolve, 400));
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        pick(i).ledger.reserve({ id: `after-ttl-${i}`, amount: 1, ttlMs: 60_000, scopes: [scope] }),
      ),
    );
    // The crashed call may have been billed: its 100 stay spent, 100 are left for the others.
    expect(results.filter((r) => r.ok)).toHaveLength(100);
    // Another process never held it, so it cannot settle it.
    expect(await processes[3]!.ledger.settle('crashed-process', 100)).toEqual({ settled: false, reserved: 0 });
    expect(await processes[4]!.ledger.usage([scope.key])).toEqual([
      { key: scope.key, spent: 100, reserved: 100, credit: 0 },
    ]);
  });

  it(`never lets ${CALLS} concurrent consumes exceed the window limit`, async () => {
    const windowMs = 60_000;
    // Stay inside one fixed window: a roll-over mid-test would rightly admit a few more.
    const left = windowMs - ((await redisNow()) % windowMs);
    if (left < 10_000) await new Promise((resolve) => setTimeout(resolve, left + 50));
    const units = (i: number) => 1 + (i % 4);
    const results = await Promise.all(
      Array.from({ length: CALLS }, (_, i) => pick(i).counter.consume('key:busy', units(i), { limit: 700, windowMs })),
    );
    const admittedUnits = results.reduce((sum, r, i) => sum + (r.allowed ? units(i) : 0), 0);
    expect(admittedUnits).toBeLessThanOrEqual(700);
    // All-or-nothing with units of 1..4: once fewer than 4 are left, only smaller requests fit, and some always come.
    expect(admittedUnits).toBeGreaterThanOrEqual(697);
    expect(await processes[4]!.counter.peek('key:busy', { windowMs })).toBe(admittedUnits);
    const ones = await Promise.all(
      Array.from({ length: CALLS }, (_, i) => pick(i).counter.consume('key:ones', 1, { limit: 300, windowMs })),
    );
    expect(ones.filter((r) => r.allowed)).toHaveLength(300);
  }, 90_000);
});
