// concurrencyLimit: N in flight per caller; released on finish, error and client abort (a real client going away); Redis-shared; TTL.
import type http from 'node:http';
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createMemoryStores } from '@tollgate/core';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { concurrencyLimit } from '@tollgate/ratelimit';
import { holdingHandler, listen, send, testApp } from './helpers.js';

const servers: http.Server[] = [];
const opened: RedisStores[] = [];
afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  await Promise.all(opened.map((stores) => stores.close()));
});

async function serve(middleware: Parameters<typeof testApp>[0], hold: ReturnType<typeof holdingHandler>) {
  const { server, port } = await listen(testApp(middleware, hold.handler));
  servers.push(server);
  return port;
}

describe('concurrencyLimit', () => {
  it('allows N in flight per key, refuses the next with 429, and frees the slot when a response finishes', async () => {
    const hold = holdingHandler();
    const port = await serve(concurrencyLimit({ limit: 2 }), hold);
    const a = send(port, { 'x-key': 'k1', 'x-name': 'a', 'x-hold': '' });
    const b = send(port, { 'x-key': 'k1', 'x-name': 'b', 'x-hold': '' });
    await hold.untilEntered(2);
    const refused = await send(port, { 'x-key': 'k1', 'x-name': 'c' }).response;
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body).error).toMatchObject({ code: 'rate_limit_exceeded' });
    expect(JSON.parse(refused.body).error.message).toBe(
      'Too many concurrent requests (key): at most 2 in flight. Please retry when one finishes.',
    );
    expect(refused.headers['retry-after']).toBe('1');
    // Another key has its own slots.
    expect((await send(port, { 'x-key': 'k2', 'x-name': 'other' }).response).status).toBe(200);

    hold.release('a');
    expect((await a.response).status).toBe(200);
    expect((await send(port, { 'x-key': 'k1', 'x-name': 'd' }).response).status).toBe(200);
    hold.release('b');
    await b.response;
  });

  it('frees the slot when the client aborts mid-request', async () => {
    const hold = holdingHandler();
    const port = await serve(concurrencyLimit({ limit: 1 }), hold);
    const a = send(port, { 'x-key': 'k-abort', 'x-name': 'a', 'x-hold': '' });
    await hold.untilEntered(1);
    expect((await send(port, { 'x-key': 'k-abort', 'x-name': 'b' }).response).status).toBe(429);
    a.abort();
    await hold.closed('a');
    // The handler never answered, yet the slot is free.
    expect((await send(port, { 'x-key': 'k-abort', 'x-name': 'c' }).response).status).toBe(200);
    hold.release('a');
  });

  it('frees the slot when the handler fails', async () => {
    const hold = holdingHandler();
    const port = await serve(concurrencyLimit({ limit: 1 }), hold);
    const a = send(port, { 'x-key': 'k-error', 'x-name': 'a', 'x-hold': '', 'x-fail': '' });
    await hold.untilEntered(1);
    hold.release('a');
    expect((await a.response).status).toBe(500);
    expect((await send(port, { 'x-key': 'k-error', 'x-name': 'b' }).response).status).toBe(200);
  });

  it('limits per tier and per tenant', async () => {
    const hold = holdingHandler();
    const app = testApp(concurrencyLimit({ by: 'tenant', tiers: { free: 1, pro: 3 } }), hold.handler);
    const { server, port } = await listen(app);
    servers.push(server);
    const held = [1, 2, 3].map((i) =>
      send(port, { 'x-key': `k${i}`, 'x-tenant': 'acme', 'x-tier': 'pro', 'x-name': `p${i}`, 'x-hold': '' }),
    );
    await hold.untilEntered(3);
    expect(
      (await send(port, { 'x-key': 'k4', 'x-tenant': 'acme', 'x-tier': 'pro', 'x-name': 'p4' }).response).status,
    ).toBe(429);
    expect(
      (await send(port, { 'x-key': 'k5', 'x-tenant': 'globex', 'x-tier': 'free', 'x-name': 'g1' }).response).status,
    ).toBe(200);
    for (const i of [1, 2, 3]) hold.release(`p${i}`);
    await Promise.all(held.map((h) => h.response));
  });

  it('shares the slots between two app instances through the Redis ledger', async () => {
    const prefix = `tg-test:${randomUUID()}:`;
    const storesA = createRedisStores({ prefix });
    const storesB = createRedisStores({ prefix });
    opened.push(storesA, storesB);
    const hold = holdingHandler();
    const portA = await serve(concurrencyLimit({ limit: 1, stores: storesA }), hold);
    const portB = await serve(concurrencyLimit({ limit: 1, stores: storesB }), hold);
    const a = send(portA, { 'x-key': 'k-shared', 'x-name': 'a', 'x-hold': '' });
    await hold.untilEntered(1);
    expect((await send(portB, { 'x-key': 'k-shared', 'x-name': 'b' }).response).status).toBe(429);
    a.abort();
    await hold.closed('a');
    // Release is one more store call after 'close': poll the other instance until it sees the slot free.
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++)
      status = (await send(portB, { 'x-key': 'k-shared', 'x-name': `c${i}` }).response).status;
    expect(status).toBe(200);
    hold.release('a');
  });

  it('lets the slot of a crashed process expire after the TTL', async () => {
    let now = Date.UTC(2026, 10, 22, 9, 0, 0);
    const stores = createMemoryStores({ clock: () => now, sweepIntervalMs: 0 });
    // What a process that died mid-request leaves behind: a slot nobody will release.
    await stores.ledger.reserve({
      id: 'crashed',
      amount: 1,
      scopes: [{ key: 'tg:inflight:key:key:k-crash', limit: 1, expiresAt: now + 60_000 }],
      ttlMs: 60_000,
    });
    const app = testApp(concurrencyLimit({ limit: 1, stores, ttl: '1m' }));
    expect((await request(app).get('/').set('x-key', 'k-crash')).status).toBe(429);
    now += 60_001;
    expect((await request(app).get('/').set('x-key', 'k-crash')).status).toBe(200);
    // And the slot it took was released on finish.
    expect((await stores.ledger.usage(['tg:inflight:key:key:k-crash']))[0]!.reserved).toBe(0);
  });

  it('rejects bad options', () => {
    expect(() => concurrencyLimit({ limit: -1 })).toThrow(/ERR_TG_RATELIMIT_INVALID_LIMIT/);
    expect(() => concurrencyLimit({ ttl: 'forever' })).toThrow(/ERR_TG_RATELIMIT_INVALID_TTL/);
    expect(() => concurrencyLimit({ window: '1m' } as never)).toThrow(/ERR_TG_RATELIMIT_UNKNOWN_OPTION/);
  });
});
