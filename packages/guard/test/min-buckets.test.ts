// minBuckets is the history the spend-anomaly guard needs, on memory and Redis: then one bucket past zScore acts.
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { createGuard, type Guard, type GuardEvent } from '@tollgate/guard';
import { deleteKeys, guardedApp, REDIS_URL, uniquePrefix, usage } from './helpers.js';

const keys = { k1: { tenantId: 'acme' }, k2: { tenantId: 'acme' } };
const CENT = 10_000_000;
const BUCKET_MS = 1000;
const MIN_BUCKETS = 5;
/** Steady traffic: 4-6 requests of a cent a bucket (5 on average: $0.05, the default minSpendUsd). */
const steadyRequests = (bucket: number) => 4 + (bucket % 3);
const BURST = 40 * 5;
const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };

const opened: { guard: Guard; stores: RedisStores | undefined; prefix: string | undefined }[] = [];
afterAll(async () => {
  for (const { guard, stores, prefix } of opened) {
    await guard.close();
    await stores?.close();
    if (prefix) await deleteKeys(prefix);
  }
});

/**
 * A guard that suspends on an anomaly, on a fake clock that starts at a bucket boundary. Each key
 * gets `history[key]` one-second buckets of steady traffic, ending together, then one bucket of 40
 * times that; every bucket is flushed at once.
 */
async function replay(on: 'memory' | 'redis', history: Partial<Record<keyof typeof keys, number>>) {
  let now = Date.UTC(2026, 0, 5, 9);
  const events: GuardEvent[] = [];
  const prefix = on === 'redis' ? uniquePrefix() : undefined;
  const stores = prefix ? createRedisStores({ url: REDIS_URL, prefix }) : undefined;
  const guard = createGuard({
    ...(stores ? { stores } : {}),
    clock: () => now,
    spendAnomaly: { bucketSeconds: 1, minBuckets: MIN_BUCKETS, action: 'suspend', flushInterval: 0, watch: ['key'] },
    repeatedRequests: false,
    authFailures: false,
    alerts: { log: false, onEvent: (event) => void events.push(event) },
  });
  opened.push({ guard, stores, prefix });
  await guard.ready;
  const longest = Math.max(...Object.values(history));
  for (let bucket = 0; bucket < longest; bucket++) {
    for (const [keyId, buckets] of Object.entries(history)) {
      if (bucket < longest - buckets) continue;
      for (let i = 0; i < steadyRequests(bucket); i++) guard.onUsage(usage(keyId, CENT));
    }
    await guard.flush();
    now += BUCKET_MS;
  }
  for (const keyId of Object.keys(history)) for (let i = 0; i < BURST; i++) guard.onUsage(usage(keyId, CENT));
  await guard.flush();
  return { guard, events, app: guardedApp(guard, keys) };
}

const post = (app: ReturnType<typeof guardedApp>, keyId: string) =>
  request(app).post('/v1/chat').set('authorization', `Bearer ${keyId}`).send(chat);

describe.each(['memory', 'redis'] as const)('minBuckets on the %s store', (on) => {
  it(`suspends the key and alerts on a 40× bucket after 8 steady 1s buckets (minBuckets ${MIN_BUCKETS})`, async () => {
    const { guard, events, app } = await replay(on, { k1: 8 });
    expect(events.map((event) => [event.type, event.keyId])).toEqual([
      ['anomaly', 'k1'],
      ['suspended', 'k1'],
    ]);
    expect(guard.mitigations().map(({ kind, subject }) => `${kind} ${subject}`)).toEqual(['suspend key:k1']);
    const [anomaly] = await guard.anomalies();
    expect(anomaly).toMatchObject({ subject: 'key:k1', action: 'suspend', metric: 'requests', value: BURST });
    expect(anomaly!.score).toBeGreaterThanOrEqual(4);
    const refused = await post(app, 'k1');
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('key_suspended');
    expect((await post(app, 'k2')).status).toBe(200);
  });

  const short = `a key with ${MIN_BUCKETS - 1} buckets of history (one short of minBuckets) is left alone`;
  it(`${short} by the burst that suspends a key with ${MIN_BUCKETS}`, async () => {
    const { guard, events, app } = await replay(on, { k1: MIN_BUCKETS - 1, k2: MIN_BUCKETS });
    expect(events.map((event) => [event.type, event.keyId])).toEqual([
      ['anomaly', 'k2'],
      ['suspended', 'k2'],
    ]);
    expect(guard.mitigations().map(({ kind, subject }) => `${kind} ${subject}`)).toEqual(['suspend key:k2']);
    expect((await guard.anomalies()).map(({ subject }) => subject)).toEqual(['key:k2']);
    expect((await post(app, 'k1')).status).toBe(200);
    expect((await post(app, 'k2')).status).toBe(403);
  });
});
