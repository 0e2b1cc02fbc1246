// On a real Redis Cluster: each subject's keys share one hash tag, so the guard's scripts run wherever their slot lives.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { createGuard, type Guard } from '@tollgate/guard';
import type { Subject } from '../src/types.js';
import { resolveSpendAnomalyOptions } from '../src/spend-anomaly-options.js';
import { testCluster, type TestCluster } from '../../redis/test/redis-cluster.js';
import { uniquePrefix } from './helpers.js';

let cluster: TestCluster | undefined;
let stores: RedisStores | undefined;
let guard: Guard | undefined;
const prefix = uniquePrefix();

beforeAll(async () => {
  cluster = await testCluster();
  stores = createRedisStores({ cluster: cluster.urls, prefix });
  guard = createGuard({
    stores,
    spendAnomaly: { bucketSeconds: 1, flushInterval: 0, minBuckets: 3 },
    authFailures: { max: 2 },
    alerts: { log: false },
  });
  await guard.ready;
}, 60_000);

afterAll(async () => {
  await guard?.close();
  await stores?.close();
  await cluster?.deleteKeys(prefix);
  await cluster?.stop();
});

describe('the guard on Redis Cluster', () => {
  it('keeps many subjects apart on their own shards, and mitigations, the log, failures and claims in theirs', async () => {
    const subjects = Array.from({ length: 12 }, (_, i): Subject => (i % 2 === 0 ? `key:k${i}` : `tenant:t${i}`));
    const observed = await guard!.store.observe(
      subjects.map((subject) => ({
        subject,
        spend: 1_000_000,
        tokens: 100,
        requests: 1,
        largestSpend: 1_000_000,
        largestTokens: 100,
        addresses: ['10.0.0.1'],
      })),
      { bucketMs: 1000, detector: resolveSpendAnomalyOptions({ bucketSeconds: 1 }).detector },
    );
    expect(observed).toHaveLength(subjects.length);
    const shards = new Set(
      await Promise.all(subjects.map((subject) => cluster!.masterOf(`${prefix}guard:{${subject}}:state`))),
    );
    expect(shards.size).toBeGreaterThan(1);
    await guard!.suspend('key:k0', 'cluster test');
    expect(guard!.mitigations().map((m) => m.subject)).toEqual(['key:k0']);
    expect((await guard!.store.mitigations()).mitigations.map((m) => m.subject)).toEqual(['key:k0']);
    expect(await guard!.lift('key:k0')).toHaveLength(1);
    expect(await guard!.store.claim('alert:x', 60_000)).toBe(true);
    expect(await guard!.store.claim('alert:x', 60_000)).toBe(false);
    expect((await guard!.store.countAuthFailure('203.0.113.1', 'abc', 60_000)).failures).toBe(1);
    await guard!.store.recordAnomaly({
      id: 'a1',
      subject: 'key:k0',
      metric: 'spend',
      value: 1,
      expected: 1,
      z: 5,
      score: 5,
      bucketStart: 0,
      bucketSeconds: 1,
      at: 0,
      action: 'alert',
    });
    expect((await guard!.anomalies()).map((a) => a.id)).toEqual(['a1']);
  }, 30_000);
});
