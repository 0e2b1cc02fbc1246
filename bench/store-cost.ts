// Benchmark 7: what each store operation costs inside Redis (INFO commandstats), run alone and in the script bundle.
import { randomUUID } from 'node:crypto';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { costPerRequest, PrivateRedis } from './lib/private-redis.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, median, table } from './lib/stats.js';

/** One unit of work a request gives the stores, as the chain's pieces call them. */
interface CostCase {
  name: string;
  what: string;
  run(stores: RedisStores, unit: number): Promise<unknown>;
}

const HOUR = 3_600_000;
const tokenWindow = { limit: 1e12, windowMs: 60_000 };

function costCases(): CostCase[] {
  const scopes = (keys: string[]) => keys.map((key) => ({ key, limit: 1e15, expiresAt: Date.now() + HOUR }));
  const budget = (keys: string[]) => async (stores: RedisStores) => {
    const id = randomUUID();
    await stores.ledger.reserve({ id, amount: 1_000_000, scopes: scopes(keys), ttlMs: 60_000 });
    await stores.ledger.settle(id, 400_000);
  };
  return [
    {
      name: 'request window',
      what: 'tieredRateLimit in combineLimits, one layer: hitFixedWindow',
      run: (stores) => stores.fixedWindow.hit('rl:key:k1', 60_000),
    },
    {
      name: 'token window',
      what: 'tokenRateLimit, one layer: consume the estimate, then adjust to the usage (its settle)',
      run: async (stores) => {
        const { windowStart } = await stores.counter.consume('tokens:key:k1', 1_000, tokenWindow);
        await stores.counter.adjust('tokens:key:k1', -600, { windowMs: tokenWindow.windowMs, windowStart });
      },
    },
    {
      name: 'budget, 1 scope',
      what: 'budgetGuard: reserve, then settle (a settle batch of one)',
      run: budget(['global']),
    },
    {
      name: 'budget, 3 scopes',
      what: 'budgetGuard with key, tenant and global budgets: reserve, then settle',
      run: budget(['key:k1', 'tenant:t1', 'global']),
    },
    {
      name: 'the chain before the answer',
      what: 'request window, token consume and a 3-scope reserve started together (what combineLimits sends)',
      run: (stores) =>
        Promise.all([
          stores.fixedWindow.hit('rl:key:k1', 60_000),
          stores.counter.consume('tokens:key:k1', 1_000, tokenWindow),
          stores.ledger.reserve({
            id: randomUUID(),
            amount: 1_000_000,
            scopes: scopes(['key:k1', 'tenant:t1', 'global']),
            ttlMs: 60_000,
          }),
        ]),
    },
  ];
}

interface Measured {
  calls: number[];
  commandUs: number[];
}

export async function runStoreCostBenchmark(context: BenchContext): Promise<SectionResult> {
  const title = '7. Store operations inside Redis';
  const rounds = context.quick ? 3 : 5;
  const units = context.quick ? 300 : 1_000;
  const redis = new PrivateRedis();
  try {
    await redis.start();
  } catch (error) {
    await redis.stop();
    return { title, body: `Could not start a redis-server of its own: ${String(error)}`, targets: [] };
  }
  const modes = [true, false] as const;
  const stores = new Map(
    modes.map((batch) => [
      batch,
      createRedisStores({ url: redis.url, prefix: `store-cost:${batch}:`, keyCache: false, batch }),
    ]),
  );
  const cases = costCases();
  const results = new Map<string, Measured>();
  try {
    // Warm-up: scripts loaded (the first call of each goes by EVAL), keys created.
    for (const benchCase of cases)
      for (const batch of modes) for (let unit = 0; unit < 20; unit++) await benchCase.run(stores.get(batch)!, unit);
    for (let round = 0; round < rounds; round++) {
      for (const benchCase of cases) {
        for (const batch of modes) {
          const before = await redis.cost();
          for (let unit = 0; unit < units; unit++) await benchCase.run(stores.get(batch)!, unit);
          // The last settles leave a few ms after their caller resolved: they belong to this round.
          await new Promise((resolve) => setTimeout(resolve, 20));
          const cost = costPerRequest(before, await redis.cost(), units);
          const key = `${benchCase.name}\u0000${batch}`;
          const measured = results.get(key) ?? { calls: [], commandUs: [] };
          measured.calls.push(cost.calls);
          measured.commandUs.push(cost.commandUs);
          results.set(key, measured);
        }
      }
      context.log(`store cost round ${round + 1}/${rounds}`);
    }
  } finally {
    await Promise.all([...stores.values()].map((s) => s.close()));
    await redis.stop();
  }
  const figure = (name: string, batch: boolean) => {
    const measured = results.get(`${name}\u0000${batch}`)!;
    return { calls: median(measured.calls), us: median(measured.commandUs) };
  };
  const rows = cases.map((c) => {
    const alone = figure(c.name, false);
    const bundled = figure(c.name, true);
    return [
      c.name,
      `${fmtNumber(alone.us, 1)} µs in ${fmtNumber(alone.calls, 2)} calls`,
      `${fmtNumber(bundled.us, 1)} µs in ${fmtNumber(bundled.calls, 2)} calls`,
      c.what,
    ];
  });
  const body = [
    `A redis-server of its own (same binary, no persistence). Each unit of work is run ${fmtNumber(units)} times one after the other (no other load, ` +
      `so nothing is summed or bundled across requests), ${rounds} alternating rounds; the figure is the median over rounds of the time INFO commandstats ` +
      'gives the script commands (EVALSHA, EVAL) per unit, and how many were sent. "alone": `createRedisStores({ batch: false })`, one EVALSHA per ' +
      'store operation; "bundled": the default, the operations of one turn in one EVALSHA of the script bundle (settles go out on their own a ' +
      'few ms later, summed: alone in their bundle here). Under load the bundle also carries several requests, and settles are summed per ' +
      "scope and window across requests: §1 gives the chain's cost per request under load.",
    '',
    table(['unit of work', 'alone', 'bundled', 'what runs'], rows),
  ].join('\n');
  return { title, body, targets: [] };
}
