// A fresh npm app on the packed tarballs (CommonJS JavaScript, require() of the ESM packages on Node >= 20.19):
// API keys and a request limit in front of a fake OpenAI upstream, called with the official openai client.
/* global require, fetch */
/* eslint-disable @typescript-eslint/no-require-imports */
const assert = require('node:assert/strict');
const http = require('node:http');
const express = require('express');
const { default: OpenAI } = require('openai');
const { apiErrorHandler, createMemoryStores, requestContext } = require('@tollgate/core');
const { apiKeyAuth, generateApiKey, hashApiKey } = require('@tollgate/auth');
const { tieredRateLimit } = require('@tollgate/ratelimit');

function listen(server) {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`)),
  );
}

async function main() {
  const upstream = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const { model } = JSON.parse(body);
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          id: 'chatcmpl-packed',
          object: 'chat.completion',
          created: 1700000000,
          model,
          choices: [
            { index: 0, message: { role: 'assistant', content: 'pong' }, finish_reason: 'stop', logprobs: null },
          ],
          usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
        }),
      );
    });
  });
  const upstreamUrl = await listen(upstream);

  const stores = createMemoryStores();
  const apiKey = generateApiKey();
  await stores.keys.put({
    id: 'k1',
    sha256: hashApiKey(apiKey),
    tenantId: 'acme',
    scopes: [],
    createdAt: new Date().toISOString(),
  });

  const app = express();
  app.use(requestContext());
  app.use(express.json());
  app.post(
    '/v1/chat/completions',
    apiKeyAuth({ keys: stores.keys }),
    tieredRateLimit({ limit: 2, window: '1m' }),
    async (req, res, next) => {
      try {
        const answer = await fetch(`${upstreamUrl}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(req.body),
        });
        res.type('application/json').send(await answer.text());
      } catch (error) {
        next(error);
      }
    },
  );
  app.get('/bug', () => {
    throw new Error('a bug');
  });
  app.use(apiErrorHandler({ otherErrors: () => undefined }));
  const server = http.createServer(app);
  const base = await listen(server);

  const client = new OpenAI({ apiKey, baseURL: `${base}/v1`, maxRetries: 0 });
  const completion = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'ping' }],
  });
  assert.equal(completion.choices[0].message.content, 'pong');
  const denied = await new OpenAI({ apiKey: 'tg_not-a-key', baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions
    .create({ model: 'gpt-4o-mini', messages: [] })
    .catch((error) => error);
  assert.ok(denied instanceof OpenAI.AuthenticationError, String(denied));
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] });
  const limited = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] }).catch((error) => error);
  assert.ok(limited instanceof OpenAI.RateLimitError, String(limited));
  assert.equal(limited.code, 'rate_limit_exceeded');
  const bug = await fetch(`${base}/bug`);
  assert.equal(bug.status, 500);
  assert.equal((await bug.json()).error.code, 'internal_error');

  server.close();
  upstream.close();
  await stores.close();
  console.log('cjs-js consumer ok');
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
