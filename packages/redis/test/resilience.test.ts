// Redis away, slow or restarted: every call ends by its deadline, nothing rejects unhandled, the stores recover.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import net from 'node:net';
import { StoreTimeoutError } from '@tollgate/core';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { eventually, freePort, PrivateRedis, REDIS_URL, uniquePrefix } from './helpers.js';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeAll(() => void process.on('unhandledRejection', onUnhandled));
afterAll(() => void process.off('unhandledRejection', onUnhandled));
afterEach(async () => {
  // Give stray promises a turn to surface before checking.
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(unhandled).toEqual([]);
});

const scope = () => ({ key: 'tenant:acme', limit: 100, expiresAt: Date.now() + 60_000 });

describe('a Redis that accepts connections but never answers', () => {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  let stores: RedisStores;

  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    stores = createRedisStores({ url: `redis://127.0.0.1:${port}`, prefix: 'tg-test:blackhole:', timeoutMs: 150 });
  });

  afterAll(async () => {
    await stores.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('rejects every operation with StoreTimeoutError by the deadline', async () => {
    await expect(stores.ledger.reserve({ id: 'r', amount: 1, scopes: [scope()], ttlMs: 1000 })).rejects.toBeInstanceOf(
      StoreTimeoutError,
    );
    await expect(stores.counter.consume('k', 1, { limit: 1, windowMs: 1000 })).rejects.toBeInstanceOf(
      StoreTimeoutError,
    );
    await expect(stores.keys.findByHash('abc')).rejects.toBeInstanceOf(StoreTimeoutError);
    await expect(stores.sendCommand(['GET', 'x'])).rejects.toBeInstanceOf(StoreTimeoutError);
  });

  it('ping answers false instead of rejecting', async () => {
    expect(await stores.ping()).toBe(false);
  });
});

describe('a Redis that stops and comes back', () => {
  let redis: PrivateRedis;
  let stores: RedisStores;

  beforeAll(async () => {
    redis = new PrivateRedis(await freePort());
    await redis.start();
    stores = createRedisStores({ url: redis.url, prefix: 'tg-test:restart:', timeoutMs: 300 });
  });

  afterAll(async () => {
    await stores.close();
    await redis.stop();
  });

  it('fails fast while it is down and recovers by itself, scripts reloaded', async () => {
    expect(await stores.ledger.reserve({ id: 'before', amount: 10, scopes: [scope()], ttlMs: 60_000 })).toMatchObject({
      ok: true,
    });
    expect(await stores.ping()).toBe(true);

    await redis.stop();
    await expect(stores.ledger.reserve({ id: 'down', amount: 10, scopes: [scope()], ttlMs: 60_000 })).rejects.toThrow();
    await expect(stores.counter.consume('k', 1, { limit: 5, windowMs: 1000 })).rejects.toThrow();
    expect(await stores.ping()).toBe(false);

    // A fresh server: empty script cache, so the first call of each script goes NOSCRIPT -> EVAL.
    await redis.start();
    await eventually(() => stores.ledger.reserve({ id: 'after', amount: 10, scopes: [scope()], ttlMs: 60_000 }));
    expect(await stores.ledger.settle('after', 3)).toMatchObject({ settled: true, reserved: 10 });
    expect((await stores.counter.consume('k', 1, { limit: 5, windowMs: 1000 })).allowed).toBe(true);
    expect(await stores.ping()).toBe(true);
  });

  it('does not run a command late that was refused while Redis was down', async () => {
    await redis.stop();
    await expect(stores.ledger.reserve({ id: 'late', amount: 50, scopes: [scope()], ttlMs: 60_000 })).rejects.toThrow();
    await redis.start();
    await eventually(() => stores.ledger.usage(['tenant:acme']));
    // The refused reserve must not have been queued and replayed after the reconnect.
    expect(await stores.ledger.usage(['tenant:acme'])).toEqual([
      { key: 'tenant:acme', spent: 0, reserved: 0, credit: 0 },
    ]);
  });
});

describe('a Redis that is not there yet when the stores are created', () => {
  let redis: PrivateRedis;
  let stores: RedisStores;

  beforeAll(async () => {
    redis = new PrivateRedis(await freePort());
    stores = createRedisStores({ url: redis.url, prefix: 'tg-test:late-start:', timeoutMs: 200 });
  });

  afterAll(async () => {
    await stores.close();
    await redis.stop();
  });

  it('times out calls until it starts, then serves them', async () => {
    const window = { limit: 5, windowMs: 60_000 };
    await expect(stores.counter.consume('k', 1, window)).rejects.toBeInstanceOf(StoreTimeoutError);
    await redis.start();
    // Retries go to another key: on a loaded machine a retry can time out here and still run on the server.
    expect((await eventually(() => stores.counter.consume('warm-up', 1, window))).allowed).toBe(true);
    // The consume that timed out before the start was not replayed: 'k' counts only this one.
    expect(await stores.counter.consume('k', 1, window)).toMatchObject({ allowed: true, remaining: 4 });
  });
});

describe('this process stalled while Redis answered', () => {
  let stores: RedisStores;

  beforeAll(async () => {
    stores = createRedisStores({ url: REDIS_URL, prefix: uniquePrefix(), timeoutMs: 100, keyCache: false });
    await stores.counter.consume('warm-up', 1, { limit: 5, windowMs: 60_000 });
  });

  afterAll(async () => {
    await stores.close();
  });

  /** Holds this thread for `ms` from a setImmediate: the loop then runs its timers before it reads the replies. */
  const stall = (ms: number) =>
    new Promise<void>((resolve) =>
      setImmediate(() => {
        const until = performance.now() + ms;
        while (performance.now() < until);
        resolve();
      }),
    );

  it('takes the replies that came in during the stall: the store is not blamed for the time it could not be heard', async () => {
    const window = { limit: 5, windowMs: 60_000 };
    // Bundled script calls (the batcher's deadlines) and a plain command (withTimeout's) alike.
    const calls = Promise.all([
      stores.counter.consume('k', 1, window),
      stores.ledger.reserve({ id: 'r', amount: 1, scopes: [scope()], ttlMs: 1000 }),
      stores.sendCommand(['PING']),
    ]);
    await stall(400);
    const [consumed, reserved, pong] = await calls;
    expect(consumed).toMatchObject({ allowed: true, remaining: 4 });
    expect(reserved).toMatchObject({ ok: true });
    expect(pong).toBe('PONG');
  });
});

describe('close', () => {
  it('closes a client that never connected', async () => {
    const stores = createRedisStores({ url: `redis://127.0.0.1:${await freePort()}`, timeoutMs: 100 });
    await expect(stores.ping()).resolves.toBe(false);
    await stores.close();
    await stores.close();
  });
});
