// tierPolicy: per-tier model allowlist (403 model_not_allowed) and output cap clamped or set, per provider API.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import type { RequestHandler } from 'express';
import { getContext } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import { providerCall } from '@tollgate/providers';
import { tierPolicy } from '@tollgate/ratelimit';
import { testApp } from './helpers.js';

const ROUTES: [string, ProviderApi][] = [
  ['/v1/chat/completions', 'openai.chat'],
  ['/v1/responses', 'openai.responses'],
  ['/v1/messages', 'anthropic.messages'],
];

/** The test app with each provider route declaring its API, as a real chain does. */
function providerApp(middleware: RequestHandler | RequestHandler[], handler?: Parameters<typeof testApp>[1]) {
  const declare: RequestHandler = (req, res, next) => {
    const api = ROUTES.find(([path]) => path === req.path)?.[1];
    if (api) providerCall(api)(req, res, next);
    else next();
  };
  return testApp([declare, ...[middleware].flat()], handler);
}

const policy = tierPolicy({
  tiers: {
    free: { models: ['gpt-4o-mini', 'claude-3-5-haiku*'], maxOutputTokens: 512 },
    pro: { models: ['*'] },
  },
});
const app = providerApp(policy);

const post = (path: string, body: object, tier?: string) => {
  const call = request(app).post(path).set('x-key', 'k1');
  return (tier ? call.set('x-tier', tier) : call).send(body);
};

describe('tierPolicy models', () => {
  it('refuses a model outside the tier list with 403 model_not_allowed', async () => {
    const response = await post('/v1/chat/completions', { model: 'gpt-4o', messages: [] }, 'free');
    expect(response.status).toBe(403);
    expect(response.body.error).toEqual({
      message: 'The model `gpt-4o` is not available on the free tier.',
      type: 'permission_error',
      code: 'model_not_allowed',
      param: 'model',
    });
  });

  it('allows listed models, patterns and dated ids of a listed family', async () => {
    expect((await post('/v1/chat/completions', { model: 'gpt-4o-mini-2024-07-18', messages: [] }, 'free')).status).toBe(
      200,
    );
    expect(
      (await post('/v1/messages', { model: 'claude-3-5-haiku-latest', max_tokens: 10, messages: [] }, 'free')).status,
    ).toBe(200);
    expect((await post('/v1/chat/completions', { model: 'gpt-4o', messages: [] }, 'pro')).status).toBe(200);
  });

  it('refuses every model to callers of a tier it does not know, without a defaultTier (fail closed)', async () => {
    for (const tier of [undefined, 'platinum']) {
      const response = await post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [] }, tier);
      expect(response.status).toBe(403);
      expect(response.body.error.code).toBe('model_not_allowed');
    }
    const unknown = await post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [] }, 'platinum');
    expect(unknown.body.error.message).toBe('The model `gpt-4o-mini` is not available to an unknown tier.');
  });

  it("applies the defaultTier's rules, models and cap, to callers without a known tier", async () => {
    const tiers = { free: { models: ['gpt-4o-mini'], maxOutputTokens: 512 } };
    const withDefault = providerApp(tierPolicy({ tiers, defaultTier: 'free' }));
    const ask = (model: string, tier?: string) => {
      const call = request(withDefault).post('/v1/chat/completions').set('x-key', 'k1');
      return (tier ? call.set('x-tier', tier) : call).send({ model, max_tokens: 4000, messages: [] });
    };
    for (const tier of [undefined, 'platinum']) {
      const allowed = await ask('gpt-4o-mini', tier);
      expect(allowed.status).toBe(200);
      expect(allowed.body.body.max_tokens).toBe(512);
      const refused = await ask('gpt-4o', tier);
      expect(refused.status).toBe(403);
      expect(refused.body.error.message).toBe('The model `gpt-4o` is not available on the free tier.');
    }
  });

  it("also enforces the identity's own model list", async () => {
    const restricted: RequestHandler = (req, res, next) => {
      getContext(req, res).identity = {
        keyId: 'k',
        scopes: [],
        authMethod: 'api_key',
        tier: 'pro',
        models: ['gpt-4o-mini'],
      };
      next();
    };
    const keyApp = providerApp([restricted, policy]);
    const response = await request(keyApp).post('/v1/chat/completions').send({ model: 'gpt-4o', messages: [] });
    expect(response.status).toBe(403);
    expect(response.body.error.message).toBe('The model `gpt-4o` is not available to this key.');
  });

  it('refuses a request whose route declares no provider API (fail closed), whatever its path', async () => {
    for (const path of ['/v1/models', '/v1/chat/completions/', '/api/threads/1/messages']) {
      const response = await request(app)
        .post(path)
        .set({ 'x-key': 'k1', 'x-tier': 'free' })
        .send({ model: 'gpt-4o', max_tokens: 100_000 });
      expect(response.status).toBe(500);
      expect(response.body.error.code).toBe('misconfigured_route');
    }
  });

  it('takes the API as an option on a route that declares nothing else, and reads the model of an SDK route from the request it builds', async () => {
    const sdkApp = testApp(
      tierPolicy({
        api: 'openai.chat',
        request: (req) => ({
          model: 'gpt-4o',
          max_tokens: (req.body as { length?: number }).length ?? 5000,
          messages: [],
        }),
        tiers: {
          free: { models: ['gpt-4o-mini'], maxOutputTokens: 512 },
          pro: { models: ['*'], maxOutputTokens: 1000 },
        },
      }),
      (req, res) => {
        res.json({ body: req.tollgate.call?.body });
      },
    );
    // The client sends no model at all: the route chose gpt-4o, and a free key may not use it.
    expect(
      (await request(sdkApp).post('/summarize').set({ 'x-key': 'k', 'x-tier': 'free' }).send({ text: 'hi' })).status,
    ).toBe(403);
    const pro = await request(sdkApp).post('/summarize').set({ 'x-key': 'k', 'x-tier': 'pro' }).send({ text: 'hi' });
    expect(pro.status).toBe(200);
    expect(pro.body.body.max_tokens).toBe(1000);
  });
});

