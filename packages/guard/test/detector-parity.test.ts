// The Lua detector and baseline.ts are the same steps: one replayed history gives the same findings and the same state in both.
import { afterAll, describe, expect, it } from '@jest/globals';
import { createRedisStores } from '@tollgate/redis';
import { MemoryGuardStore, RedisGuardStore } from '@tollgate/guard';
import { resolveSpendAnomalyOptions } from '../src/spend-anomaly-options.js';
import type { Subject } from '../src/types.js';
import type { AnomalyFinding } from '../src/baseline.js';
import type { Observation } from '../src/guard-store.js';
import { deleteKeys, REDIS_URL, uniquePrefix } from './helpers.js';

const prefix = uniquePrefix();
const stores = createRedisStores({ url: REDIS_URL, prefix });

afterAll(async () => {
  await stores.close();
  await deleteKeys(prefix);
});

/** A seeded generator, so a failure replays. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

describe('the detector on Redis and in memory', () => {
  it('finds the same anomalies with the same state through warm-up, gaps, two runaways, many addresses', async () => {
    const resolved = resolveSpendAnomalyOptions({ bucketSeconds: 60, minBuckets: 10, minSpendUsd: 0.001 });
    const params = { bucketMs: resolved.bucketMs, detector: resolved.detector };
    let now = Date.UTC(2026, 0, 5);
    const clock = () => now;
    const memory = new MemoryGuardStore({ clock });
    const redis = new RedisGuardStore({ sendCommand: stores.sendCommand, prefix, clock });
    const next = random(7);
    const subjects: Subject[] = ['key:steady', 'tenant:acme', 'key:odd{brace}'];
    const found: [AnomalyFinding | undefined, AnomalyFinding | undefined][] = [];
    /** Memory's and Redis's states of each subject: warm-up and guard band show here only, before they converge. */
    const compareStates = async () => {
      for (const subject of subjects) {
        const a = (await memory.inspect(subject))!;
        const b = (await redis.inspect(subject, params))!;
        const counts = (state: typeof a) => [state.bucket, state.seen, state.recentCount, state.quietUntil];
        expect(counts(b)).toEqual(counts(a));
        const mine = [...a.baseline, ...a.recent, ...a.unit, ...a.current];
        const theirs = [...b.baseline, ...b.recent, ...b.unit, ...b.current];
        expect(mine.filter((value, index) => !close(value, theirs[index]!))).toEqual([]);
      }
    };
    for (let step = 0; step < 1_200; step++) {
      // Four flushes a bucket; now and then an idle stretch (longer than the exact steps, to take the decay path).
      now += step % 300 === 299 ? 50 * 60_000 : 15_000;
      // A runaway as soon as minBuckets of history are in (bucket 12), and one long after.
      const runaway = (step >= 48 && step < 52) || (step > 900 && step < 940) ? 40 : 1;
      const observations: Observation[] = subjects.map((subject, index) => {
        const requests = Math.floor(next() * 6 * runaway) + (index === 2 ? 0 : 1);
        const spend = Math.round(requests * 2_000_000 * (0.5 + next()));
        return {
          subject,
          spend,
          tokens: requests * 800,
          requests,
          largestSpend: requests > 0 ? Math.round(spend / requests) + 1 : 0,
          largestTokens: requests > 0 ? 900 : 0,
          addresses: Array.from(
            { length: Math.floor(next() * 4) },
            (_, a) => `10.0.${index}.${a + (runaway > 1 ? 10 : 0)}`,
          ),
        };
      });
      const [inMemory, onRedis] = await Promise.all([
        memory.observe(observations, params),
        redis.observe(observations, params),
      ]);
      inMemory.forEach((finding, index) => found.push([finding, onRedis[index]]));
      if (step < 100) await compareStates();
    }
    const reported = found.filter(([a, b]) => a || b);
    expect(reported.length).toBeGreaterThan(0);
    for (const [a, b] of reported) {
      expect(b?.metric).toBe(a?.metric);
      expect(b?.bucket).toBe(a?.bucket);
      expect(close(a!.z, b!.z) && close(a!.score, b!.score) && close(a!.value, b!.value)).toBe(true);
    }
    // The early runaway is found at once: minBuckets of history is enough, on both stores.
    const firstBucket = Math.floor(Date.UTC(2026, 0, 5) / 60_000);
    const early = reported.filter(([a]) => a && a.bucket - firstBucket <= 13);
    expect(early.map(([a]) => a!.bucket - firstBucket)).toContain(12);
    await compareStates();
  });
});
