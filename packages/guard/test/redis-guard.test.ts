// On the real Redis, several app instances (each its own connections and pub/sub subscriber) act as one guard.
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createClient } from 'redis';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { createGuard, type Guard, type GuardOptions } from '@tollgate/guard';
import { signBody } from '../src/webhook-sender.js';
import { deleteKeys, eventually, guardedApp, REDIS_URL, uniquePrefix, usage, webhookReceiver } from './helpers.js';

const keys = { k1: { tenantId: 'acme' }, k2: { tenantId: 'acme' }, good: { tenantId: 'acme' } };
const prefixes: string[] = [];
const opened: { stores: RedisStores; guard: Guard }[] = [];
const receivers: { close(): Promise<void> }[] = [];

afterAll(async () => {
  await Promise.all(receivers.map((receiver) => receiver.close()));
  for (const { guard, stores } of opened) {
    await guard.close();
    await stores.close();
  }
  await Promise.all(prefixes.map((prefix) => deleteKeys(prefix)));
});

/** `count` instances on one prefix: separate processes in all but name. */
function instances(count: number, options: GuardOptions) {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  return Array.from({ length: count }, () => {
    // A deadline far above any round trip: these tests are about the guard across instances, not store failures
    // (a loaded CI machine once passed 500 ms and the test received a store_down alert it did not expect).
    const stores = createRedisStores({ url: REDIS_URL, prefix, timeoutMs: 5_000 });
    const guard = createGuard({ ...options, stores, subscriber: createClient({ url: REDIS_URL }) });
    opened.push({ stores, guard });
    return { guard, app: guardedApp(guard, keys, { trustProxy: true }) };
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };

describe('the guard on Redis, several instances', () => {
  it('an anomaly suspends a key in every instance at once, lifting restores it; a throttle expires after its cooldown', async () => {
    const spend = { bucketSeconds: 1, minBuckets: 3, minSpendUsd: 0.01, cooldown: '2s', watch: ['key' as const] };
    const suspending = instances(3, { spendAnomaly: { ...spend, action: 'suspend' }, alerts: { log: false } });
    const throttling = instances(3, {
      spendAnomaly: { ...spend, action: 'throttle', throttleScale: 0.2 },
      alerts: { log: false },
    });
    await Promise.all([...suspending, ...throttling].map(({ guard }) => guard.ready));
    // A baseline: about six requests of one cent a second, spread over the instances, for ten seconds.
    for (let tick = 0; tick < 100; tick++) {
      for (const group of [suspending, throttling]) {
        group[tick % 3]!.guard.onUsage(usage('k1', 1_000_000 + (tick % 7) * 200_000));
        if (tick % 2 === 0) group[(tick + 1) % 3]!.guard.onUsage(usage('k1', 1_000_000));
      }
      await sleep(100);
    }
    expect(suspending.flatMap(({ guard }) => guard.mitigations())).toEqual([]);
    // The runaway: a hundred times that, through one instance.
    for (let i = 0; i < 600; i++) {
      suspending[0]!.guard.onUsage(usage('k1', 1_000_000));
      throttling[0]!.guard.onUsage(usage('k1', 1_000_000));
    }
    const found = await eventually(async () => {
      const anomalies = await suspending[1]!.guard.anomalies();
      expect(anomalies).toHaveLength(1);
      return anomalies[0]!;
    }, 5_000);
    expect(found).toMatchObject({ subject: 'key:k1', keyId: 'k1', tenantId: 'acme', action: 'suspend' });
    // Every instance refuses the key, within pub/sub delivery of the suspension; the key's neighbour is untouched.
    const delivered = Date.now();
    await eventually(async () => {
      for (const { app } of suspending)
        expect((await request(app).post('/v1/chat').set('authorization', 'Bearer k1').send(chat)).status).toBe(403);
    }, 2_000);
    expect(Date.now() - delivered).toBeLessThan(1_000);
    const refused = await request(suspending[2]!.app).post('/v1/chat').set('authorization', 'Bearer k1').send(chat);
    expect(refused.body.error.code).toBe('key_suspended');
    expect(refused.body.error.message).toMatch(
      /^This API key is suspended: unusual \w+ .*An operator can restore it\.$/,
    );
    expect(
      (await request(suspending[2]!.app).post('/v1/chat').set('authorization', 'Bearer k2').send(chat)).status,
    ).toBe(200);

    // Lifted by an operator in one instance: restored in all.
    expect(await suspending[2]!.guard.lift('key:k1')).toHaveLength(1);
    await eventually(async () => {
      for (const { app } of suspending)
        expect((await request(app).post('/v1/chat').set('authorization', 'Bearer k1').send(chat)).status).toBe(200);
    }, 2_000);

    // The throttle group: the key's limits scaled down everywhere, then back after the cooldown.
    await eventually(async () => {
      for (const { app } of throttling)
        expect((await request(app).get('/scale').set('authorization', 'Bearer k1')).body.scale).toBe(0.2);
    }, 5_000);
    expect((await request(throttling[1]!.app).get('/scale').set('authorization', 'Bearer k2')).body.scale).toBe(1);
    await sleep(2_100);
    for (const { app } of throttling)
      expect((await request(app).get('/scale').set('authorization', 'Bearer k1')).body.scale).toBe(1);
  }, 60_000);

  it('an auth flood blocks its address in every instance and no other address', async () => {
    const hook = await webhookReceiver();
    receivers.push(hook);
    const group = instances(3, {
      authFailures: { max: 6, windowSeconds: 60, block: '1m', distinctKeys: 100 },
      alerts: { webhooks: [{ url: hook.url }] },
    });
    await Promise.all(group.map(({ guard }) => guard.ready));
    for (let i = 0; i < 7; i++) {
      const res = await request(group[i % 3]!.app)
        .post('/v1/chat')
        .set('x-forwarded-for', '203.0.113.50')
        .set('authorization', 'Bearer wrong')
        .send(chat);
      expect(res.status).toBe(401);
    }
    await Promise.all(group.map(({ guard }) => guard.flush()));
    await eventually(async () => {
      for (const { app } of group) {
        const res = await request(app)
          .post('/v1/chat')
          .set('x-forwarded-for', '203.0.113.50')
          .set('authorization', 'Bearer good')
          .send(chat);
        expect(res.status).toBe(429);
        expect(res.body.error.code).toBe('auth_failures_exceeded');
      }
    }, 2_000);
    for (const { app } of group)
      expect(
        (
          await request(app)
            .post('/v1/chat')
            .set('x-forwarded-for', '203.0.113.51')
            .set('authorization', 'Bearer good')
            .send(chat)
        ).status,
      ).toBe(200);
    await Promise.all(group.map(({ guard }) => guard.flush()));
    expect(hook.received.map(({ body }) => JSON.parse(body).type)).toEqual(['auth_flood']);
  }, 30_000);

  it('a webhook gets each event once across instances, signed, after a failed first attempt', async () => {
    process.env.GUARD_TEST_SECRET = 'shh';
    const hook = await webhookReceiver();
    receivers.push(hook);
    hook.fail(1);
    const group = instances(3, {
      alerts: { webhooks: [{ url: hook.url, secretEnv: 'GUARD_TEST_SECRET', initialDelay: 50 }] },
    });
    for (const { guard } of group)
      guard.alerts.emit({
        type: 'store_down',
        id: 'store_down:shared-test',
        message: 'The store behind the test failed.',
      });
    await Promise.all(group.map(({ guard }) => guard.flush()));
    expect(hook.attempts).toBe(2);
    expect(hook.received).toHaveLength(1);
    const { headers, body } = hook.received[0]!;
    expect(headers['x-tollgate-signature']).toBe(signBody('shh', body));
    expect(JSON.parse(body)).toMatchObject({ type: 'store_down', id: 'store_down:shared-test' });
    delete process.env.GUARD_TEST_SECRET;
  }, 30_000);
});
