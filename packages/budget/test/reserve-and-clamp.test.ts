// Reserve before, clamp the output cap to what the budget affords, refuse with 429 insufficient_quota when it cannot pay for a minimal answer.
import { afterAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { createMemoryStores, createPricing, getContext } from '@tollgate/core';
import { maxCostNanoUsd } from '@tollgate/core/costs';
import { budgetGuard } from '@tollgate/budget';
import { openAiChat } from '@tollgate/providers';
import type { BudgetGuardOptions } from '@tollgate/budget';
import { INPUT_NANO, OUTPUT_NANO, createApp, eventually, pricing, usageOf } from './helpers.js';

const NOW = Date.UTC(2026, 10, 22, 8, 30);
const clock = () => NOW;
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

function setup(options: BudgetGuardOptions) {
  const stores = createMemoryStores({ clock, sweepIntervalMs: 0 });
  const guard = budgetGuard({ ledger: stores.ledger, pricing, now: clock, log: false, ...options });
  closers.push(
    () => guard.close(),
    () => stores.close(),
  );
  return { app: createApp(guard), guard, ledger: stores.ledger };
}

const TENANT_DAY = 'budget:tenant:acme:day:2026-11-22';

describe('clamp', () => {
  it('lowers max_tokens so the grant pays for the whole answer, and charges the real cost', async () => {
    // $0.01 = 10,000,000 nano; 1000 input tokens cost 1,000,000; 4500 output tokens cost the other 9,000,000.
    const { app, ledger } = setup({ tenants: { acme: { usd: 0.01, period: 'day' } } });
    const response = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-tenant', 'acme')
      .send({ model: 'test-model', input_tokens: 1000, max_tokens: 10_000 });
    expect(response.status).toBe(200);
    expect(response.body.cap).toBe(4500);
    expect(response.body.estimate).toMatchObject({
      maxOutputTokens: 4500,
      costNanoUsd: 1000 * INPUT_NANO + 4500 * OUTPUT_NANO,
      totalTokens: 5500,
    });
    await eventually(async () => (await usageOf(ledger, TENANT_DAY)).reserved === 0);
    expect(await usageOf(ledger, TENANT_DAY)).toEqual({ spent: 10_000_000, reserved: 0 });
  });

  it('keeps the client field: max_completion_tokens on chat, max_output_tokens on responses', async () => {
    const { app } = setup({ tenants: { acme: { usd: 0.002, period: 'day' } } });
    const chat = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-tenant', 'acme')
      .send({ input_tokens: 0, max_completion_tokens: 5000, produce: 0 });
    expect(chat.body.cap).toBe(1000);
    const responses = await request(app)
      .post('/v1/responses')
      .set('x-test-tenant', 'acme')
      .send({ input_tokens: 0, max_output_tokens: 5000, produce: 0 });
    expect(responses.body.cap).toBe(1000);
  });

  it('leaves the request alone when the budget affords it', async () => {
    const { app } = setup({ global: { usd: 1, period: 'month' } });
    const response = await request(app).post('/v1/messages').send({ input_tokens: 100, max_tokens: 300 });
    expect(response.status).toBe(200);
    expect(response.body.cap).toBe(300);
  });

  it('clamps to the tightest of several scopes, in one reservation over all of them', async () => {
    const { app, ledger, guard } = setup({
      keys: { k1: { usd: 1, period: 'day' } },
      tenants: { acme: { usd: 0.0011, period: 'hour' } },
      global: { usd: 1, period: 'month' },
    });
    const response = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-key', 'k1')
      .set('x-test-tenant', 'acme')
      .send({ input_tokens: 100, max_tokens: 2000, produce: 10 });
    // 1,100,000 - 100,000 for the input leaves 1,000,000: 500 output tokens.
    expect(response.body.cap).toBe(500);
    await eventually(async () => (await usageOf(ledger, 'budget:global:month:2026-11')).reserved === 0);
    const spent = 100 * INPUT_NANO + 10 * OUTPUT_NANO;
    const status = await guard.status();
    expect(status.map((s) => [s.scope, s.spentNanoUsd, s.reservedNanoUsd])).toEqual([
      ['key', spent, 0],
      ['tenant', spent, 0],
      ['global', spent, 0],
    ]);
  });
});

describe('clamp arithmetic with awkward prices', () => {
  it('allows exactly from input + minOutputTokens on, never clamps below it, never reserves less than the capped cost', async () => {
    const odd = createPricing({
      models: { 'odd-model': { provider: 'openai', inputPerMTok: 0.000371, outputPerMTok: 0.001131 } },
    });
    const price = odd.get('odd-model');
    const inputTokens = 7;
    // 371 and 1131 pico-USD a token. 7 in = 2.597 nano -> 3; 16 out = 18.096 nano -> 19: 22 nano is the least a request may get.
    const least = 22;
    const limits = Array.from({ length: 60 }, (_, i) => least - 5 + i);
    const stores = createMemoryStores({ clock, sweepIntervalMs: 0 });
    const tenants = Object.fromEntries(limits.map((nano) => [`t${nano}`, { usd: nano / 1e9, period: 'day' as const }]));
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing: odd,
      now: clock,
      log: false,
      tenants,
      minOutputTokens: 16,
    });
    closers.push(
      () => guard.close(),
      () => stores.close(),
    );
    const app = express();
    app.use(express.json());
    app.post(
      '/v1/chat/completions',
      (req, res, next) => {
        const ctx = getContext(req, res);
        ctx.identity = { keyId: 'k', tenantId: req.get('x-test-tenant'), scopes: [], authMethod: 'api_key' };
        ctx.declareCall(openAiChat, { body: req.body });
        ctx.setEstimate(
          {
            provider: 'openai',
            model: 'odd-model',
            inputTokens,
            maxOutputTokens: 1000,
            costNanoUsd: maxCostNanoUsd(inputTokens, 1000, price),
            totalTokens: 1007,
          },
          price,
        );
        next();
      },
      guard,
      (req, res) => {
        res.json({ cap: req.body.max_tokens, reserved: req.tollgate.reservations[0]?.amount });
      },
    );
    for (const limit of limits) {
      const response = await request(app)
        .post('/v1/chat/completions')
        .set('x-test-tenant', `t${limit}`)
        .send({ model: 'odd-model', max_tokens: 1000 });
      if (limit < least) {
        expect(response.status).toBe(429);
        continue;
      }
      expect(response.status).toBe(200);
      expect(response.body.cap).toBeGreaterThanOrEqual(16);
      expect(response.body.reserved).toBeLessThanOrEqual(limit);
      expect(maxCostNanoUsd(inputTokens, response.body.cap, price)).toBeLessThanOrEqual(response.body.reserved);
      // Tight: one more output token would need more than the grant minus one nano (input and output round up apart).
      expect(maxCostNanoUsd(inputTokens, response.body.cap + 1, price)).toBeGreaterThan(limit - 1);
    }
  });
});

