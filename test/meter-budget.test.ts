// meter() and budgetGuard() together: the budget's clamp reaches the body the provider gets, whatever the route path.
import { afterAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { RequestHandler } from 'express';
import request from 'supertest';
import { apiErrorHandler, createMemoryStores, createPricing, getContext, type UsageRecord } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import type { MemoryStores } from '../packages/core/src/memory-stores.js';
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
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      log: false,
      tenants: { acme: { usd: 0.001, period: 'day' } },
    });
    closers.push(
      () => guard.close(),
      () => stores.close(),
    );
    const app = express();
    app.use(express.json());
    app.post('/ai/chat', identify, meter({ api: 'openai.chat', pricing }), guard, (req, res) => {
      res.json({ sent: req.body, estimate: req.tollgate.estimate });
    });
    app.use(apiErrorHandler());
    const response = await request(app)
      .post('/ai/chat')
      .send({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 100_000 });
    expect(response.status).toBe(200);
    const estimate = response.body.estimate;
    expect(estimate.maxOutputTokens).toBeLessThan(100_000);
    // What the provider is sent must be what the reservation paid for.
    expect(response.body.sent.max_tokens).toBe(estimate.maxOutputTokens);
  });

  it('reserves for every choice of an OpenAI chat request with n > 1, so the budget is never overshot', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      log: false,
      tenants: { acme: { usd: 0.001, period: 'day' } },
    });
    closers.push(
      () => guard.close(),
      () => stores.close(),
    );
    const app = express();
    app.use(express.json());
    // The provider: n choices, each using the whole per-choice cap it is sent.
    app.post('/v1/chat/completions', identify, meter({ api: 'openai.chat', pricing }), guard, (req, res) => {
      const n = typeof req.body.n === 'number' ? req.body.n : 1;
      const cap = req.body.max_tokens as number;
      res.json({
        model: 'gpt-4o',
        choices: [],
        usage: { prompt_tokens: req.tollgate.estimate!.inputTokens, completion_tokens: n * cap },
      });
    });
    app.use(apiErrorHandler());
    const response = await request(app)
      .post('/v1/chat/completions')
      .send({ model: 'gpt-4o', n: 4, messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000 });
    expect(response.status).toBe(200);
    const usage = await settledTenantUsage(stores);
    expect(usage.reserved).toBe(0);
    expect(usage.spent).toBeGreaterThan(0);
    expect(usage.spent).toBeLessThanOrEqual(1_000_000);
  });

  it('reserves the cache-write price for input that may be written to the prompt cache, so cache writes cannot overshoot', async () => {
    // Anthropic bills cache writes above the input price (1.25x for 5 minutes, 2x for an hour).
    const cachePricing = createPricing({
      models: {
        'claude-test': {
          provider: 'anthropic',
          inputPerMTok: 1,
          cacheWritePerMTok: 2,
          cachedInputPerMTok: 0.1,
          outputPerMTok: 2,
        },
      },
    });
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    // Room for the input at its bound (estimate plus bytes) at the cache-write price, and a clamped answer.
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing: cachePricing,
      log: false,
      tenants: { acme: { usd: 0.01, period: 'day' } },
    });
    closers.push(
      () => guard.close(),
      () => stores.close(),
    );
    const app = express();
    app.use(express.json());
    // The provider writes the whole prompt to the cache and uses the whole cap it is sent.
    app.post(
      '/v1/messages',
      identify,
      meter({ api: 'anthropic.messages', pricing: cachePricing }),
      guard,
      (req, res) => {
        const estimate = req.tollgate.estimate!;
        res.json({
          type: 'message',
          model: 'claude-test',
          content: [],
          usage: {
            input_tokens: 0,
            cache_creation_input_tokens: estimate.inputTokens,
            cache_read_input_tokens: 0,
            output_tokens: req.body.max_tokens,
          },
        });
      },
    );
    app.use(apiErrorHandler());
    const system = [
      {
        type: 'text',
        text: 'You answer questions about the handbook. '.repeat(40),
        cache_control: { type: 'ephemeral' },
      },
    ];
    const response = await request(app)
      .post('/v1/messages')
      .send({ model: 'claude-test', system, messages: [{ role: 'user', content: 'hi' }], max_tokens: 100_000 });
    expect(response.status).toBe(200);
    const usage = await settledTenantUsage(stores);
    expect(usage.reserved).toBe(0);
    expect(usage.spent).toBeGreaterThan(0);
    expect(usage.spent).toBeLessThanOrEqual(10_000_000);
  });

  it('holds a budget when the provider bills 3x the estimated input: 200 requests at once end at or under the limit, the books balance', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      log: false,
      tenants: { acme: { usd: 0.002, period: 'day' } },
    });
    closers.push(
      () => guard.close(),
      () => stores.close(),
    );
    const app = express();
    app.use(express.json());
    let billed = 0;
    const price = pricing.get('gpt-4o');
    // A provider whose tokenizer (or hidden scaffolding) makes every prompt 3x what tollgate counts, and that uses the whole cap.
    app.post('/v1/chat/completions', identify, meter({ api: 'openai.chat', pricing }), guard, (req, res) => {
      const usage = {
        prompt_tokens: 3 * req.tollgate.estimate!.inputTokens,
        completion_tokens: req.body.max_tokens as number,
      };
      setTimeout(() => {
        billed += costNanoUsd(
          {
            inputTokens: usage.prompt_tokens,
            cachedInputTokens: 0,
            cacheWriteTokens: 0,
            outputTokens: usage.completion_tokens,
            reasoningTokens: 0,
          },
          price,
        );
        res.json({ model: 'gpt-4o', choices: [], usage });
      }, Math.random() * 20);
    });
    app.use(apiErrorHandler());
    const server = app.listen(0);
    closers.push(() => new Promise((resolve) => server.close(() => resolve())));
    const body = {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Summarise the plot of a long novel about a lighthouse keeper. '.repeat(6) }],
      max_tokens: 40,
    };
    let answered = 0;
    // As the SDKs do: a refusal that says to retry is retried, a final one is not.
    const send = async (): Promise<void> => {
      for (let attempt = 0; attempt < 50; attempt++) {
        const response = await request(server).post('/v1/chat/completions').send(body);
        if (response.status === 200) {
          answered++;
          return;
        }
        expect(response.status).toBe(429);
        if (response.headers['x-should-retry'] !== 'true') return;
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
      }
    };
    await Promise.all(Array.from({ length: 200 }, send));
    const usage = await settledTenantUsage(stores);
    expect(usage.reserved).toBe(0);
    expect(usage.spent).toBe(billed);
    expect(usage.spent).toBeLessThanOrEqual(2_000_000);
    // Held refusals were retried until the money ran out: most of the budget was used.
    expect(usage.spent).toBeGreaterThan(0.8 * 2_000_000);
    expect(answered).toBeLessThan(200);
  });

  it('notes a bill above the reservation on the record and reserves that model with a margin from then on', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      log: false,
      tenants: { acme: { usd: 10, period: 'day' } },
    });
    closers.push(
      () => guard.close(),
      () => stores.close(),
    );
    const records: UsageRecord[] = [];
    const app = express();
    app.use(express.json());
    // Content the request does not show (a provider-side prompt): billed at 4x the provable bound.
    app.post(
      '/v1/chat/completions',
      identify,
      meter({ api: 'openai.chat', pricing, onUsage: (record) => records.push(record) }),
      guard,
      (req, res) => {
        const estimate = req.tollgate.estimate!;
        res.json({
          model: 'gpt-4o',
          choices: [],
          reserved: req.tollgate.reservations[0]!.amount,
          usage: { prompt_tokens: 4 * estimate.inputTokensBound!, completion_tokens: 1 },
        });
      },
    );
    app.use(apiErrorHandler());
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi there' }], max_tokens: 10 };
    const warnings: string[] = [];
    const emitWarning = process.emitWarning;
    process.emitWarning = ((warning: string | Error) => warnings.push(String(warning))) as typeof process.emitWarning;
    try {
      const first = await request(app).post('/v1/chat/completions').send(body);
      await settledTenantUsage(stores);
      const second = await request(app).post('/v1/chat/completions').send(body);
      await settledTenantUsage(stores);
      expect(records).toHaveLength(2);
      expect(records[0]!.overshootNanoUsd).toBe(records[0]!.costNanoUsd - first.body.reserved);
      // The second reservation carries the learned margin: its bill fits.
      expect(second.body.reserved).toBeGreaterThanOrEqual(records[1]!.costNanoUsd);
      expect(records[1]!.overshootNanoUsd).toBeUndefined();
      expect(warnings.some((message) => /billed .* above its reservation .* 4\.00x margin/.test(message))).toBe(true);
    } finally {
      process.emitWarning = emitWarning;
    }
  });
});
