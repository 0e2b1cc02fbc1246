// readLimits: where each layer stands for a caller, read from the stores the limiters count in (memory, Redis, Redis in blocks), counting nothing.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { blockStores, createMemoryStores } from '@tollgate/core';
import type { Identity, TollgateStores } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import { combineLimits, concurrencyLimit, readLimits, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import type { LimitReading } from '@tollgate/ratelimit';
import { deleteKeysWithPrefix } from '../../../test/conformance/redis.js';
import { waitFor } from '../../../test/helpers/proxy.js';
import { estimateFromHeader, holdingHandler, listen, send, testApp } from './helpers.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `tg-test:readings:${randomUUID()}:`;
const opened: TollgateStores[] = [];

afterAll(async () => {
  await Promise.all(opened.map((stores) => stores.close()));
  // This file's keys only (its own prefix): the shared Redis is never flushed.
  await deleteKeysWithPrefix(REDIS_URL, PREFIX);
});

const estimate = estimateFromHeader;

const BACKENDS: [string, () => TollgateStores][] = [
  ['memory', () => createMemoryStores({ sweepIntervalMs: 0 })],
  ['Redis', () => createRedisStores({ url: REDIS_URL, prefix: `${PREFIX}${randomUUID()}:` })],
  // Blocks open at a subject's second request: the store counts more than was handed out.
  ['Redis in blocks', () => blockStores(createRedisStores({ url: REDIS_URL, prefix: `${PREFIX}${randomUUID()}:` }))],
];

function identity(keyId: string, tenantId: string, tier = 'pro'): Identity {
  return { keyId, tenantId, tier, scopes: [], authMethod: 'api_key' };
}

/** Readings as `kind layer subject: used/limit remaining`, sorted: what an operator would read. */
function summary(readings: LimitReading[]): string[] {
  return readings.map((r) => `${r.kind} ${r.layer} ${r.subject}: ${r.used}/${r.limit} ${r.remaining}`).sort();
}

describe.each(BACKENDS)('readLimits on %s stores', (_name, open) => {
  const stores = open();
  opened.push(stores);
  const limiter = combineLimits(
    tieredRateLimit({
      stores,
      layers: [
        { name: 'global', by: 'global', limit: 1000 },
        { name: 'tenant', by: 'tenant', tiers: { free: 10, pro: 600 } },
        { name: 'key', by: 'key', tiers: { free: 5, pro: 20 } },
      ],
    }),
    tokenRateLimit({
      stores,
      layers: [
        { name: 'tenant', by: 'tenant', tiers: { pro: 100_000 } },
        { name: 'key', by: 'key', tiers: { pro: 40_000 } },
      ],
    }),
    concurrencyLimit({ stores, by: 'key', name: 'key', tiers: { pro: 4 }, limit: 1 }),
  );
  const held = holdingHandler();
  const app = testApp([estimate, limiter], held.handler);
  const tenant = `acme-${randomUUID()}`;
  const a = identity('a', tenant);
  const call = (key: string, tokens: number) =>
    request(app)
      .post('/')
      .set({ 'x-key': key, 'x-tenant': tenant, 'x-tier': 'pro', 'x-tokens': String(tokens) });

  it("reads each layer's count and the caller's tier limit, and counts nothing", async () => {
    const before = Date.now();
    for (const tokens of [100, 250, 400]) expect((await call('a', tokens)).status).toBe(200);
    expect((await call('b', 50)).status).toBe(200);
    // A slot is given back on the answer's 'finish', which may come after the client has read it: wait for it (bounded).
    const readings = await waitFor(async () => {
      const read = await readLimits(limiter, a);
      return read.find((r) => r.kind === 'concurrency')?.used === 0 ? read : undefined;
    }, 'the concurrency slot given back');
    expect(summary(readings)).toEqual(
      summary([
        { kind: 'requests', layer: 'global', subject: 'global', used: 4, limit: 1000, remaining: 996 },
        { kind: 'requests', layer: 'tenant', subject: `tenant:${tenant}`, used: 4, limit: 600, remaining: 596 },
        { kind: 'requests', layer: 'key', subject: 'key:a', used: 3, limit: 20, remaining: 17 },
        { kind: 'tokens', layer: 'tenant', subject: `tenant:${tenant}`, used: 800, limit: 100_000, remaining: 99_200 },
        { kind: 'tokens', layer: 'key', subject: 'key:a', used: 750, limit: 40_000, remaining: 39_250 },
        { kind: 'concurrency', layer: 'key', subject: 'key:a', used: 0, limit: 4, remaining: 4 },
      ] as LimitReading[]),
    );
    for (const reading of readings) {
      if (reading.kind === 'concurrency') {
        expect(reading.resetAt).toBeUndefined();
        continue;
      }
      expect(reading.windowMs).toBe(60_000);
      expect(reading.resetAt).toBeGreaterThan(before);
      expect(reading.resetAt).toBeLessThanOrEqual(Date.now() + 60_000 + 1_000);
    }
    // Read again: the same numbers, and the next request finds its window where the last one left it.
    expect(summary(await readLimits(limiter, a))).toEqual(summary(readings));
    const next = await call('a', 10);
    expect(next.headers['x-ratelimit-remaining-requests']).toBe('16');
    // The key's token window ends where the store says it does (its key's own phase, not the clock's minute): the
    // binding layer's reset header, a duration from the answer, names the same time.
    const answeredAt = Date.now();
    const [, minutes, seconds] = /^(?:(\d+)m)?([\d.]+)s$/.exec(String(next.headers['x-ratelimit-reset-tokens']))!;
    const headerReset = answeredAt + (Number(minutes ?? 0) * 60 + Number(seconds)) * 1000;
    const keyTokens = readings.find((r) => r.kind === 'tokens' && r.layer === 'key')!;
    expect(Math.abs(keyTokens.resetAt! - headerReset)).toBeLessThan(1_500);
  });

  it('reads the layers named only, with their own caller: another key of the tenant, a tier of its own', async () => {
    const b = await readLimits(limiter, identity('b', tenant, 'free'), { layers: ['key'] });
    expect(summary(b)).toEqual(
      summary([
        { kind: 'requests', layer: 'key', subject: 'key:b', used: 1, limit: 5, remaining: 4 },
        // The free tier has no token limit of its own: the limiter's default.
        { kind: 'tokens', layer: 'key', subject: 'key:b', used: 50, limit: 10_000, remaining: 9_950 },
        { kind: 'concurrency', layer: 'key', subject: 'key:b', used: 0, limit: 1, remaining: 1 },
      ] as LimitReading[]),
    );
    const fresh = await readLimits(limiter, identity('c', `other-${randomUUID()}`), { layers: ['tenant'] });
    expect(fresh.map((r) => [r.kind, r.used, r.resetAt])).toEqual([
      ['requests', 0, undefined],
      ['tokens', 0, undefined],
    ]);
  });

  it('reads the requests in flight', async () => {
    const { server, port } = await listen(app);
    try {
      const headers = { 'x-key': 'a', 'x-tenant': tenant, 'x-tier': 'pro', 'x-hold': '1' };
      const first = send(port, { ...headers, 'x-name': 'one' });
      const second = send(port, { ...headers, 'x-name': 'two' });
      await held.untilEntered(held.entered.length + 2);
      const inFlight = (await readLimits(limiter, a, { layers: ['key'] })).find((r) => r.kind === 'concurrency');
      expect(inFlight).toMatchObject({ used: 2, limit: 4, remaining: 2 });
      held.release('one');
      held.release('two');
      await Promise.all([first.response, second.response]);
    } finally {
      server.close();
    }
  });
});

describe('readLimits', () => {
  it('reads nothing of a middleware that is no limiter, nor of layers counted by a function of the app', async () => {
    const byHeader = tieredRateLimit({ by: (req) => req.header('x-team'), limit: 3 });
    expect(await readLimits(byHeader, identity('a', 'acme'))).toEqual([]);
    expect(await readLimits((_req, _res, next) => next(), identity('a', 'acme'))).toEqual([]);
  });

  it('reads a tenant window in process memory without stores', async () => {
    const limiter = tieredRateLimit({ by: 'tenant', limit: 7 });
    const app = testApp(limiter);
    await request(app).get('/').set({ 'x-key': 'k', 'x-tenant': 'initech' });
    const [reading] = await readLimits(limiter, identity('other', 'initech'));
    expect(reading).toMatchObject({ kind: 'requests', subject: 'tenant:initech', used: 1, limit: 7, remaining: 6 });
  });
});
