// authFailures before auth: an address past the limit is blocked with 429, other addresses and the keys they use are untouched.
import { afterEach, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createGuard, type Guard, type GuardEvent } from '@tollgate/guard';
import { guardedApp } from './helpers.js';

const keys = { good: { tenantId: 'acme' } };
let guard: Guard | undefined;
afterEach(async () => guard?.close());

function setup(options: { max?: number; distinctKeys?: number } = {}) {
  const events: GuardEvent[] = [];
  guard = createGuard({
    authFailures: {
      max: options.max ?? 5,
      windowSeconds: 60,
      block: '1m',
      ...(options.distinctKeys ? { distinctKeys: options.distinctKeys } : {}),
    },
    alerts: { onEvent: (event) => void events.push(event) },
  });
  return { app: guardedApp(guard, keys, { trustProxy: true }), events, guard };
}

const from = (address: string) => ({ 'x-forwarded-for': address });

describe('authFailures', () => {
  it('blocks an address past max failed authentications, for every request, with Retry-After; other addresses are untouched', async () => {
    const { app, events, guard } = setup({ max: 5, distinctKeys: 100 });
    for (let i = 0; i < 6; i++) {
      const res = await request(app)
        .post('/v1/chat')
        .set(from('203.0.113.9'))
        .set('authorization', 'Bearer wrong')
        .send({ a: 1 });
      expect(res.status).toBe(401);
    }
    await guard.flush();
    const blocked = await request(app)
      .post('/v1/chat')
      .set(from('203.0.113.9'))
      .set('authorization', 'Bearer good')
      .send({ a: 1 });
    expect(blocked.status).toBe(429);
    expect(blocked.body.error.code).toBe('auth_failures_exceeded');
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(50);
    // A valid key from another address, and wrong keys from it too, go on as before.
    expect(
      (await request(app).post('/v1/chat').set(from('198.51.100.7')).set('authorization', 'Bearer good').send({ a: 1 }))
        .status,
    ).toBe(200);
    expect(
      (await request(app).post('/v1/chat').set(from('198.51.100.7')).set('authorization', 'Bearer nope').send({ a: 1 }))
        .status,
    ).toBe(401);
    expect(events.map((e) => [e.type, e.address])).toEqual([['auth_flood', '203.0.113.9']]);
    expect(guard.mitigations()).toMatchObject([{ kind: 'block', subject: 'ip:203.0.113.9' }]);
  });

  it('lets a valid key through from an address before its block', async () => {
    const { app } = setup({ max: 5 });
    for (let i = 0; i < 4; i++)
      await request(app).post('/v1/chat').set(from('203.0.113.10')).set('authorization', 'Bearer wrong').send({});
    expect(
      (await request(app).post('/v1/chat').set(from('203.0.113.10')).set('authorization', 'Bearer good').send({}))
        .status,
    ).toBe(200);
  });

  it('takes many distinct keys from one address for credential stuffing before max is reached', async () => {
    const { app, events, guard } = setup({ max: 50, distinctKeys: 4 });
    for (let i = 0; i < 4; i++)
      await request(app).post('/v1/chat').set(from('203.0.113.11')).set('authorization', `Bearer guess-${i}`).send({});
    await guard.flush();
    expect(
      (await request(app).post('/v1/chat').set(from('203.0.113.11')).set('authorization', 'Bearer good').send({}))
        .status,
    ).toBe(429);
    expect(events[0]).toMatchObject({
      type: 'auth_flood',
      address: '203.0.113.11',
      details: { distinctCredentials: 4 },
    });
  });

  it('counts IPv6 clients by their /56: a host cannot rotate through its own subnet', async () => {
    const { app, guard } = setup({ max: 3, distinctKeys: 100 });
    for (let i = 0; i < 4; i++)
      await request(app)
        .post('/v1/chat')
        .set(from(`2001:db8:abcd:12${i}0::${i + 1}`))
        .set('authorization', 'Bearer wrong')
        .send({});
    await guard.flush();
    expect(
      (
        await request(app)
          .post('/v1/chat')
          .set(from('2001:db8:abcd:12ff::9'))
          .set('authorization', 'Bearer good')
          .send({})
      ).status,
    ).toBe(429);
    expect(
      (
        await request(app)
          .post('/v1/chat')
          .set(from('2001:db8:abcd:1300::1'))
          .set('authorization', 'Bearer good')
          .send({})
      ).status,
    ).toBe(200);
  });

  it('ignores X-Forwarded-For unless Express trusts the proxy', async () => {
    guard = createGuard({ authFailures: { max: 2 }, alerts: { log: false } });
    const app = guardedApp(guard, keys, { trustProxy: false });
    for (let i = 0; i < 3; i++)
      await request(app)
        .post('/v1/chat')
        .set(from(`192.0.2.${i}`))
        .set('authorization', 'Bearer wrong')
        .send({});
    await guard.flush();
    // Every request came from the same socket address, whatever the header claimed.
    expect(
      (await request(app).post('/v1/chat').set(from('192.0.2.200')).set('authorization', 'Bearer good').send({}))
        .status,
    ).toBe(429);
  });

  it('an operator can unblock an address', async () => {
    const { app, guard } = setup({ max: 1, distinctKeys: 100 });
    for (let i = 0; i < 2; i++)
      await request(app).post('/v1/chat').set(from('203.0.113.12')).set('authorization', 'Bearer wrong').send({});
    await guard.flush();
    expect(await guard.unblock('203.0.113.12')).toBe(true);
    expect(
      (await request(app).post('/v1/chat').set(from('203.0.113.12')).set('authorization', 'Bearer good').send({}))
        .status,
    ).toBe(200);
  });
});
