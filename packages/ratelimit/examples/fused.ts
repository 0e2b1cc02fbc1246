// packages/ratelimit/examples/fused.ts: on Redis, request and token limits and the budget checked in one Redis call.
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { apiErrorHandler, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { meter } from '@tollgate/metering';
import { providerCall } from '@tollgate/providers';
import { combineLimits, tieredRateLimit, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';
import { createRedisStores } from '@tollgate/redis';

const stores = createRedisStores({ url: process.env.REDIS_URL, prefix: process.env.REDIS_PREFIX ?? 'tollgate:' });
const tiers = { free: 5, pro: 600 };
const layers = [
  { by: 'tenant' as const, tiers },
  { by: 'key' as const, tiers },
];
const tokenTiers = { free: 20_000, pro: 2_000_000 };
const policy = { tiers: { free: { models: ['gpt-4o-mini'], maxOutputTokens: 512 }, pro: { models: ['*'] } } };
const tenants = { acme: { usd: 5, period: 'day' as const } };
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

async function callProvider(req: Request, res: Response, next: NextFunction) {
  try {
    const call = req.tollgate.call!;
    req.tollgate.markSending();
    const answer = await fetch(`${upstream}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${process.env.OPENAI_API_KEY}`, 'content-type': 'application/json' },
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

const app = express();
app.use(requestContext());
app.use(express.json());
app.post(
  '/v1/chat/completions',
  apiKeyAuth({ keys: stores.keys }), // cached in the process, revoked by pub/sub: no round trip
  providerCall('openai.chat'),
  tierPolicy(policy),
  meter(),
  combineLimits(
    tieredRateLimit({ stores, layers }),
    tokenRateLimit({ stores, by: 'tenant', tiers: tokenTiers }),
    budgetGuard({ ledger: stores.ledger, tenants }),
  ),
  callProvider,
);
app.use(apiErrorHandler({ otherErrors: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 3000));
server.once('listening', () => {
  const address = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}; try the key ${key}`,
  );
});
process.on('SIGTERM', () => server.close(() => void stores.close()));
