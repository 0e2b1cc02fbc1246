// tierPolicy (ratelimit) and modelAllowlist (auth) answer every tier alike: one rule, failing closed.
import { describe, expect, it } from '@jest/globals';
import express, { type RequestHandler } from 'express';
import request from 'supertest';
import { modelAllowlist } from '@tollgate/auth';
import { apiErrorHandler, getContext } from '@tollgate/core';
import { providerCall } from '@tollgate/providers';
import { tierPolicy } from '@tollgate/ratelimit';

/** A provider route whose caller has the tier of `x-tier` (none without it), guarded by `guard`. */
function guardedApp(guard: RequestHandler): express.Express {
  const app = express();
  app.use(express.json());
  app.use((req, res, next) => {
    const tier = req.header('x-tier');
    getContext(req, res).identity = { keyId: 'k', scopes: [], authMethod: 'api_key', ...(tier ? { tier } : {}) };
    next();
  });
  app.post('/v1/chat/completions', providerCall('openai.chat'), guard, (_req, res) => {
    res.json({ ok: true });
  });
  app.use(apiErrorHandler());
  return app;
}

/** The status and error code each caller gets for each model. */
async function answers(app: express.Express, tiers: (string | undefined)[], models: string[]) {
  const table: Record<string, string> = {};
  for (const tier of tiers) {
    for (const model of models) {
      const call = request(app).post('/v1/chat/completions');
      const response = await (tier ? call.set('x-tier', tier) : call).send({ model, messages: [] });
      const code = response.body.error ? ` ${response.body.error.code}` : '';
      table[`${tier ?? '(no tier)'} ${model}`] = `${response.status}${code}`;
    }
  }
  return table;
}

const callers = ['free', 'pro', 'legacy', undefined];
const models = ['gpt-4o-mini', 'gpt-4o'];
const refused = '403 model_not_allowed';
/** The same tiers in each piece's shape. */
const policyTiers = { free: { models: ['gpt-4o-mini'] }, pro: { models: ['*'] } };
const allowlistTiers = { free: ['gpt-4o-mini'], pro: ['*'] };

describe('tierPolicy and modelAllowlist on the same tiers', () => {
  it('refuse every model to an unknown tier and to a caller without one, unless told otherwise', async () => {
    const policy = await answers(guardedApp(tierPolicy({ tiers: policyTiers })), callers, models);
    const allowlist = await answers(guardedApp(modelAllowlist({ tiers: allowlistTiers })), callers, models);
    expect(policy).toEqual(allowlist);
    expect(policy).toEqual({
      'free gpt-4o-mini': '200',
      'free gpt-4o': refused,
      'pro gpt-4o-mini': '200',
      'pro gpt-4o': '200',
      'legacy gpt-4o-mini': refused,
      'legacy gpt-4o': refused,
      '(no tier) gpt-4o-mini': refused,
      '(no tier) gpt-4o': refused,
    });
  });

  it("give such callers the explicit default: tierPolicy's defaultTier, modelAllowlist's otherTiers", async () => {
    const policy = await answers(guardedApp(tierPolicy({ tiers: policyTiers, defaultTier: 'free' })), callers, models);
    const lenient = modelAllowlist({ tiers: allowlistTiers, otherTiers: ['gpt-4o-mini'] });
    const allowlist = await answers(guardedApp(lenient), callers, models);
    expect(policy).toEqual(allowlist);
    expect(policy['legacy gpt-4o-mini']).toBe('200');
    expect(policy['legacy gpt-4o']).toBe(refused);
    expect(policy['(no tier) gpt-4o-mini']).toBe('200');
  });

  it('restrict no tier when given no tiers', async () => {
    const policy = await answers(guardedApp(tierPolicy()), ['legacy', undefined], models);
    expect(policy).toEqual(await answers(guardedApp(modelAllowlist()), ['legacy', undefined], models));
    expect(Object.values(policy)).toEqual(['200', '200', '200', '200']);
  });
});