describe('refusal', () => {
  it('refuses with 429 insufficient_quota naming the scope, what remains and when it resets', async () => {
    const { app } = setup({ tenants: { acme: { usd: 0.001, period: 'day' } } });
    // 1000 input tokens use the whole $0.001: nothing is left for an answer.
    const response = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-tenant', 'acme')
      .send({ input_tokens: 1000, max_tokens: 100 });
    expect(response.status).toBe(429);
    expect(response.headers['x-should-retry']).toBe('false');
    expect(response.body.error.code).toBe('insufficient_quota');
    expect(response.body.error.type).toBe('insufficient_quota');
    expect(response.body.error.message).toBe(
      'Budget exhausted for tenant acme: $0.001000 of $0.001000 left this day, the request needs at least $0.001032; it resets at 2026-11-23T00:00:00.000Z.',
    );
    // A day away is not worth a Retry-After; the message says when instead.
    expect(response.headers['retry-after']).toBeUndefined();
  });

  it('refuses when the remaining budget cannot pay for input + minOutputTokens, allows at exactly that', async () => {
    const { app } = setup({ tenants: { acme: { usd: 0.000_132, period: 'hour' } }, minOutputTokens: 16 });
    // 100 input = 100,000 nano; 16 output = 32,000 nano: 132,000 is exactly the minimum.
    const allowed = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-tenant', 'acme')
      .send({ input_tokens: 100, max_tokens: 1000, produce: 0 });
    expect(allowed.status).toBe(200);
    expect(allowed.body.cap).toBe(16);
    const refused = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-tenant', 'acme')
      .send({ input_tokens: 101, max_tokens: 1000 });
    expect(refused.status).toBe(429);
    // An hourly budget resets soon enough for Retry-After to mean something: 08:30 -> 09:00.
    expect(refused.headers['retry-after']).toBe('1800');
    expect(refused.body.error.message).toContain('tenant acme');
    expect(refused.body.error.message).toContain('2026-11-22T09:00:00.000Z');
  });

  it('names the first scope that refused when several apply', async () => {
    const { app } = setup({ users: { bob: { usd: 0.0001, period: 'month' } }, global: { usd: 0.0001, period: 'day' } });
    const response = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-user', 'bob')
      .send({ input_tokens: 1000 });
    expect(response.status).toBe(429);
    expect(response.body.error.message).toMatch(
      /^Budget exhausted for user bob: .* this month, .*resets at 2026-12-01T00:00:00.000Z\.$/,
    );
  });

  it('lets requests without a budget through untouched, and refuses one without an estimate (fail closed)', async () => {
    const { app } = setup({ tenants: { acme: { usd: 0, period: 'day' } } });
    const other = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-tenant', 'globex')
      .send({ max_tokens: 50 });
    expect(other.status).toBe(200);
    expect(other.body.cap).toBe(50);
    // No meter in front: nothing says what the request may cost, so it is refused, never served unbudgeted.
    const stores = createMemoryStores({ clock, sweepIntervalMs: 0 });
    const guard = budgetGuard({ ledger: stores.ledger, pricing, global: { usd: 1 } });
    closers.push(
      () => guard.close(),
      () => stores.close(),
    );
    const unmetered = await request(createApp(guard, (_req, _res, next) => next()))
      .post('/v1/chat/completions')
      .send({ max_tokens: 50 });
    expect(unmetered.status).toBe(500);
    expect(unmetered.body.error).toMatchObject({ code: 'misconfigured_route', type: 'server_error' });
    expect(await guard.status()).toEqual([
      expect.objectContaining({ scope: 'global', spentNanoUsd: 0, reservedNanoUsd: 0 }),
    ]);
  });
});

