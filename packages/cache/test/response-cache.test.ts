// createResponseCache mounted after meter(): what it stores, whom it serves, how a hit is billed, and its options.
import { beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { Request, Response } from 'express';
import request from 'supertest';
import { createPricing, getContext, type UsageRecord } from '@tollgate/core';
import { exactUsd } from '@tollgate/core/costs';
import { meter } from '@tollgate/metering';
import { preloadTokenizers, providerCall } from '@tollgate/providers';
import { CACHE_HEADER } from '../src/response-cache.js';
import { cacheKey } from '../src/cache-key.js';
import { createResponseCache, MemoryCacheStore, type CacheStore, type ResponseCacheOptions } from '@tollgate/cache';

const pricing = createPricing();

// meter() loads the tokenizers in the background; loaded here first, before any test ends.
beforeAll(async () => {
  await preloadTokenizers();
});

function chatAnswer(content: string) {
  return {
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [
      { index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: 'stop' },
    ],
    usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 },
  };
}

/** An app with a fake provider that counts its calls: `x-fail` makes it answer 500. */
function appWith(options: ResponseCacheOptions = {}) {
  const state = { calls: 0, records: [] as UsageRecord[] };
  const cache = createResponseCache(options);
  const app = express();
  app.use(express.json());
  app.use((req, res, next) => {
    getContext(req, res).identity = {
      keyId: String(req.headers['x-key'] ?? 'k1'),
      tenantId: String(req.headers['x-tenant'] ?? 'acme'),
      scopes: [],
      authMethod: 'api_key',
    };
    next();
  });
  const sink = {
    write: (record: UsageRecord) => void state.records.push(record),
    flush: async () => undefined,
    close: async () => undefined,
  };
  app.post(
    '/v1/chat/completions',
    meter({ api: 'openai.chat', pricing, sinks: [sink] }),
    cache.middleware,
    (req: Request, res: Response) => {
      state.calls++;
      if (req.headers['x-fail']) {
        res.status(500).json({ error: { message: 'upstream broke', type: 'server_error', code: null, param: null } });
        return;
      }
      res.json(chatAnswer(`answer ${state.calls} ${'x'.repeat(Number(req.headers['x-pad'] ?? 0))}`));
    },
  );
  return { app, state, cache };
}

