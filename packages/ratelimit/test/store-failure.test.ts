// Store down or slow: failOpen lets requests through, failClosed answers 503 with Retry-After; never a hang or an unhandled rejection.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import type { RequestHandler } from 'express';
import { createMemoryStores, getContext, type TollgateStores } from '@tollgate/core';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import {
  combineLimits,
  concurrencyLimit,
  tieredRateLimit,
  tokenRateLimit,
  type StoresWithCommands,
} from '@tollgate/ratelimit';
import type { StoreFailurePolicy } from '../src/types.js';
import { testApp } from './helpers.js';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
const opened: RedisStores[] = [];

beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});

afterAll(async () => {
  await Promise.all(opened.map((stores) => stores.close()));
  // Late rejections of timed-out calls would surface by now.
  await new Promise((resolve) => setTimeout(resolve, 100));
  process.off('unhandledRejection', onUnhandled);
  expect(unhandled).toEqual([]);
});

/** Redis at a port nobody listens on: every command fails. */
function closedPortStores(): RedisStores {
  const stores = createRedisStores({ url: 'redis://127.0.0.1:1', prefix: `tg-test:${randomUUID()}:`, timeoutMs: 300 });
  opened.push(stores);
  return stores;
}

const never = () => new Promise<never>(() => undefined);

/** Stores whose every call hangs: the middleware's own deadline must answer. */
function hangingStores(): StoresWithCommands {
  const memory = createMemoryStores({ sweepIntervalMs: 0 });
  return {
    kind: 'hanging',
    keys: memory.keys,
    counter: { consume: never, adjust: never, peek: never },
    ledger: {
      reserve: never,
      settle: never,
      release: never,
      usage: never,
      adjustSpent: never,
      addCredit: never,
      resetScope: never,
    },
    sendCommand: never,
    close: memory.close,
  };
}

const withEstimate: RequestHandler = (req, res, next) => {
  getContext(req, res).estimate = {
    provider: 'openai',
    model: 'm',
    inputTokens: 10,
    maxOutputTokens: 10,
    costNanoUsd: 0,
    totalTokens: 20,
  };
  next();
};

type Factory = (stores: StoresWithCommands, onStoreFailure: StoreFailurePolicy, errors: unknown[]) => RequestHandler[];

const limiters: [string, Factory][] = [
  [
    'tieredRateLimit',
    (stores, onStoreFailure, errors) => [
      tieredRateLimit({ stores, onStoreFailure, timeoutMs: 100, onStoreError: (e) => errors.push(e) }),
    ],
  ],
  // Combined, the layers are counted in the stores directly (not through express-rate-limit): the same policy applies.
  [
    'tieredRateLimit in combineLimits',
    (stores, onStoreFailure, errors) => [
      combineLimits(
        tieredRateLimit({
          stores,
          onStoreFailure,
          timeoutMs: 100,
          onStoreError: (e) => errors.push(e),
          layers: [{ by: 'global' }, { by: 'key' }],
        }),
      ),
    ],
  ],
  [
    'tokenRateLimit',
    (stores, onStoreFailure, errors) => [
      withEstimate,
      tokenRateLimit({
        stores: stores as TollgateStores,
        onStoreFailure,
        timeoutMs: 100,
        onStoreError: (e) => errors.push(e),
      }),
    ],
  ],
  [
    'concurrencyLimit',
    (stores, onStoreFailure, errors) => [
      concurrencyLimit({
        stores: stores as TollgateStores,
        onStoreFailure,
        timeoutMs: 100,
        onStoreError: (e) => errors.push(e),
      }),
    ],
  ],
];

const stores: [string, () => StoresWithCommands][] = [
  ['Redis on a closed port', closedPortStores],
  ['a store that never answers', hangingStores],
];

describe.each(limiters)('%s when the store fails', (_name, make) => {
  it.each(stores)('failClosed answers 503 service_unavailable with Retry-After (%s)', async (_label, createStores) => {
    const errors: unknown[] = [];
    const app = testApp(make(createStores(), 'failClosed', errors));
    for (let i = 0; i < 2; i++) {
      const response = await request(app).post('/v1/chat/completions').set('x-key', 'k1');
      expect(response.status).toBe(503);
      expect(response.body.error).toMatchObject({ code: 'service_unavailable', type: 'server_error' });
      expect(response.headers['retry-after']).toBe('1');
    }
    expect(errors.length).toBeGreaterThanOrEqual(2);
  });

  it.each(stores)('failOpen lets the request through (%s)', async (_label, createStores) => {
    const errors: unknown[] = [];
    const app = testApp(make(createStores(), 'failOpen', errors));
    for (let i = 0; i < 2; i++) {
      const response = await request(app).post('/v1/chat/completions').set('x-key', 'k1');
      expect(response.status).toBe(200);
    }
    expect(errors.length).toBeGreaterThanOrEqual(2);
  });
});

describe('recovery', () => {
  it('tieredRateLimit counts again once Redis answers, even if it was down when the limiter was built', async () => {
    const real = createRedisStores({ prefix: `tg-test:${randomUUID()}:` });
    opened.push(real);
    let down = true;
    // Stores that send commands but keep no fixed windows of their own: their request windows are rate-limit-redis's.
    const { fixedWindow: _ownWindows, ...commandsOnly } = real;
    const flaky: StoresWithCommands = {
      ...commandsOnly,
      sendCommand: (args) => (down ? Promise.reject(new Error('connection refused')) : real.sendCommand(args)),
    };
    const app = testApp(
      tieredRateLimit({
        stores: flaky,
        limit: 2,
        onStoreFailure: 'failClosed',
        onStoreError: () => undefined,
        prefix: `tg-test:${randomUUID()}:`,
      }),
    );
    expect((await request(app).get('/').set('x-key', 'k1')).status).toBe(503);
    down = false;
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await request(app).get('/').set('x-key', 'k1')).status);
    expect(statuses).toEqual([200, 200, 429]);
  });
});