describe('tierPolicy output cap', () => {
  it.each([
    ['chat max_tokens', '/v1/chat/completions', { max_tokens: 4000 }, { max_tokens: 512 }],
    [
      'chat max_completion_tokens',
      '/v1/chat/completions',
      { max_completion_tokens: 9000 },
      { max_completion_tokens: 512 },
    ],
    [
      'chat, both fields',
      '/v1/chat/completions',
      { max_tokens: 4000, max_completion_tokens: 3000 },
      { max_tokens: 512, max_completion_tokens: 512 },
    ],
    ['chat, absent', '/v1/chat/completions', {}, { max_completion_tokens: 512 }],
    // A small cap in one field must not carry a large one in the other past the clamp (servers differ on
    // which wins): every field ends at most at the tier's cap, and none is raised.
    [
      'chat, a small field beside a large one',
      '/v1/chat/completions',
      { max_completion_tokens: 100, max_tokens: 100_000 },
      { max_completion_tokens: 100, max_tokens: 512 },
    ],
    [
      'chat, a large field beside a small one',
      '/v1/chat/completions',
      { max_completion_tokens: 100_000, max_tokens: 100 },
      { max_completion_tokens: 512, max_tokens: 100 },
    ],
    ['responses max_output_tokens', '/v1/responses', { max_output_tokens: 2048 }, { max_output_tokens: 512 }],
    ['responses, absent', '/v1/responses', {}, { max_output_tokens: 512 }],
    ['messages max_tokens', '/v1/messages', { max_tokens: 1024 }, { max_tokens: 512 }],
  ])('clamps or sets the cap (%s)', async (_label, path, cap, expected) => {
    const response = await post(path, { model: 'gpt-4o-mini', ...cap }, 'free');
    expect(response.status).toBe(200);
    expect(response.body.body).toMatchObject(expected);
  });

  it('keeps a smaller cap and leaves tiers without maxOutputTokens alone', async () => {
    expect(
      (await post('/v1/chat/completions', { model: 'gpt-4o-mini', max_tokens: 100 }, 'free')).body.body.max_tokens,
    ).toBe(100);
    const pro = await post('/v1/chat/completions', { model: 'gpt-4o', max_tokens: 100_000 }, 'pro');
    expect(pro.body.body.max_tokens).toBe(100_000);
  });

  it('lowers an estimate made before the clamp, so the reservation stays a true bound', async () => {
    const early: RequestHandler = (req, res, next) => {
      getContext(req, res).estimate = {
        provider: 'openai',
        model: 'gpt-4o-mini',
        inputTokens: 100,
        maxOutputTokens: 4000,
        costNanoUsd: 1,
        totalTokens: 4100,
      };
      next();
    };
    const estimateApp = providerApp([early, policy], (req, res) => {
      res.json(getContext(req, res).estimate);
    });
    const response = await request(estimateApp)
      .post('/v1/chat/completions')
      .set({ 'x-key': 'k', 'x-tier': 'free' })
      .send({ model: 'gpt-4o-mini', max_tokens: 4000 });
    expect(response.body).toMatchObject({ maxOutputTokens: 512, totalTokens: 612 });
  });
});

describe('tierPolicy options', () => {
  it('rejects unknown options, bad rules and near-miss rule names', () => {
    expect(() => tierPolicy({ tier: {} } as never)).toThrow(/did you mean "tiers"/);
    expect(() => tierPolicy({ tiers: { free: { maxOutputTokens: 0 } } })).toThrow(/ERR_TG_RATELIMIT_INVALID_TIER/);
    expect(() => tierPolicy({ tiers: { free: { model: ['x'] } as never } })).toThrow(/did you mean "models"/);
    // A default that is not a tier would refuse every caller it was meant to admit.
    expect(() => tierPolicy({ tiers: { free: {} }, defaultTier: 'fre' })).toThrow(
      /defaultTier "fre" is not a key of tiers; did you mean "free"/,
    );
    // Config tiers carry limits too: those fields are not rules and pass.
    expect(() => tierPolicy({ tiers: { free: { requestsPerMinute: 5, models: ['*'] } as never } })).not.toThrow();
  });
});
