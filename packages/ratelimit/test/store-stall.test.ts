// Redis stalls past the limiter's deadline: the 503 is answered at once, and what the timed-out call counted when it landed is given back.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import type { RequestHandler } from 'express';
import { getContext } from '@tollgate/core';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { sleep, testApp } from './helpers.js';
import { REDIS, StallingRelay } from './stalling-relay.js';

const prefix = `tg-test:${randomUUID()}:`;
const relays: StallingRelay[] = [];
const opened: RedisStores[] = [];

afterAll(async () => {
  const direct = createRedisStores({ url: REDIS.toString(), prefix });
  const keys = (await direct.sendCommand(['KEYS', `${prefix}*`])) as string[];
  if (keys.length > 0) await direct.sendCommand(['DEL', ...keys]);
  await Promise.all([direct, ...opened].map((stores) => stores.close()));
  await Promise.all(relays.map((relay) => relay.close()));
});

/** Stores that reach Redis through a relay the test can stall; their own deadline is longer than the limiter's. */
async function stallableStores(): Promise<{ relay: StallingRelay; stores: RedisStores; direct: RedisStores }> {
  const relay = new StallingRelay();
  relays.push(relay);
  const stores = createRedisStores({ url: await relay.listen(), prefix, timeoutMs: 5000 });
  const direct = createRedisStores({ url: REDIS.toString(), prefix });
  opened.push(stores, direct);
  expect(await stores.ping()).toBe(true);
  return { relay, stores, direct };
}

async function eventually(read: () => Promise<number>, expected: number): Promise<number> {
  let value = await read();
  for (let i = 0; i < 40 && value !== expected; i++) {
    await sleep(50);
    value = await read();
  }
  return value;
}

const estimate600: RequestHandler = (req, res, next) => {
  getContext(req, res).estimate = {
    provider: 'openai',
    model: 'gpt-4o-mini',
    inputTokens: 100,
    maxOutputTokens: 500,
    costNanoUsd: 0,
    totalTokens: 600,
  };
  next();
};

describe('a Redis stall longer than the limiter deadline', () => {
  it('tokenRateLimit answers 503, then gives back the reservation that landed late', async () => {
    const { relay, stores, direct } = await stallableStores();
    const app = testApp([
      estimate600,
      tokenRateLimit({ stores, limit: 1000, timeoutMs: 200, onStoreError: () => undefined, prefix: 'stall-tokens:' }),
    ]);

    relay.stall();
    const stalled = await request(app).post('/v1/chat/completions').set('x-key', 'k1');
    expect(stalled.status).toBe(503);
    relay.resume();

    // The consume reached Redis after the deadline; nothing was served, so nothing may stay counted.
    const counted = await eventually(() => direct.counter.peek('stall-tokens:key:key:k1', { windowMs: 60_000 }), 0);
    expect(counted).toBe(0);
    const after = await request(app).post('/v1/chat/completions').set('x-key', 'k1');
    expect(after.status).toBe(200);
    expect(after.headers['x-ratelimit-remaining-tokens']).toBe('400');
  });

  it('tieredRateLimit answers 503, then gives back the hit that landed late', async () => {
    const { relay, stores } = await stallableStores();
    const app = testApp(
      tieredRateLimit({ stores, limit: 1, timeoutMs: 200, onStoreError: () => undefined, prefix: 'stall-requests:' }),
    );

    relay.stall();
    const stalled = await request(app).post('/v1/chat/completions').set('x-key', 'k2');
    expect(stalled.status).toBe(503);
    relay.resume();
    // Let the late increment (and its give-back) reach Redis.
    expect(await stores.ping()).toBe(true);
    await sleep(200);

    const after = await request(app).post('/v1/chat/completions').set('x-key', 'k2');
    expect(after.status).toBe(200);
    expect(after.headers['x-ratelimit-remaining-requests']).toBe('0');
  });
});
