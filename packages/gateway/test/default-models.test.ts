// The demo gateway, with no config, prices the coding agents' default models and every model of the maintained source.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { createPricing } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import { MAINTAINED_ROWS } from '../../core/src/catalogue-maintained.js';
import { createGateway } from '@tollgate/gateway';
import { createDemoConfig } from '../src/config/demo.js';
import type { Gateway } from '../src/app.js';

const { config, keys } = createDemoConfig();
const pro = keys.find((key) => key.tenant === 'demo-pro')!.key;
const pricing = createPricing();
let gateway: Gateway;
let app: express.Express;

beforeAll(async () => {
  gateway = createGateway({ ...config, log: { level: 'silent' } });
  app = express().use(gateway);
  // Budget spend is read from the ledger before the first request is admitted (as the server waits at start).
  await gateway.spendReady();
}, 60_000);
afterAll(() => gateway.close());

/** One call of `model` on its provider's route, answered by the built-in mock. */
function call(provider: string, model: string, kind?: string): request.Test {
  const auth = { authorization: `Bearer ${pro}` };
  const messages = [{ role: 'user', content: 'Hi' }];
  if (kind === 'embedding') return request(app).post('/v1/embeddings').set(auth).send({ model, input: 'Hi' });
  if (kind === 'speech')
    return request(app).post('/v1/audio/speech').set(auth).send({ model, input: 'Hi', voice: 'alloy' });
  if (kind === 'image') return request(app).post('/v1/images/generations').set(auth).send({ model, prompt: 'Hi' });
  if (kind === 'transcription')
    return request(app)
      .post('/v1/audio/transcriptions')
      .set(auth)
      .field('model', model)
      .attach('file', Buffer.alloc(1500), { filename: 'hi.mp3', contentType: 'audio/mpeg' });
  if (provider === 'anthropic')
    return request(app).post('/v1/messages').set(auth).send({ model, max_tokens: 16, messages });
  if (provider === 'google')
    return request(app)
      .post(`/v1beta/models/${model}:generateContent`)
      .set(auth)
      .send({ contents: [{ role: 'user', parts: [{ text: 'Hi' }] }], generationConfig: { maxOutputTokens: 16 } });
  const path = provider === 'mistral' ? '/mistral/v1/chat/completions' : '/v1/chat/completions';
  return request(app).post(path).set(auth).send({ model, max_tokens: 16, messages });
}

describe('the demo gateway with no config', () => {
  it.each([
    ['anthropic', 'claude-opus-5-5', 'Claude Code'],
    ['anthropic', 'claude-opus-5-5-20261015', 'a dated id'],
    ['openai', 'gpt-6.1-sol', 'Codex'],
  ])('prices %s %s (%s)', async (provider, model) => {
    const answer = await call(provider, model);
    expect(answer.status).toBe(200);
    expect(Number(answer.headers['x-tollgate-cost-usd'])).toBeGreaterThan(0);
  });

  it('prices every OpenAI, Anthropic, Google and Mistral model of the maintained source', async () => {
    const unpriced: string[] = [];
    for (const row of MAINTAINED_ROWS) {
      // A Realtime model is served over a WebSocket to an upstream, which the demo's mock is not (test/e2e-realtime):
      // its row must price a response.
      if (row.kind === 'realtime') {
        const media = { audioInputTokens: 100, audioOutputTokens: 100 };
        const usage = {
          inputTokens: 10,
          cachedInputTokens: 0,
          cacheWriteTokens: 0,
          outputTokens: 10,
          reasoningTokens: 0,
        };
        if (!(costNanoUsd({ ...usage, media }, pricing.get(row.id)) > 0)) unpriced.push(`${row.provider} ${row.id}`);
        continue;
      }
      const answer = await call(row.provider, row.id, row.kind);
      if (answer.status !== 200 || !(Number(answer.headers['x-tollgate-cost-usd']) > 0))
        unpriced.push(`${row.provider} ${row.id}: ${answer.status} ${JSON.stringify(answer.body).slice(0, 160)}`);
    }
    expect(unpriced).toEqual([]);
    expect(MAINTAINED_ROWS.length).toBeGreaterThan(100);
  }, 60_000);
});
