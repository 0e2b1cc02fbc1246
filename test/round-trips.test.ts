// Redis round trips of the whole chain (auth, request and token limits, metering, budget, settle), once warm: fused, one command before the handler; the settles after it.
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
import { RedisFlightRelay } from './helpers/redis-relay.js';

const relay = new RedisFlightRelay(new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'));
const prefix = `tg-test:${randomUUID()}:`;
const pricing = createPricing();
const key = generateApiKey();
let stores: RedisStores;
const guards: BudgetGuard[] = [];

beforeAll(async () => {
  stores = createRedisStores({ url: await relay.listen(), prefix });
  await stores.keys.put({
    id: 'rt-key',
    sha256: hashApiKey(key),
    tenantId: 'acme',
    tier: 'pro',
    scopes: ['chat'],
    createdAt: new Date().toISOString(),
  });
  for (let i = 0; i < 100 && !stores.keys.cache?.live; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(stores.keys.cache?.live).toBe(true);
});

afterAll(async () => {
  for (const guard of guards) await guard.close();
  const cleanup = createRedisStores({ prefix, keyCache: false });
  await cleanup.keys.delete('rt-key');
  await cleanup.close();
  await stores.close();
  await relay.close();
});

/** Where one request's flights fall: from the first middleware to the handler, and from the handler to the end of its settle. */
interface Trips {
  before: number;
  after: number;
  /** The commands sent before the handler, by name. */
  commandsBefore: string[];
}

/** Marks the flight count at the start, at the handler, and once every settle listener has finished. */
function tripsApp(chain: RequestHandler[], record: (trips: Promise<Trips>) => void): express.Express {
  const app = express();
  app.use(express.json());
  app.post(
    '/v1/chat/completions',
    function markStart(req: Request, res: Response, next: NextFunction) {
      const start = relay.flights;
      const startCommand = relay.commands.length;
      const context = getContext(req, res);
      let atHandler = start;
      let commandsBefore: string[] = [];
      res.locals.markHandler = () => {
        atHandler = relay.flights;
        commandsBefore = relay.commands.slice(startCommand);
      };
      const settle = context.settle.bind(context);
      let settledAt: (flights: number) => void;
      record(
        new Promise<number>((resolve) => (settledAt = resolve)).then((end) => ({
          before: atHandler - start,
          after: end - atHandler,
          commandsBefore,
        })),
      );
      context.settle = (usage) => settle(usage).then(() => settledAt(relay.flights));
      next();
    },
    ...chain,
    function answerAtOnce(req: Request, res: Response) {
      (res.locals.markHandler as () => void)();
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

const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'Say hi.' }], max_tokens: 64 };
const unique = () => `${prefix}${randomUUID()}:`;

function budgets(): BudgetGuard {
  const guard = budgetGuard({
    ledger: stores.ledger,
    pricing,
    // A soft limit with a downgrade map on the asked model: once a read before reserving and one after settling.
    tenants: { acme: { usd: 100, period: 'month', softLimit: 0.8, downgrade: { 'gpt-4o': 'gpt-4o-mini' } } },
    keys: { '*': { usd: 5, period: 'day' } },
    global: { usd: 1000, period: 'day' },
    log: false,
  });
  guards.push(guard);
  return guard;
}

const requestLimits = () =>
  tieredRateLimit({
    stores,
    prefix: unique(),
    layers: [
      { by: 'global', limit: 10_000 },
      { by: 'tenant', limit: 1000 },
      { by: 'key', limit: 1000 },
    ],
  });
const tokenLimits = () =>
  tokenRateLimit({
    stores,
    prefix: unique(),
    layers: [
      { by: 'tenant', limit: 1_000_000 },
      { by: 'key', limit: 1_000_000 },
    ],
  });

/** Warm-up first (script loads, the key cache's first two lookups: a record is kept when found again), then one request counted. */
async function tripsOf(chain: RequestHandler[]): Promise<Trips> {
  let last: Promise<Trips> | undefined;
  const app = tripsApp(chain, (trips) => (last = trips));
  for (let i = 0; i < 4; i++) {
    const response = await request(app).post('/v1/chat/completions').set('authorization', `Bearer ${key}`).send(body);
    expect(response.status).toBe(200);
    await last;
  }
  return last!;
}

/**
 * After the handler: the token windows' adjustment goes at once, the budget's settle with the
 * ledger's next settle batch (settleDelayMs later, shared by every request settling meanwhile):
 * two flights, or one when the batch leaves before the adjustment's answer is back.
 */
function expectSettleFlights(trips: Trips): void {
  expect(trips.after).toBeGreaterThanOrEqual(1);
  expect(trips.after).toBeLessThanOrEqual(2);
}

describe('Redis round trips of the full chain, steady state', () => {
  it('fused: apiKeyAuth -> meter -> combineLimits(tieredRateLimit, tokenRateLimit, budgetGuard) -> handler: 1 before (one command), then the settles', async () => {
    const trips = await tripsOf([
      apiKeyAuth({ keys: stores.keys }),
      meter({ api: 'openai.chat', pricing }),
      combineLimits(requestLimits(), tokenLimits(), budgets()),
    ]);
    // Three request windows, two token windows and the budget reserve: one EVALSHA of the script bundle.
    expect(trips).toMatchObject({ before: 1, commandsBefore: ['EVALSHA'] });
    expectSettleFlights(trips);
  });

  it('unfused, for contrast: each limiter and the budget one sequential trip (auth still none)', async () => {
    const trips = await tripsOf([
      apiKeyAuth({ keys: stores.keys }),
      requestLimits(),
      meter({ api: 'openai.chat', pricing }),
      tokenLimits(),
      budgets(),
    ]);
    expect(trips.before).toBe(3);
    expectSettleFlights(trips);
    // One bundle for each piece: the request layers count in the stores' fixed windows (in the bundle) mounted alone too.
    expect(trips.commandsBefore).toEqual(['EVALSHA', 'EVALSHA', 'EVALSHA']);
  });
});

describe('a stream within its grant', () => {
  it('makes no round trip while it streams: the hold is extended only past what is held (none here)', async () => {
    let last: Promise<Trips> | undefined;
    let duringStream = -1;
    const chain = [
      apiKeyAuth({ keys: stores.keys }),
      meter({ api: 'openai.chat', pricing }),
      combineLimits(requestLimits(), tokenLimits(), budgets()),
    ];
    const marked = tripsApp(chain, (trips) => (last = trips));
    const streaming = express();
    // The trips app's marks, its JSON answer swapped for a stream of 40 events of one token each (the grant is 64).
    streaming.use((_req, res, next) => {
      res.json = function streamInstead(): Response {
        const atStart = relay.flights;
        res.setHeader('content-type', 'text/event-stream');
        const chunk = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
        const base = { id: 'chatcmpl-rt', object: 'chat.completion.chunk', created: 0, model: 'gpt-4o' };
        for (let i = 0; i < 40; i++)
          chunk({ ...base, choices: [{ index: 0, delta: { content: i === 0 ? 'hi' : ' hi' }, finish_reason: null }] });
        chunk({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
        chunk({ ...base, choices: [], usage: { prompt_tokens: 12, completion_tokens: 40, total_tokens: 52 } });
        // Time for a command the stream sent to reach the relay before the count is read.
        setTimeout(() => {
          duringStream = relay.flights - atStart;
          res.end('data: [DONE]\n\n');
        }, 100);
        return res;
      };
      next();
    }, marked);
    for (let i = 0; i < 4; i++) {
      const response = await request(streaming)
        .post('/v1/chat/completions')
        .set('authorization', `Bearer ${key}`)
        .send({ ...body, stream: true });
      expect(response.status).toBe(200);
      expect(response.text).toContain('[DONE]');
      await last;
      expect(duringStream).toBe(0);
    }
    expect(await last!).toMatchObject({ before: 1, commandsBefore: ['EVALSHA'] });
  });
});
