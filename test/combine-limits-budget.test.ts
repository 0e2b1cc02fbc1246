// budgetGuard inside combineLimits: reserved together with the limiters; whichever refuses, the others give back what they took.
import { describe, expect, it } from '@jest/globals';
import express from 'express';
import type { RequestHandler } from 'express';
import request from 'supertest';
import { apiErrorHandler, createMemoryStores, createPricing, getContext, type ReservationLedger } from '@tollgate/core';
import { combineLimits, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { openAiChat } from '@tollgate/providers';
import { budgetGuard } from '@tollgate/budget';

const pricing = createPricing();

/** gpt-4o-mini: $0.15 input, $0.60 output per 1M tokens. */
const estimateAndIdentify: RequestHandler = (req, res, next) => {
  const context = getContext(req, res);
  context.identity = { keyId: 'k1', tenantId: req.header('x-tenant') ?? 'acme', scopes: [], authMethod: 'api_key' };
  const maxOutputTokens = Number(req.body.max_tokens);
  const price = pricing.find('gpt-4o-mini')!;
  // What the meter does: the call is declared (its cap can be clamped in the body) and estimated.
  context.declareCall(openAiChat, { body: req.body });
  context.setEstimate({
    provider: 'openai', model: 'gpt-4o-mini', inputTokens: 1000, maxOutputTokens, totalTokens: 1000 + maxOutputTokens,
    costNanoUsd: Math.ceil((1000 * price.inputMicro + maxOutputTokens * price.outputMicro) / 1000),
  }, price);
  next();
};

function appWith(combined: RequestHandler, seen: (body: unknown) => void = () => undefined) {
  const app = express();
  app.use(express.json());
  app.post('/v1/chat/completions', estimateAndIdentify, combined, (req, res) => {
    seen(req.body);
    res.json({ ok: true });
  });
  app.use(apiErrorHandler());
  return app;
}

async function heldBy(ledger: ReservationLedger, key: string) {
  const [usage] = await ledger.usage([key]);
  return usage!.reserved;
}

const day = () => `budget:tenant:acme:day:${new Date().toISOString().slice(0, 10)}`;

describe('combineLimits with budgetGuard', () => {
  it('a budget refusal gives back the request and the tokens the limiters counted', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const guard = budgetGuard({ ledger: stores.ledger, pricing, tenants: { acme: { usd: 0.0001, period: 'day' } } });
    const app = appWith(combineLimits(tieredRateLimit({ stores, limit: 1, prefix: 'rl:' }), tokenRateLimit({ stores, limit: 100_000, prefix: 'tok:' }), guard));
    const refused = await request(app).post('/v1/chat/completions').send({ model: 'gpt-4o-mini', max_tokens: 100_000 });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('insufficient_quota');
    expect(refused.headers['x-should-retry']).toBe('false');
    expect(await stores.counter.peek('tok:key:key:k1', { windowMs: 60_000 })).toBe(0);
    // The key's only request of the window was given back: the same key, for a tenant without a budget, passes.
    expect((await request(app).post('/v1/chat/completions').set('x-tenant', 'other').send({ model: 'gpt-4o-mini', max_tokens: 16 })).status).toBe(200);
    await guard.close();
  });

  it('a token refusal releases the budget reservation made alongside it', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const guard = budgetGuard({ ledger: stores.ledger, pricing, tenants: { acme: { usd: 10, period: 'day' } } });
    const app = appWith(combineLimits(tokenRateLimit({ stores, limit: 2000 }), guard));
    const refused = await request(app).post('/v1/chat/completions').send({ model: 'gpt-4o-mini', max_tokens: 1500 });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('tokens_rate_limit_exceeded');
    expect(await heldBy(stores.ledger, day())).toBe(0);
    expect((await guard.status({ scope: 'tenant', id: 'acme' }))[0]).toMatchObject({ spentNanoUsd: 0, reservedNanoUsd: 0 });
    await guard.close();
  });

  it('an allowed request holds the budget until it settles, and the clamp still applies', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    // Affords the input and 500 output tokens, not the 4000 asked.
    const guard = budgetGuard({ ledger: stores.ledger, pricing, tenants: { acme: { usd: 0.00045, period: 'day' } } });
    let body: { max_tokens?: number } | undefined;
    const app = appWith(combineLimits(tokenRateLimit({ stores, limit: 100_000 }), guard), (seen) => (body = seen as typeof body));
    const response = await request(app).post('/v1/chat/completions').send({ model: 'gpt-4o-mini', max_tokens: 4000 });
    expect(response.status).toBe(200);
    expect(body?.max_tokens).toBe(500);
    await guard.close();
  });

  it('a failing ledger answers 503 (failClosed) and gives the tokens back', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const { ledger } = stores;
    const broken: ReservationLedger = {
      reserve: () => Promise.reject(new Error('down')),
      settle: (id, amount) => ledger.settle(id, amount),
      release: (id) => ledger.release(id),
      usage: (keys) => ledger.usage(keys),
      adjustSpent: (key, delta, expiresAt) => ledger.adjustSpent(key, delta, expiresAt),
      resetScope: (key) => ledger.resetScope(key),
    };
    const guard = budgetGuard({ ledger: broken, pricing, tenants: { acme: { usd: 10, period: 'day' } } });
    const app = appWith(combineLimits(tokenRateLimit({ stores, limit: 100_000, prefix: 'tok:' }), guard));
    const warn = process.emitWarning;
    process.emitWarning = () => undefined;
    try {
      const response = await request(app).post('/v1/chat/completions').send({ model: 'gpt-4o-mini', max_tokens: 100 });
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('service_unavailable');
      expect(response.headers['retry-after']).toBe('5');
    } finally {
      process.emitWarning = warn;
    }
    expect(await stores.counter.peek('tok:key:key:k1', { windowMs: 60_000 })).toBe(0);
    await guard.close();
  });
});
