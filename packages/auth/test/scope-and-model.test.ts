// requireScope (403 insufficient_scope) and modelAllowlist (403 model_not_allowed) after a real auth middleware.
import { describe, it, expect } from '@jest/globals';
import request from 'supertest';
import { TollgateError } from '@tollgate/core';
import { apiKeyAuth, modelAllowlist, requireScope } from '../src/index.js';
import { createServer, makeKey } from './helpers.js';

describe('requireScope', () => {
  const chat = makeKey({ scopes: ['chat'] });
  const both = makeKey({ scopes: ['chat', 'admin'] });
  const keys = [chat.record, both.record];

  it('passes an identity holding every scope, refuses one missing any with 403', async () => {
    const app = createServer(apiKeyAuth({ keys }), requireScope('chat', 'admin'));
    expect((await request(app).get('/admin').set('x-api-key', both.key)).status).toBe(200);
    const res = await request(app).get('/admin').set('x-api-key', chat.key);
    expect(res.status).toBe(403);
    expect(res.body.error).toEqual({
      message: expect.stringContaining('"admin"'),
      type: 'permission_error',
      code: 'insufficient_scope',
      param: null,
    });
    expect(res.headers['www-authenticate']).toBe(
      'Bearer realm="tollgate", error="insufficient_scope", scope="chat admin"',
    );
  });

  it('answers 401 when nobody was identified (no auth before it, or anonymous)', async () => {
    expect((await request(createServer(requireScope('chat'))).get('/x')).status).toBe(401);
    const optional = createServer(apiKeyAuth({ keys, optional: true }), requireScope('chat'));
    expect((await request(optional).get('/x')).status).toBe(401);
    expect((await request(optional).get('/x').set('x-api-key', chat.key)).status).toBe(200);
  });

  it('takes options last and validates scopes at construction', () => {
    expect(() => requireScope('chat', { renderError: () => undefined })).not.toThrow();
    expect(() => requireScope('bad scope')).toThrow(TollgateError);
    expect(() => requireScope('chat', { rendrError: () => undefined } as never)).toThrow(/did you mean "renderError"/);
    expect(() => (requireScope as (...args: unknown[]) => unknown)()).toThrow(/at least one scope/);
  });
});

describe('modelAllowlist', () => {
  const free = makeKey({ tier: 'free' });
  const pro = makeKey({ tier: 'pro' });
  const restricted = makeKey({ tier: 'pro', models: ['gpt-4o-mini', 'claude-*'] });
  const noTier = makeKey({ tier: undefined });
  const unknownTier = makeKey({ tier: 'legacy' });
  const keys = [free.record, pro.record, restricted.record, noTier.record, unknownTier.record];
  const app = createServer(apiKeyAuth({ keys }), modelAllowlist({ tiers: { free: ['gpt-4o-mini'], pro: ['*'] } }));

  const ask = (key: string, model: unknown) =>
    request(app).post('/v1/chat/completions').set('x-api-key', key).send({ model, messages: [] });

  it('checks the tier allowlist (dated ids match their family)', async () => {
    expect((await ask(free.key, 'gpt-4o-mini')).status).toBe(200);
    expect((await ask(free.key, 'gpt-4o-mini-2024-07-18')).status).toBe(200);
    const denied = await ask(free.key, 'gpt-4o');
    expect(denied.status).toBe(403);
    expect(denied.body.error).toEqual({
      message: 'The model "gpt-4o" is not available to the "free" tier.',
      type: 'permission_error',
      code: 'model_not_allowed',
      param: 'model',
    });
    expect((await ask(pro.key, 'o3')).status).toBe(200);
  });

  it("checks the identity's own models on top of its tier", async () => {
    expect((await ask(restricted.key, 'claude-sonnet-4-5')).status).toBe(200);
    const denied = await ask(restricted.key, 'gpt-4o');
    expect(denied.status).toBe(403);
    expect(denied.body.error.message).toBe('The model "gpt-4o" is not available to this credential.');
  });

  it('fails closed for tiers it does not know, unless otherTiers says otherwise', async () => {
    expect((await ask(noTier.key, 'gpt-4o-mini')).status).toBe(403);
    expect((await ask(unknownTier.key, 'gpt-4o-mini')).status).toBe(403);
    const lenient = createServer(
      apiKeyAuth({ keys }),
      modelAllowlist({ tiers: { free: ['gpt-4o-mini'] }, otherTiers: ['gpt-4o-mini'] }),
    );
    expect((await request(lenient).post('/x').set('x-api-key', noTier.key).send({ model: 'gpt-4o-mini' })).status).toBe(
      200,
    );
  });

  it('without tiers, only identity models restrict; requests without a model pass', async () => {
    const identityOnly = createServer(apiKeyAuth({ keys }), modelAllowlist());
    expect(
      (await request(identityOnly).post('/x').set('x-api-key', noTier.key).send({ model: 'anything' })).status,
    ).toBe(200);
    expect(
      (await request(identityOnly).post('/x').set('x-api-key', restricted.key).send({ model: 'gpt-4o' })).status,
    ).toBe(403);
    expect((await ask(free.key, undefined)).status).toBe(200);
    expect((await request(app).get('/v1/models').set('x-api-key', free.key)).status).toBe(200);
  });

  it('quotes a hostile model name bounded and printable', async () => {
    const res = await ask(free.key, `x${'\u0000'.repeat(3)}${'y'.repeat(500)}`);
    expect(res.status).toBe(403);
    expect(res.body.error.message.length).toBeLessThan(200);
    expect(res.body.error.message.includes('\u0000')).toBe(false);
  });

  it('validates options at construction', () => {
    expect(() => modelAllowlist({ tiers: { free: 'gpt-4o' as never } })).toThrow(/tiers\.free/);
    expect(() => modelAllowlist({ tier: {} } as never)).toThrow(/did you mean "tiers"/);
  });
});
