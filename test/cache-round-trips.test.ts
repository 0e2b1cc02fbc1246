// The response cache on Redis next to the fused limits: its GET travels with their one command, so a miss waits for no extra round trip.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import request from 'supertest';
import { apiErrorHandler, createPricing, getContext } from '@tollgate/core';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { meter } from '@tollgate/metering';
import { combineLimits, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { budgetGuard, type BudgetGuard } from '@tollgate/budget';
import { createResponseCache, RedisCacheStore } from '@tollgate/cache';
import { RedisFlightRelay } from './helpers/redis-relay.js';
import { deleteRedisPrefix } from './helpers/proxy.js';

const relay = new RedisFlightRelay(new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'));
const prefix = `tg-test:${randomUUID()}:`;
const pricing = createPricing();
const key = generateApiKey();
let stores: RedisStores;
let guard: BudgetGuard;

beforeAll(async () => {
  // A deadline a busy machine keeps (the first calls load the script bundle through the relay): this test counts
  // flights, not deadlines, and a 500 ms default answered 503 once when the whole suite ran on two loaded cores.
  stores = createRedisStores({ url: await relay.listen(), prefix, timeoutMs: 5_000 });
  await stores.keys.put({
    id: 'cache-rt-key',
    sha256: hashApiKey(key),
    tenantId: 'acme',
    tier: 'pro',
    scopes: ['chat'],
    createdAt: new Date().toISOString(),
  });
  for (let i = 0; i < 100 && !stores.keys.cache?.live; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(stores.keys.cache?.live).toBe(true);
  guard = budgetGuard({ ledger: stores.ledger, pricing, tenants: { acme: { usd: 100, period: 'month' } }, log: false });
});

afterAll(async () => {
  await guard.close();
  await stores.close();
  await relay.close();
  await deleteRedisPrefix(prefix);
});

interface Trips {
  before: number;
  commandsBefore: string[];
  cache: string | undefined;
}

/** The flights and commands from the first middleware to the handler (or to the end of a hit's answer). */
function tripsApp(chain: RequestHandler[], record: (trips: Trips) => void): express.Express {
  const app = express();
  app.use(express.json());
  app.post(
    '/v1/chat/completions',
    function markStart(req: Request, res: Response, next: NextFunction) {
      getContext(req, res);
      const start = relay.flights;
      const startCommand = relay.commands.length;
      const mark = () =>
        record({
          before: relay.flights - start,
          commandsBefore: relay.commands.slice(startCommand),
          cache: res.getHeader('x-tollgate-cache') as string | undefined,
        });
      res.locals.mark = mark;
      // A hit never reaches the handler: its count is taken when its answer is written.
      res.once('finish', () => {
        if (res.getHeader('x-tollgate-cache') === 'hit') mark();
      });
      next();
    },
    ...chain,
    function answerAtOnce(req: Request, res: Response) {
      (res.locals.mark as () => void)();
      res.json({
        id: 'chatcmpl-rt',
        object: 'chat.completion',
        created: 0,
        model: String(req.body.model),
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
      });
    },
  );
  app.use(apiErrorHandler());
  return app;
}

describe('the response cache on Redis beside the fused limits', () => {
  it("a miss: the GET and the limits' one command share one flight; a hit is served after the same flight", async () => {
    const cache = createResponseCache({ store: new RedisCacheStore({ sendCommand: stores.sendCommand, prefix }) });
    const requestLimits = tieredRateLimit({
      stores,
      prefix: `${prefix}rl:`,
      layers: [
        { by: 'tenant', limit: 1000 },
        { by: 'key', limit: 1000 },
      ],
    });
    const limits = combineLimits(
      requestLimits,
      tokenRateLimit({ stores, prefix: `${prefix}tl:`, layers: [{ by: 'key', limit: 1_000_000 }] }),
      guard,
    );
    const seen: Trips[] = [];
    const app = tripsApp(
      [
        apiKeyAuth({ keys: stores.keys }),
        meter({ api: 'openai.chat', pricing }),
        cache.lookup,
        cache.chooseLimits({ hit: combineLimits(requestLimits), miss: limits }),
        cache.answer,
      ],
      (trips) => seen.push(trips),
    );
    const send = (content: string) =>
      request(app)
        .post('/v1/chat/completions')
        .set('authorization', `Bearer ${key}`)
        .send({ model: 'gpt-4o', messages: [{ role: 'user', content }], max_tokens: 64 });
    // Warm-up: the scripts loaded, the key cached.
    for (let i = 0; i < 3; i++) expect((await send(`warm ${i} ${randomUUID()}`)).status).toBe(200);
    const prompt = `Say hi. ${randomUUID()}`;
    // The warm-ups' settles (batched a few ms later) land first, so every flight counted is this request's.
    const quiet = () => new Promise((resolve) => setTimeout(resolve, 100));
    await quiet();
    expect((await send(prompt)).headers['x-tollgate-cache']).toBe('miss');
    const miss = seen.at(-1)!;
    expect(miss.before).toBe(1);
    expect([...miss.commandsBefore].sort()).toEqual(['EVALSHA', 'GET']);
    // The answer is stored after the settle; the next identical request is a hit.
    let hit: Trips | undefined;
    for (let i = 0; i < 20 && hit?.cache !== 'hit'; i++) {
      await quiet();
      await send(prompt);
      hit = seen.at(-1);
    }
    expect(hit).toMatchObject({ cache: 'hit', before: 1 });
    expect([...hit!.commandsBefore].sort()).toEqual(['EVALSHA', 'GET']);
  });
});
