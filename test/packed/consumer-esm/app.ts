// A fresh npm app on the packed tarballs (ESM TypeScript): API keys, a request limit, the meter and a budget
// in front of a fake OpenAI upstream, called with the official openai client. Exits non-zero on any surprise.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import OpenAI from 'openai';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { meter } from '@tollgate/metering';
import { prometheusSink } from '@tollgate/metering/prometheus';
import { tieredRateLimit } from '@tollgate/ratelimit';

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The provider: answers chat completions with usage, or a 500 when the message is "fail". */
const upstream = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk: Buffer) => (body += chunk.toString()));
  req.on('end', () => {
    const { model, messages } = JSON.parse(body) as { model: string; messages: { content: string }[] };
    res.setHeader('content-type', 'application/json');
    if (messages[0]?.content === 'fail') {
      res.statusCode = 500;
      res.end(JSON.stringify({ error: { message: 'upstream down', type: 'server_error' } }));
      return;
    }
    res.end(
      JSON.stringify({
        id: 'chatcmpl-packed',
        object: 'chat.completion',
        created: 1_700_000_000,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'pong' }, finish_reason: 'stop', logprobs: null }],
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
const usage: number[] = [];
// An optional integration through its subpath: prom-client is installed by this app, not by tollgate.
const prometheus = prometheusSink();

const app = express();
app.use(requestContext());
app.use(express.json());
app.post(
  '/v1/chat/completions',
  apiKeyAuth({ keys: stores.keys }),
  tieredRateLimit({ limit: 2, window: '1m' }),
  meter({
    api: 'openai.chat',
    sinks: [prometheus],
    onUsage: (record) => void usage.push(record.inputTokens + record.outputTokens),
  }),
  budgetGuard({ ledger: stores.ledger, tenants: { acme: { usd: 1, period: 'day' } }, log: false }),
  async function forward(req: Request, res: Response, next: NextFunction) {
    try {
      const answer = await fetch(`${upstreamUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(req.body),
      });
      if (!answer.ok) throw new Error(`upstream answered ${answer.status}`);
      res.type('application/json').send(await answer.text());
    } catch (error) {
      next(error);
    }
  },
);
app.get('/metrics', prometheus.handler);
app.use(apiErrorHandler({ otherErrors: () => undefined }));
const server = http.createServer(app);
const baseURL = `${await listen(server)}/v1`;

const client = new OpenAI({ apiKey, baseURL, maxRetries: 0 });
const completion = await client.chat.completions.create({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'ping' }],
});
assert.equal(completion.choices[0]?.message.content, 'pong');

const stranger = new OpenAI({ apiKey: 'tg_not-a-key', baseURL, maxRetries: 0 });
const denied = await stranger.chat.completions
  .create({ model: 'gpt-4o-mini', messages: [] })
  .catch((error: unknown) => error);
assert.ok(denied instanceof OpenAI.AuthenticationError, JSON.stringify(denied));
assert.equal(denied.code, 'invalid_api_key');

// An upstream failure inside the async handler reaches the client as JSON, not as Express's HTML page.
const failed = await client.chat.completions
  .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'fail' }] })
  .catch((error: unknown) => error);
assert.ok(failed instanceof OpenAI.InternalServerError, JSON.stringify(failed));
assert.equal(failed.code, 'internal_error');

const limited = await client.chat.completions
  .create({ model: 'gpt-4o-mini', messages: [] })
  .catch((error: unknown) => error);
assert.ok(limited instanceof OpenAI.RateLimitError, JSON.stringify(limited));
assert.equal(limited.code, 'rate_limit_exceeded');

assert.deepEqual(usage.slice(0, 1), [12]);
await prometheus.flush();
const metrics = await (await fetch(`${baseURL.replace(/\/v1$/, '')}/metrics`)).text();
assert.match(metrics, /tollgate_/);
server.close();
upstream.close();
await stores.close();
console.log('esm-ts consumer ok');