describe('budgets from code', () => {
  it('uses wildcard entries and a function of the identity, keeping the smaller of two limits on one key', async () => {
    const seen: string[] = [];
    const { app, guard } = setup({
      tenants: { '*': { usd: 5, period: 'month' } },
      budgets: (identity) => {
        seen.push(identity.keyId);
        return [
          { scope: 'tenant', id: identity.tenantId!, usd: 0.002, period: 'month' },
          { scope: 'feature', id: 'search', usd: 1, period: 'rolling', window: '1d', buckets: 24 },
        ];
      },
    });
    const response = await request(app)
      .post('/v1/chat/completions')
      .set('x-test-tenant', 'initech')
      .set('x-test-key', 'kk')
      .send({ input_tokens: 0, max_tokens: 5000 });
    expect(response.body.cap).toBe(1000);
    expect(seen).toEqual(['kk']);
    const [tenant] = await guard.status({ scope: 'tenant', id: 'initech' });
    expect(tenant).toMatchObject({
      limitNanoUsd: 2_000_000,
      period: 'month',
      key: 'budget:tenant:initech:month:2026-11',
    });
  });

  it('rejects bad budgets and unknown options at construction, with a hint', () => {
    expect(() => budgetGuard({ tenants: { acme: { usd: -1 } } })).toThrow(
      /tenants\.acme: usd must be a number of USD >= 0, at most 1,000,000; got -1.*ERR_TG_BUDGET_INVALID_BUDGET/,
    );
    expect(() => budgetGuard({ global: { usd: 1, period: 'year' as 'day' } })).toThrow(
      /period must be "hour", "day", "week", "month", "quarter" or "rolling"/,
    );
    expect(() => budgetGuard({ global: { usd: 1, softLimit: 1.5 } })).toThrow(/0 < softLimit <= 1/);
    expect(() => budgetGuard({ global: { usd: 1, period: 'rolling', window: '1h', buckets: 7 } })).toThrow(
      /window \/ buckets must be a whole number of ms/,
    );
    expect(() => budgetGuard({ tenants: { acme: { usd: 1, downgrade: { 'gpt-4o': 'gpt-4o-mini' } } } })).toThrow(
      /tenants\.acme: downgrade applies once spend passes the soft limit: set softLimit too/,
    );
    expect(() => budgetGuard({ pricing, softLimit: 0.5, downgrade: { 'test-model': 'no-such-model' } })).toThrow(
      /downgrade test-model -> no-such-model: no-such-model has no price/,
    );
    expect(() =>
      budgetGuard({
        tenants: {
          acme: [
            { usd: 1, period: 'day' },
            { usd: 2, period: 'day' },
          ],
        },
      }),
    ).toThrow(/tenants\.acme\[1\]: a second budget of period day: give each period once/);
    expect(() => budgetGuard({ tenants: { acme: [] } })).toThrow(/tenants\.acme: a list of budgets holds at least one/);
    expect(() => budgetGuard({ global: { usd: 1, softLimit: [0.5, 2] } })).toThrow(/0 < softLimit <= 1/);
    expect(() => budgetGuard({ tenantUsers: { acme: { usd: 1, period: 'fortnight' as 'day' } } })).toThrow(
      /tenantUsers\.acme: period must be/,
    );
    expect(() => budgetGuard({ modelBudgets: { acme: { 'gpt-4o': { dollars: 5 } as never } } })).toThrow(
      /modelBudgets\.acme\.gpt-4o: unknown field "dollars"/,
    );
    expect(() => budgetGuard({ pricing, modelDowngrades: { acme: { 'test-model': 'no-such-model' } } })).toThrow(
      /downgrade test-model -> no-such-model: no-such-model has no price/,
    );
    expect(() => budgetGuard({ softlimit: 0.8 } as BudgetGuardOptions)).toThrow(
      /no option "softlimit"; did you mean "softLimit"\?.*ERR_TG_BUDGET_UNKNOWN_OPTION/,
    );
  });

  it('sends a bad dynamic budget to the error handler instead of guessing', async () => {
    const { app } = setup({ budgets: () => [{ scope: 'team' as 'tenant', id: 'x', usd: 1 }] });
    const response = await request(app).post('/v1/chat/completions').send({});
    expect(response.status).toBe(500);
  });
});

