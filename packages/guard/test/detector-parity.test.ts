// The Lua detector and baseline.ts are the same steps: one replayed history gives the same findings and the same state in both.
import { afterAll, describe, expect, it } from '@jest/globals';
import { createRedisStores } from '@tollgate/redis';
import { MemoryGuardStore, RedisGuardStore, resolveSpendAnomalyOptions } from '@tollgate/guard';
import type { AnomalyFinding, Observation, Subject } from '@tollgate/guard';
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
  it('finds the same anomalies and keeps the same state over a history with idle gaps, a runaway and many addresses', async () => {
    const resolved = resolveSpendAnomalyOptions({ bucketSeconds: 60, minBuckets: 10, minSpendUsd: 0.001 });
    const params = { bucketMs: resolved.bucketMs, detector: resolved.detector };
    let now = Date.UTC(2026, 0, 5);
    const clock = () => now;
    const memory = new MemoryGuardStore({ clock });
    const redis = new RedisGuardStore({ sendCommand: stores.sendCommand, prefix, clock });
    const next = random(7);
    const subjects: Subject[] = ['key:steady', 'tenant:acme', 'key:odd{brace}'];
    const found: [AnomalyFinding | undefined, AnomalyFinding | undefined][] = [];
    for (let step = 0; step < 1_200; step++) {
      // Four flushes a bucket; now and then an idle stretch (longer than the exact steps, to take the decay path).
      now += step % 300 === 299 ? 50 * 60_000 : 15_000;
      const runaway = step > 900 && step < 940 ? 40 : 1;
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
          addresses: Array.from({ length: Math.floor(next() * 4) }, (_, a) => `10.0.${index}.${a + (runaway > 1 ? 10 : 0)}`),
        };
      });
      const [inMemory, onRedis] = await Promise.all([memory.observe(observations, params), redis.observe(observations, params)]);
      inMemory.forEach((finding, index) => found.push([finding, onRedis[index]]));
    }
    const reported = found.filter(([a, b]) => a || b);
    expect(reported.length).toBeGreaterThan(0);
    for (const [a, b] of reported) {
      expect(b?.metric).toBe(a?.metric);
      expect(b?.bucket).toBe(a?.bucket);
      expect(close(a!.z, b!.z) && close(a!.score, b!.score) && close(a!.value, b!.value)).toBe(true);
    }
    for (const subject of subjects) {
      const a = (await memory.inspect(subject))!;
      const b = (await redis.inspect(subject, params))!;
      expect(b.bucket).toBe(a.bucket);
      expect(b.seen).toBe(a.seen);
      expect(b.quietUntil).toBe(a.quietUntil);
      const mismatched = [...a.baseline, ...a.recent, ...a.unit, ...a.current].filter((value, index) => !close(value, [...b.baseline, ...b.recent, ...b.unit, ...b.current][index]!));
      expect(mismatched).toEqual([]);
    }
  });
});
