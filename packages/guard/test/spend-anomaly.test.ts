// The spend-anomaly detector on a fake clock: quiet history, then a runaway is reported once; floors and warm-up hold alarms back.
import { describe, expect, it } from '@jest/globals';
import { MemoryGuardStore } from '@tollgate/guard';
import { resolveSpendAnomalyOptions } from '../src/spend-anomaly-options.js';
import { SpendAnomalyDetector } from '../src/spend-anomaly.js';
import type { SpendAnomalyOptions } from '../src/spend-anomaly-options.js';
import type { SubjectFinding, UsageSample } from '../src/spend-anomaly.js';

const CENT = 10_000_000;

/** A detector on its own memory store and clock; `minute(samples)` replays one bucket of traffic in four flushes. */
function harness(options: SpendAnomalyOptions = {}) {
  let now = Date.UTC(2026, 0, 5, 9);
  const store = new MemoryGuardStore({ clock: () => now });
  const resolved = resolveSpendAnomalyOptions({ bucketSeconds: 60, flushInterval: 0, ...options });
  const found: SubjectFinding[] = [];
  const detector = new SpendAnomalyDetector({
    store,
    params: { bucketMs: resolved.bucketMs, detector: resolved.detector },
    watchKeys: resolved.watchKeys,
    watchTenants: resolved.watchTenants,
    flushIntervalMs: 0,
    onFinding: (finding) => found.push(finding),
    onStoreError: (error) => {
      throw error;
    },
  });
  return {
    found,
    store,
    /** One bucket: `requests` usual ones of `centsEach`, and `others` (over the usual request), in four flushes. */
    async minute(requests: number, centsEach: number, others: Partial<UsageSample>[] = []) {
      const samples: UsageSample[] = [
        ...Array.from({ length: requests }, () => ({
          keyId: 'k1',
          tenantId: 'acme',
          costNanoUsd: centsEach * CENT,
          tokens: 1000,
          address: '10.0.0.1',
        })),
        ...others.map((other) => ({
          keyId: 'k1',
          tenantId: 'acme',
          costNanoUsd: CENT,
          tokens: 1000,
          address: '10.0.0.1',
          ...other,
        })),
      ];
      for (let quarter = 0; quarter < 4; quarter++) {
        for (let i = quarter; i < samples.length; i += 4) detector.observe(samples[i]!);
        await detector.flush();
        now += 15_000;
      }
    },
  };
}

describe('spend anomaly detection', () => {
  it('reports a runaway of a steady key within its first bucket, once, for the key and its tenant', async () => {
    const h = harness();
    for (let i = 0; i < 60; i++) await h.minute(8 + (i % 3), 1);
    expect(h.found).toEqual([]);
    await h.minute(400, 1);
    await h.minute(400, 1);
    expect(h.found.map((f) => f.subject).sort()).toEqual(['key:k1', 'tenant:acme']);
    const onKey = h.found.find((f) => f.subject === 'key:k1')!;
    expect(onKey).toMatchObject({ keyId: 'k1', tenantId: 'acme' });
    expect(onKey.finding.metric).toBe('requests');
    // Found at the first flush of the bucket: a quarter of it had come in.
    expect(onKey.finding.value).toBe(100);
    expect(onKey.finding.score).toBeGreaterThanOrEqual(4);
  });

  it('reports nothing before minBuckets of history, whatever the spike', async () => {
    const h = harness({ minBuckets: 10 });
    for (let i = 0; i < 8; i++) await h.minute(5, 1);
    await h.minute(500, 1);
    expect(h.found).toEqual([]);
  });

  it('raises no alarm over cents: a spike that spends under minSpendUsd is not an anomaly', async () => {
    const h = harness({ minSpendUsd: 1 });
    for (let i = 0; i < 30; i++) await h.minute(5, 0.01);
    await h.minute(500, 0.01);
    expect(h.found).toEqual([]);
  });

  it('takes one large request for a cost, not a runaway', async () => {
    const h = harness();
    for (let i = 0; i < 60; i++) await h.minute(6, 1);
    await h.minute(5, 1, [{ costNanoUsd: 1000 * CENT, tokens: 1_000_000 }]);
    expect(h.found).toEqual([]);
  });

  it('sees a key suddenly used from many addresses', async () => {
    const h = harness({ watch: ['key'] });
    for (let i = 0; i < 60; i++) await h.minute(10, 1);
    // The owner goes on as usual; a thief adds a request each from thirty addresses.
    await h.minute(
      10,
      1,
      Array.from({ length: 30 }, (_, a) => ({ costNanoUsd: CENT, address: `198.51.100.${a}` })),
    );
    expect(h.found.map((f) => [f.subject, f.finding.metric])).toEqual([['key:k1', 'addresses']]);
  });
});