describe('refusal signals', () => {
  it('money held by requests in flight is a retryable refusal that says so; money spent is final', async () => {
    // $0.0003 = 300,000 nano: 100 input (100,000) + 100 output (200,000) fills it with one request in flight.
    const stores = createMemoryStores({ clock, sweepIntervalMs: 0 });
    const guard = budgetGuard({
      ledger: stores.ledger,
      pricing,
      now: clock,
      log: false,
      tenants: { acme: { usd: 0.0003, period: 'day' } },
      minOutputTokens: 100,
    });
    closers.push(
      () => guard.close(),
      () => stores.close(),
    );
    let release: (() => void) | undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const app = createApp(guard, undefined, (req, res) => {
      // The first call holds its reservation until the test lets it finish, producing 1 token.
      void held.then(() => {
        res.locals.outputTokens = 1;
        res.json({ cap: req.tollgate.call?.outputCap });
      });
    });
    const body = { model: 'test-model', input_tokens: 100, max_tokens: 100 };
    const first = request(app)
      .post('/v1/chat/completions')
      .set('x-test-tenant', 'acme')
      .send(body)
      .then((r) => r);
    await eventually(async () => (await usageOf(stores.ledger, TENANT_DAY)).reserved > 0);
    const busy = await request(app).post('/v1/chat/completions').set('x-test-tenant', 'acme').send(body);
    expect(busy.status).toBe(429);
    expect(busy.body.error.code).toBe('insufficient_quota');
    expect(busy.body.error.message).toMatch(
      /^Budget for tenant acme is held by requests in flight: .* Retry shortly\.$/,
    );
    expect(busy.headers['x-should-retry']).toBe('true');
    expect(busy.headers['retry-after']).toBe('1');
    release!();
    expect((await first).status).toBe(200);
    await eventually(async () => (await usageOf(stores.ledger, TENANT_DAY)).reserved === 0);
    // The first call cost 102,000: the same request fits again, and once spent money is what is missing, the refusal is final.
    expect(
      (
        await request(app)
          .post('/v1/chat/completions')
          .set('x-test-tenant', 'acme')
          .send({ ...body, max_tokens: 40 })
      ).status,
    ).toBe(200);
    await eventually(async () => (await usageOf(stores.ledger, TENANT_DAY)).reserved === 0);
    const spent = await request(app).post('/v1/chat/completions').set('x-test-tenant', 'acme').send(body);
    expect(spent.status).toBe(429);
    expect(spent.body.error.message).toMatch(/^Budget exhausted for tenant acme/);
    expect(spent.headers['x-should-retry']).toBe('false');
  });
});
