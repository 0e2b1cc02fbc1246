// tollgate(parts): the chain in code answers as the gateway does: a route's other methods are 405 in the API's shape,
// a caller without a key is 401, a cached answer is served again, and a count passes the request limits only.
import { afterAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createMemoryStores } from '@tollgate/core';
import { tollgate } from '../src/compose.js';

const stores = createMemoryStores();
const key = generateApiKey();
await stores.keys.put({
  id: 'composed',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'free',
  scopes: [],
  createdAt: new Date().toISOString(),
});
const gateway = tollgate({
  stores,
  limits: { requests: { layers: [{ name: 'tenant', by: 'tenant', limit: 3, window: '1m' }] } },
  cache: {},
});
const app = express().use(gateway);
afterAll(async () => {
  await gateway.close();
  await stores.close();
});

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] };

describe('tollgate(parts)', () => {
  it('answers another method on a provider route with 405 and Allow: POST, in the API error shape', async () => {
    const answer = await request(app).get('/v1/chat/completions');
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe('POST');
    expect((answer.body as { error: { code: string } }).error.code).toBe('method_not_allowed');
  });

  it('refuses a caller without a key, and serves the same request from the cache the second time', async () => {
    expect((await request(app).post('/v1/chat/completions').send(chat)).status).toBe(401);
    const first = await request(app).post('/v1/chat/completions').set('authorization', `Bearer ${key}`).send(chat);
    const second = await request(app).post('/v1/chat/completions').set('authorization', `Bearer ${key}`).send(chat);
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.headers['x-tollgate-cache']).toBe('hit');
    type Chat = { choices: unknown[]; usage: { cost_usd: number } };
    expect((second.body as Chat).choices).toEqual((first.body as Chat).choices);
    // The meter runs on the composed route: the call is priced, the hit is not charged.
    expect((first.body as Chat).usage.cost_usd).toBeGreaterThan(0);
    expect((second.body as Chat).usage.cost_usd).toBe(0);
  });

  it('counts a token count against the request limits it shares with the calls', async () => {
    const count = await request(app)
      .post('/v1/messages/count_tokens')
      .set('authorization', `Bearer ${key}`)
      .send({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hello' }] });
    expect(count.status).toBe(200);
    expect((count.body as { input_tokens: number }).input_tokens).toBeGreaterThan(0);
    // Two calls and this count: the tenant's fourth request in the minute is refused.
    const refused = await request(app).post('/v1/chat/completions').set('authorization', `Bearer ${key}`).send(chat);
    expect(refused.status).toBe(429);
  });
});
