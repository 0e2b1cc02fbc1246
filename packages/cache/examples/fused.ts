// packages/cache/examples/fused.ts: the cache between request limits and the rest of one fused check: a hit reserves no tokens and no budget.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { createResponseCache, MemoryCacheStore } from '@tollgate/cache';
import { meter } from '@tollgate/metering';
import { providerCall } from '@tollgate/providers';
import { combineLimits, tieredRateLimit, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';

// A fake OpenAI on an ephemeral port that counts its calls.
let upstreamCalls = 0;
const openai = http.createServer((req, res) => {
  req.resume();
  req.on('end', () =>
    res.setHeader('content-type', 'application/json').end(
      JSON.stringify({
        id: `chatcmpl-${++upstreamCalls}`,
        object: 'chat.completion',
        created: 1_700_000_000,
        model: 'gpt-4o-mini',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
      }),
    ),
  );
});
openai.listen(0, '127.0.0.1');
await once(openai, 'listening');
const upstream = `http://127.0.0.1:${(openai.address() as AddressInfo).port}/v1`;

const stores = createMemoryStores();
const cache = createResponseCache({ store: new MemoryCacheStore(), ttl: '10m' });
const tiers = { free: 60 };
const requestLimit = tieredRateLimit({ stores, tiers });
const tokenLimit = tokenRateLimit({ stores, tiers: { free: 100_000 } });
const budget = budgetGuard({ ledger: stores.ledger, tenants: { acme: { usd: 5, period: 'day' } } });

async function handler(req: Request, res: Response, next: NextFunction) {
  try {
    const call = req.tollgate.call!;
    req.tollgate.markSending();
    const answer = await fetch(`${upstream}/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-test', 'content-type': 'application/json' },
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
const route = '/v1/chat/completions';
const auth = apiKeyAuth({ keys: stores.keys });
app.post(
  route,
  auth,
  express.json(),
  providerCall('openai.chat'),
  tierPolicy({ tiers: { free: { models: ['gpt-4o-mini'] } } }),
  cache.lookupBeforeEstimate, // memory store: a hit is known here, and the meter skips its estimate
  meter(),
  cache.lookup, // on Redis the read starts here instead, beside the limits
  cache.chooseLimits({ hit: combineLimits(requestLimit), miss: combineLimits(requestLimit, tokenLimit, budget) }),
  cache.answer,
  handler,
);
app.use(apiErrorHandler());
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');

for (let i = 0; i < 2; i++) {
  const answer = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${route}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] }),
  });
  console.log(`${answer.status} ${answer.headers.get('x-tollgate-cache')}`);
  await answer.arrayBuffer();
  await new Promise((resolve) => setTimeout(resolve, 50)); // an answer is stored just after it was sent
}
console.log(`upstream calls: ${upstreamCalls}`);

server.close();
openai.close();
await stores.close();
