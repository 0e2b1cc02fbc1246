// packages/ratelimit/examples/layers.ts: request limits in layers, tier rules, token and concurrency limits before an OpenAI call.
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { meter } from '@tollgate/metering';
import { providerCall } from '@tollgate/providers';
import { concurrencyLimit, tieredRateLimit, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';
import { createRedisStores } from '@tollgate/redis';

// On Redis every process shares the limits; without REDIS_URL this one process counts in memory.
const stores = process.env.REDIS_URL
  ? createRedisStores({ url: process.env.REDIS_URL, prefix: process.env.REDIS_PREFIX ?? 'tollgate:' })
  : createMemoryStores();
const tiers = { free: 5, pro: 600 };
const upstream = process.env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1';

// A key to try it with (keys are managed with @tollgate/auth: see its README).
const key = generateApiKey();
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'free',
  scopes: [],
  createdAt: new Date().toISOString(),
});

/** Sends the request the chain made (budgets and tier rules may have changed it) to the provider. */
function forwardTo(path: string) {
  return async function callProvider(req: Request, res: Response, next: NextFunction) {
    try {
      req.tollgate.markSending();
      const answer = await fetch(`${upstream}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${process.env.OPENAI_API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(req.tollgate.call?.body ?? req.body),
        ...(req.tollgate.call ? { signal: req.tollgate.call.signal } : {}),
      });
      res
        .status(answer.status)
        .type('application/json')
        .send(await answer.text());
    } catch (error) {
      next(error);
    }
  };
}

const app = express();
app.use(requestContext());
app.use(express.json());
app.post(
  '/v1/chat/completions',
  apiKeyAuth({ keys: stores.keys }),
  providerCall('openai.chat'), // the API this route speaks: every piece below reads it
  tieredRateLimit({
    stores,
    window: '1m',
    layers: [
      { by: 'global', limit: 10_000 }, // everyone together
      { by: 'tenant', tiers }, // per tenant, by its tier
      { by: 'key', tiers }, // per API key, by its tier
    ],
  }),
  tierPolicy({ tiers: { free: { models: ['gpt-4o-mini'], maxOutputTokens: 512 }, pro: { models: ['*'] } } }),
  meter(), // sets req.tollgate.estimate
  tokenRateLimit({ stores, by: 'tenant', tiers: { free: 20_000, pro: 2_000_000 } }),
  concurrencyLimit({ stores, by: 'key', tiers: { free: 2, pro: 20 } }),
  forwardTo('/chat/completions'),
);

// A stricter limit on one route, in code:
app.post(
  '/v1/images/generations',
  apiKeyAuth({ keys: stores.keys }),
  tieredRateLimit({ stores, limit: 10, window: '1h', prefix: 'rl:images:' }),
  forwardTo('/images/generations'),
);

// Refusals (401, 403, 429, 503) and failures reach clients as OpenAI-shaped JSON.
app.use(apiErrorHandler({ otherErrors: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 3000));
server.once('listening', () => {
  const address = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}; try the key ${key}`,
  );
});
process.on('SIGTERM', () => server.close(() => void stores.close()));
