// packages/cache/examples/redis-cache.ts: answers cached in Redis per tenant, and Anthropic prompt caching on the misses.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { apiErrorHandler, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { createResponseCache, RedisCacheStore, anthropicPromptCaching } from '@tollgate/cache';
import { meter } from '@tollgate/metering';
import { combineLimits, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { createRedisStores } from '@tollgate/redis';

// A fake Anthropic on an ephemeral port that counts its calls and tells whether a cache breakpoint came.
let upstreamCalls = 0;
const anthropic = http.createServer((req, res) => {
  let raw = '';
  req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
  req.on('end', () => {
    upstreamCalls++;
    res.setHeader('content-type', 'application/json').end(
      JSON.stringify({
        id: `msg_${upstreamCalls}`,
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-5',
        stop_reason: 'end_turn',
        stop_sequence: null,
        content: [{ type: 'text', text: `breakpoint sent: ${raw.includes('cache_control')}` }],
        usage: { input_tokens: 1500, output_tokens: 5 },
      }),
    );
  });
});
anthropic.listen(0, '127.0.0.1');
await once(anthropic, 'listening');
const upstream = `http://127.0.0.1:${(anthropic.address() as AddressInfo).port}/v1`;

const stores = createRedisStores({
  url: process.env.REDIS_URL,
  prefix: `${process.env.REDIS_PREFIX ?? 'cache-example:'}${randomUUID()}:`,
});
const cache = createResponseCache({
  store: new RedisCacheStore({ sendCommand: stores.sendCommand, prefix: stores.prefix }),
  ttl: '10m',
  scope: 'tenant',
});
const tiers = { free: 60, pro: 600 };
const tokenTiers = { free: 100_000, pro: 2_000_000 };
const tenants = { acme: { usd: 5, period: 'day' as const } };

async function sendToProvider(req: Request, res: Response, next: NextFunction) {
  try {
    const call = req.tollgate.call!;
    req.tollgate.markSending();
    const answer = await fetch(`${upstream}/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'sk-ant-test', 'content-type': 'application/json' },
      body: JSON.stringify(call.body),
      signal: call.signal,
    });
    res
      .status(answer.status)
      .type('application/json')
      .send(await answer.text());
  } catch (error) {
    next(error);
  }
}

const key = generateApiKey();
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'free',
  scopes: [],
  createdAt: new Date().toISOString(),
});

const app = express();
app.use(requestContext());
app.post(
  '/v1/messages',
  apiKeyAuth({ keys: stores.keys }),
  express.json(),
  meter({ api: 'anthropic.messages' }),
  tieredRateLimit({ stores, tiers }), // hits count toward request limits
  cache.middleware, // a hit is answered here
  combineLimits(tokenRateLimit({ stores, tiers: tokenTiers }), budgetGuard({ ledger: stores.ledger, tenants })),
  anthropicPromptCaching({ ttl: '5m' }), // breakpoints in req.tollgate.call.body
  sendToProvider,
);
app.use(apiErrorHandler());
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');

const body = {
  model: 'claude-sonnet-4-5',
  max_tokens: 64,
  system: 'You answer questions about our product manual. '.repeat(300), // long enough to be worth caching
  messages: [{ role: 'user', content: 'How do I reset it?' }],
};
for (let i = 0; i < 2; i++) {
  const answer = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const message = (await answer.json()) as { content: { text: string }[] };
  console.log(`${answer.status} ${answer.headers.get('x-tollgate-cache')}: ${message.content[0]!.text}`);
  await new Promise((resolve) => setTimeout(resolve, 50)); // an answer is stored just after it was sent
}
console.log(`upstream calls: ${upstreamCalls}`);

server.close();
anthropic.close();
// An example leaves nothing behind in your Redis: the keys under its own fresh prefix go with it.
for (let cursor = '0'; ;) {
  const [next, keys] = (await stores.sendCommand(['SCAN', cursor, 'MATCH', `${stores.prefix}*`, 'COUNT', '1000'])) as [
    string,
    string[],
  ];
  if (keys.length > 0) await stores.sendCommand(['DEL', ...keys]);
  if ((cursor = next) === '0') break;
}
await stores.close();
