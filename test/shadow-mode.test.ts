// shadowMode (core) with the packages mounted by app.use(): limits, budgets and suspensions that would refuse a
// shadowed request let it through with the code recorded; a budget still charges its real cost (memory and Redis).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { RequestHandler } from 'express';
import request from 'supertest';
import { apiErrorHandler, createPricing, getContext, TollgateError, type UsageRecord } from '@tollgate/core';
import { combineLimits, shadowMode, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { budgetGuard } from '@tollgate/budget';
import { estimateAndIdentify } from './helpers/chat-estimate.js';
import { memoryAndRedisStores, type OwnedStores } from './helpers/proxy.js';

const pricing = createPricing();
/** What each request really costs, settled after its answer. */
const COST_NANO_USD = 9_876_543;

/** An app whose handler answers the shadowed refusal it saw and settles the call at its real cost. */
function appWith(...pieces: RequestHandler[]) {
  const app = express();
  app.use(express.json());
  app.use(shadowMode((req) => req.headers['x-shadow'] === 'yes'));
  app.post('/v1/chat/completions', estimateAndIdentify, ...pieces, (req, res) => {
    const context = getContext(req, res);
    res.json({ shadowRefusal: context.shadowRefusal ?? null });
    void context.settle({ costNanoUsd: COST_NANO_USD, inputTokens: 1000, outputTokens: 100 } as UsageRecord);
  });
  app.use(apiErrorHandler());
  return app;
}

const post = (app: express.Express, shadow: boolean) =>
  request(app)
    .post('/v1/chat/completions')
    .set('x-shadow', shadow ? 'yes' : 'no')
    .send({ model: 'gpt-4o-mini', max_tokens: 100, messages: [] });

it('takes true, false or a function, nothing else', () => {
  expect(() => shadowMode('yes' as unknown as boolean)).toThrow(TollgateError);
  expect(() => shadowMode(false)).not.toThrow();
});

describe.each(memoryAndRedisStores('shadow-mode'))('shadowMode on %s stores', (_kind, storesFor) => {
  let owned: OwnedStores;
  beforeAll(() => {
    owned = storesFor();
  });
  afterAll(() => owned.release());

  it('lets a request past a combined limit when shadowed, and refuses it otherwise', async () => {
    const { stores } = owned;
    const app = appWith(combineLimits(tieredRateLimit({ stores, limit: 1, by: 'tenant', prefix: 'shadow-rl:' })));
    expect((await post(app, false)).status).toBe(200);
    const enforced = await post(app, false);
    expect(enforced.status).toBe(429);
    expect(enforced.body.error.code).toBe('rate_limit_exceeded');
    const shadowed = await post(app, true);
    expect(shadowed.status).toBe(200);
    expect(shadowed.body).toEqual({ shadowRefusal: 'rate_limit_exceeded' });
    // Not counted past the limit (as an enforced refusal): the window holds what enforcing would have let through.
    expect((await post(app, false)).status).toBe(429);
  });

  it('names the token limit that would refuse, alone or inside combineLimits', async () => {
    const { stores } = owned;
    const alone = appWith(tokenRateLimit({ stores, limit: 1000, prefix: 'shadow-tokens:' }));
    expect((await post(alone, true)).body).toEqual({ shadowRefusal: 'tokens_rate_limit_exceeded' });
    expect((await post(alone, false)).status).toBe(429);
    const combined = appWith(
      combineLimits(
        tieredRateLimit({ stores, limit: 100, prefix: 'shadow-rl2:' }),
        tokenRateLimit({ stores, limit: 1000, prefix: 'shadow-tokens2:' }),
      ),
    );
    expect((await post(combined, true)).body).toEqual({ shadowRefusal: 'tokens_rate_limit_exceeded' });
  });

  it("charges a spent budget a shadowed request's real cost, past its limit, exactly", async () => {
    const { stores } = owned;
    const tenant = `shadow-${Math.random().toString(36).slice(2)}`;
    const guard = budgetGuard({ ledger: stores.ledger, pricing, tenants: { [tenant]: { usd: 0.01, period: 'day' } } });
    const app = appWith(combineLimits(tokenRateLimit({ stores, limit: 1_000_000, prefix: 'shadow-tok2:' }), guard));
    const spent = async () => (await guard.status({ scope: 'tenant', id: tenant }))[0]!;
    /** The settles land after the answers: waits until `calls` of them did. */
    const settled = async (calls: number) => {
      for (let i = 0; i < 200 && (await spent()).spentNanoUsd < calls * COST_NANO_USD; i++)
        await new Promise((resolve) => setTimeout(resolve, 25));
      return spent();
    };
    // One request settles 9,876,543 nano-USD of a 10,000,000 budget: the input of the next cannot be covered.
    expect((await post(app, false).set('x-tenant', tenant)).status).toBe(200);
    await settled(1);
    const refused = await post(app, false).set('x-tenant', tenant);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('insufficient_quota');
    for (let i = 0; i < 3; i++) {
      const served = await post(app, true).set('x-tenant', tenant);
      expect(served.body).toEqual({ shadowRefusal: 'insufficient_quota' });
    }
    const status = await settled(4);
    expect(status.spentNanoUsd).toBe(4 * COST_NANO_USD);
    expect(status.reservedNanoUsd).toBe(0);
    expect(status.remainingNanoUsd).toBe(0);
    // Standing alone (not in combineLimits), the guard shadows the same way.
    const alone = appWith(guard);
    expect((await post(alone, true).set('x-tenant', tenant)).body).toEqual({ shadowRefusal: 'insufficient_quota' });
    expect((await post(alone, false).set('x-tenant', tenant)).status).toBe(429);
    await guard.close();
  });
});