const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 600 };
/** An answer's text less the cost the meter told in its usage: a hit costs its own, not what the miss did. */
const COST_MEMBER = /,"cost_usd":[\d.]+/;
const withoutCost = (text: string): string => text.replace(COST_MEMBER, '');
/** The `cost_usd` the meter wrote into a JSON answer's usage. */
const costOf = (answer: { body: { usage?: { cost_usd?: unknown } } }): unknown => answer.body.usage?.cost_usd;
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('createResponseCache', () => {
  it('bills a configured fraction of a hit and records the rest as saved', async () => {
    const { app, state } = appWith({ costFraction: 0.25 });
    const miss = await request(app).post('/v1/chat/completions').send(body);
    expect(miss.headers[CACHE_HEADER]).toBe('miss');
    await settle();
    const hit = await request(app).post('/v1/chat/completions').send(body);
    expect(hit.headers[CACHE_HEADER]).toBe('hit');
    expect(withoutCost(hit.text)).toBe(withoutCost(miss.text));
    await settle();
    expect(state.calls).toBe(1);
    const [first, second] = state.records;
    const full = first!.costNanoUsd;
    expect(second).toMatchObject({
      usageSource: 'cache',
      costNanoUsd: Math.ceil(full * 0.25),
      savedNanoUsd: full - Math.ceil(full * 0.25),
    });
    // Each answer tells what it cost: the miss the whole answer, the hit its fraction.
    expect([costOf(miss), miss.headers['x-tollgate-cost-usd']]).toEqual([Number(exactUsd(full)), exactUsd(full)]);
    expect([costOf(hit), hit.headers['x-tollgate-cost-usd']]).toEqual([
      Number(exactUsd(second!.costNanoUsd)),
      exactUsd(second!.costNanoUsd),
    ]);
  });

  it('shares answers by the scope it was given', async () => {
    const global = appWith({ scope: 'global' });
    await request(global.app).post('/v1/chat/completions').set('x-tenant', 'acme').send(body);
    await settle();
    expect(
      (await request(global.app).post('/v1/chat/completions').set('x-tenant', 'globex').send(body)).headers[
        CACHE_HEADER
      ],
    ).toBe('hit');

    const perKey = appWith({ scope: 'key' });
    await request(perKey.app).post('/v1/chat/completions').set('x-key', 'k1').send(body);
    await settle();
    expect(
      (await request(perKey.app).post('/v1/chat/completions').set('x-key', 'k2').send(body)).headers[CACHE_HEADER],
    ).toBe('miss');
    expect(
      (await request(perKey.app).post('/v1/chat/completions').set('x-key', 'k1').send(body)).headers[CACHE_HEADER],
    ).toBe('hit');
  });

  it('stores neither a failed answer nor one larger than maxEntryBytes', async () => {
    const { app, state } = appWith({ maxEntryBytes: 2000 });
    expect((await request(app).post('/v1/chat/completions').set('x-fail', '1').send(body)).status).toBe(500);
    await settle();
    expect(
      (await request(app).post('/v1/chat/completions').set('x-pad', '3000').send(body)).headers[CACHE_HEADER],
    ).toBe('miss');
    await settle();
    expect((await request(app).post('/v1/chat/completions').send(body)).headers[CACHE_HEADER]).toBe('miss');
    expect(state.calls).toBe(3);
  });

  it('stores an answer written in pieces (text and bytes, a character split between two) as the client received it', async () => {
    const cache = createResponseCache();
    const app = express();
    app.use(express.json());
    app.use((req, res, next) => {
      getContext(req, res).identity = { keyId: 'k1', tenantId: 'acme', scopes: [], authMethod: 'api_key' };
      next();
    });
    let calls = 0;
    app.post(
      '/v1/chat/completions',
      meter({ api: 'openai.chat', pricing }),
      cache.middleware,
      (_req: Request, res: Response) => {
        calls++;
        const whole = Buffer.from(JSON.stringify(chatAnswer('naïve café, 世界')));
        const split = whole.indexOf(Buffer.from('世')) + 1;
        res.setHeader('content-type', 'application/json');
        res.write(whole.subarray(0, 20).toString('latin1'), 'latin1');
        res.write(whole.subarray(20, split).toString('utf8').slice(0, -1));
        res.write(whole.subarray(whole.indexOf(Buffer.from('世')), split));
        res.end(whole.subarray(split));
      },
    );
    const miss = await request(app).post('/v1/chat/completions').send(body);
    expect(miss.headers[CACHE_HEADER]).toBe('miss');
    await settle();
    const hit = await request(app).post('/v1/chat/completions').send(body);
    expect(hit.headers[CACHE_HEADER]).toBe('hit');
    expect(withoutCost(hit.text)).toBe(withoutCost(miss.text));
    expect(hit.body.choices[0].message.content).toBe('naïve café, 世界');
    expect(calls).toBe(1);
  });

  it('serves a miss when the store fails, and says so once', async () => {
    const failures: string[] = [];
    const broken: CacheStore = {
      kind: 'broken',
      get: () => Promise.reject(new Error('down')),
      set: () => Promise.reject(new Error('down')),
    };
    const { app, state } = appWith({
      store: broken,
      onStoreError: (_error, operation) => void failures.push(operation),
    });
    const response = await request(app).post('/v1/chat/completions').send(body);
    expect(response.status).toBe(200);
    expect(response.headers[CACHE_HEADER]).toBe('miss');
    await settle();
    expect(state.calls).toBe(1);
    expect(failures).toEqual(['get', 'set']);
  });

  it('leaves requests alone when enabled() says no', async () => {
    const { app, state } = appWith({ enabled: (req) => req.headers['x-key'] !== 'nocache' });
    for (let i = 0; i < 2; i++) {
      const response = await request(app).post('/v1/chat/completions').set('x-key', 'nocache').send(body);
      expect(response.headers[CACHE_HEADER]).toBeUndefined();
      await settle();
    }
    expect(state.calls).toBe(2);
  });

  it('stores an answer whose cap the budget lowered under the request as sent, not as asked', async () => {
    const state = { calls: 0, sent: [] as unknown[] };
    const cache = createResponseCache();
    const app = express();
    app.use(express.json());
    app.post(
      '/v1/chat/completions',
      meter({ api: 'openai.chat', pricing }),
      cache.lookup,
      (req: Request, _res: Response, next) => {
        // What budgetGuard's clamp does when a budget can pay for less than the whole cap.
        if (req.headers['x-clamp']) req.tollgate.limitOutput(550);
        next();
      },
      cache.answer,
      (req: Request, res: Response) => {
        state.calls++;
        state.sent.push(structuredClone(req.tollgate.call!.body));
        res.json(chatAnswer('short answer'));
      },
    );
    const identity = (req: Request, res: Response, next: () => void) => {
      getContext(req, res).identity = { keyId: 'k1', tenantId: 'acme', scopes: [], authMethod: 'api_key' };
      next();
    };
    const wrapped = express().use(identity).use(app);
    await request(wrapped).post('/v1/chat/completions').set('x-clamp', '1').send(body);
    await settle();
    // The same request when the budget does not clamp: the short answer is not its answer.
    expect((await request(wrapped).post('/v1/chat/completions').send(body)).headers[CACHE_HEADER]).toBe('miss');
    await settle();
    expect(state.calls).toBe(2);
    // The request as it was sent (cap 550, in every cap field the API reads) is.
    const [clamped, whole] = state.sent as Record<string, unknown>[];
    expect(clamped!.max_tokens).toBe(550);
    expect(await cache.store.get(cacheKey('tenant:acme', 'openai.chat', 'gpt-4o-mini', clamped))).toContain(
      'short answer',
    );
    expect(await cache.store.get(cacheKey('tenant:acme', 'openai.chat', 'gpt-4o-mini', whole))).toContain(
      'short answer',
    );
    expect(cacheKey('tenant:acme', 'openai.chat', 'gpt-4o-mini', clamped)).not.toBe(
      cacheKey('tenant:acme', 'openai.chat', 'gpt-4o-mini', whole),
    );
  });

  it('runs the hit limits for an answer the memory store already holds, and the miss limits otherwise', async () => {
    const cache = createResponseCache();
    const seen: string[] = [];
    const refuseUnlessAllowed = (req: Request, res: Response, next: () => void) => {
      seen.push('miss limits');
      if (req.headers['x-allow']) next();
      else
        res.status(429).json({
          error: { message: 'budget spent', type: 'insufficient_quota', code: 'insufficient_quota', param: null },
        });
    };
    const app = express();
    app.use(express.json());
    app.use((req, res, next) => {
      getContext(req, res).identity = { keyId: 'k1', tenantId: 'acme', scopes: [], authMethod: 'api_key' };
      next();
    });
    app.post(
      '/v1/chat/completions',
      meter({ api: 'openai.chat', pricing }),
      cache.lookup,
      cache.chooseLimits({
        hit: (_req, _res, next) => {
          seen.push('hit limits');
          next();
        },
        miss: refuseUnlessAllowed,
      }),
      cache.answer,
      (_req: Request, res: Response) => void res.json(chatAnswer('fresh')),
    );
    expect((await request(app).post('/v1/chat/completions').set('x-allow', '1').send(body)).status).toBe(200);
    await settle();
    // The budget would refuse now; a hit reserves none of it.
    const hit = await request(app).post('/v1/chat/completions').send(body);
    expect([hit.status, hit.headers[CACHE_HEADER]]).toEqual([200, 'hit']);
    expect(
      (
        await request(app)
          .post('/v1/chat/completions')
          .send({ ...body, max_tokens: 7 })
      ).status,
    ).toBe(429);
    expect(seen).toEqual(['miss limits', 'hit limits', 'miss limits']);
  });

  it('looks a memory hit up before the meter: never estimated, recorded with its saving, and not as a hit when refused', async () => {
    const cache = createResponseCache();
    const records: UsageRecord[] = [];
    const estimated: boolean[] = [];
    const sink = {
      write: (record: UsageRecord) => void records.push(record),
      flush: async () => undefined,
      close: async () => undefined,
    };
    let calls = 0;
    const app = express();
    app.use(express.json());
    app.use((req, res, next) => {
      getContext(req, res).identity = { keyId: 'k1', tenantId: 'acme', scopes: [], authMethod: 'api_key' };
      next();
    });
    app.post(
      '/v1/chat/completions',
      providerCall('openai.chat'),
      cache.lookupBeforeEstimate,
      meter({ pricing, sinks: [sink] }),
      (req: Request, res: Response, next: () => void) => {
        estimated.push(req.tollgate.estimate !== undefined);
        if (req.headers['x-refuse'])
          res.status(429).json({
            error: { message: 'too many requests', type: 'rate_limit_error', code: 'rate_limited', param: null },
          });
        else next();
      },
      cache.lookup,
      cache.answer,
      (_req: Request, res: Response) => void res.json(chatAnswer(`fresh ${++calls}`)),
    );
    const miss = await request(app).post('/v1/chat/completions').send(body);
    expect(miss.headers[CACHE_HEADER]).toBe('miss');
    await settle();
    const hit = await request(app).post('/v1/chat/completions').send(body);
    expect([hit.headers[CACHE_HEADER], withoutCost(hit.text)]).toEqual(['hit', withoutCost(miss.text)]);
    expect(costOf(hit)).toBe(0);
    expect((await request(app).post('/v1/chat/completions').set('x-refuse', '1').send(body)).status).toBe(429);
    await settle();
    expect(calls).toBe(1);
    // The miss was estimated (its reservation needs it); the hits were not.
    expect(estimated).toEqual([true, false, false]);
    const [first, second, refused] = records;
    expect(first).toMatchObject({ usageSource: 'provider', inputTokens: 1000, outputTokens: 500 });
    expect(second).toMatchObject({
      usageSource: 'cache',
      inputTokens: 1000,
      outputTokens: 500,
      costNanoUsd: 0,
      savedNanoUsd: first!.costNanoUsd,
      model: 'gpt-4o-mini',
    });
    expect(first!.costNanoUsd).toBeGreaterThan(0);
    expect(refused!.status).toBe(429);
    expect(refused!.usageSource).not.toBe('cache');
    expect(refused!.savedNanoUsd).toBeUndefined();
  });

  it('keeps each answer as long as ttl(req) says, the default when it says nothing', async () => {
    const lifetimes: number[] = [];
    const store: CacheStore = {
      kind: 'recording',
      get: () => undefined,
      set: (_key, _value, ttlMs) => void lifetimes.push(ttlMs),
    };
    const { app } = appWith({ store, ttl: (req) => (req.headers['x-key'] === 'long' ? '1h' : undefined) });
    await request(app).post('/v1/chat/completions').set('x-key', 'long').send(body);
    await request(app).post('/v1/chat/completions').set('x-key', 'short').send(body);
    await settle();
    expect(lifetimes).toEqual([3_600_000, 600_000]);
  });

  it('rejects bad options with their name', () => {
    expect(() => createResponseCache({ scope: 'tenants' as never })).toThrow(
      /scope must be one of tenant, key, global/,
    );
    expect(() => createResponseCache({ costFraction: 2 })).toThrow(/costFraction/);
    expect(() => createResponseCache({ ttl: 'soon' })).toThrow(/ttl/);
    expect(() => createResponseCache({ maxEntryBytes: 0 })).toThrow(/maxEntryBytes/);
    expect(() => createResponseCache({ tll: '1m' } as never)).toThrow(/did you mean "ttl"/);
    expect(() => createResponseCache({ store: {} as never })).toThrow(/store/);
    expect(createResponseCache({ store: new MemoryCacheStore({ maxBytes: 1024 }) }).store.kind).toBe('memory');
  });
});
