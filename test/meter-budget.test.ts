// meter() and budgetGuard() together: the budget's clamp reaches the body the provider gets, whatever the route path.
import { afterAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { RequestHandler } from 'express';
import request from 'supertest';
import { apiErrorHandler, createMemoryStores, createPricing, getContext, type MemoryStores } from '@tollgate/core';
import { meter } from '@tollgate/metering';
import { budgetGuard } from '@tollgate/budget';

/** $1 input, $2 output per 1M tokens: 1,000 and 2,000 nano-USD a token. */
const pricing = createPricing({ models: { 'gpt-4o': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 2 } } });
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

const identify: RequestHandler = (req, res, next) => {
  getContext(req, res).identity = { keyId: 'k1', tenantId: 'acme', scopes: [], authMethod: 'api_key' };
  next();
};

/** The tenant's spend once its reservation has settled (settle runs after the response ends). */
async function settledTenantUsage(stores: MemoryStores): Promise<{ spent: number; reserved: number }> {
  const key = `budget:tenant:acme:day:${new Date().toISOString().slice(0, 10)}`;
  let usage = { spent: 0, reserved: 1 };
  for (let i = 0; i < 200 && usage.reserved > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    const [scope] = await stores.ledger.usage([key]);
    usage = { spent: scope!.spent, reserved: scope!.reserved };
  }
  return usage;
}

describe('meter + budgetGuard', () => {
  it('clamps the output cap in the body on a route whose API is given to meter(), not detected from the path', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const guard = budgetGuard({ ledger: stores.ledger, pricing, log: false, tenants: { acme: { usd: 0.001, period: 'day' } } });
    closers.push(() => guard.close(), () => stores.close());
    const app = express();
    app.use(express.json());
    app.post('/ai/chat', identify, meter({ api: 'openai.chat', pricing }), guard, (req, res) => {
      res.json({ sent: req.body, estimate: req.tollgate.estimate });
    });
    app.use(apiErrorHandler());
    const response = await request(app).post('/ai/chat').send({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 100_000 });
    expect(response.status).toBe(200);
    const estimate = response.body.estimate;
    expect(estimate.maxOutputTokens).toBeLessThan(100_000);
    // What the provider is sent must be what the reservation paid for.
    expect(response.body.sent.max_tokens).toBe(estimate.maxOutputTokens);
  });

  it('reserves for every choice of an OpenAI chat request with n > 1, so the budget is never overshot', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const guard = budgetGuard({ ledger: stores.ledger, pricing, log: false, tenants: { acme: { usd: 0.001, period: 'day' } } });
    closers.push(() => guard.close(), () => stores.close());
    const app = express();
    app.use(express.json());
    // The provider: n choices, each using the whole per-choice cap it is sent.
    app.post('/v1/chat/completions', identify, meter({ api: 'openai.chat', pricing }), guard, (req, res) => {
      const n = typeof req.body.n === 'number' ? req.body.n : 1;
      const cap = req.body.max_tokens as number;
      res.json({ model: 'gpt-4o', choices: [], usage: { prompt_tokens: req.tollgate.estimate!.inputTokens, completion_tokens: n * cap } });
    });
    app.use(apiErrorHandler());
    const response = await request(app).post('/v1/chat/completions').send({ model: 'gpt-4o', n: 4, messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000 });
    expect(response.status).toBe(200);
    const usage = await settledTenantUsage(stores);
    expect(usage.reserved).toBe(0);
    expect(usage.spent).toBeGreaterThan(0);
    expect(usage.spent).toBeLessThanOrEqual(1_000_000);
  });

  it('reserves the cache-write price for input that may be written to the prompt cache, so cache writes cannot overshoot', async () => {
    // Anthropic bills cache writes above the input price (1.25x for 5 minutes, 2x for an hour).
    const cachePricing = createPricing({ models: { 'claude-test': { provider: 'anthropic', inputPerMTok: 1, cacheWritePerMTok: 2, cachedInputPerMTok: 0.1, outputPerMTok: 2 } } });
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const guard = budgetGuard({ ledger: stores.ledger, pricing: cachePricing, log: false, tenants: { acme: { usd: 0.001, period: 'day' } } });
    closers.push(() => guard.close(), () => stores.close());
    const app = express();
    app.use(express.json());
    // The provider writes the whole prompt to the cache and uses the whole cap it is sent.
    app.post('/v1/messages', identify, meter({ api: 'anthropic.messages', pricing: cachePricing }), guard, (req, res) => {
      const estimate = req.tollgate.estimate!;
      res.json({ type: 'message', model: 'claude-test', content: [], usage: { input_tokens: 0, cache_creation_input_tokens: estimate.inputTokens, cache_read_input_tokens: 0, output_tokens: req.body.max_tokens } });
    });
    app.use(apiErrorHandler());
    const system = [{ type: 'text', text: 'You answer questions about the handbook. '.repeat(40), cache_control: { type: 'ephemeral' } }];
    const response = await request(app).post('/v1/messages').send({ model: 'claude-test', system, messages: [{ role: 'user', content: 'hi' }], max_tokens: 100_000 });
    expect(response.status).toBe(200);
    const usage = await settledTenantUsage(stores);
    expect(usage.reserved).toBe(0);
    expect(usage.spent).toBeGreaterThan(0);
    expect(usage.spent).toBeLessThanOrEqual(1_000_000);
  });
});
