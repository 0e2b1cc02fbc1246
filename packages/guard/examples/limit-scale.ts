// packages/guard/examples/limit-scale.ts: a throttled key gets a share of its limits: the guard's limitScale on the rate limiters.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Request, Response } from 'express';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGuard } from '@tollgate/guard';
import { meter } from '@tollgate/metering';
import { tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';

const stores = createMemoryStores();
const guard = createGuard({ stores, alerts: { log: false } });
const tiers = { free: 4 }; // requests a minute

const limitScale = (req: Request) => guard.limitScale(req.tollgate.identity);
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
app.use(express.json());
app.post(
  '/v1/chat/completions',
  apiKeyAuth({ keys: stores.keys }),
  guard.suspensions,
  meter({ api: 'openai.chat' }),
  tieredRateLimit({ stores, layers: [{ by: 'tenant', tiers, limitScale }] }),
  tokenRateLimit({ stores, tiers: { free: 100_000 }, limitScale }),
  (_req: Request, res: Response) => void res.json({ id: 'chatcmpl-1', choices: [] }),
); // the provider call would be here
app.use(apiErrorHandler());
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');

// An operator (or the spend-anomaly detector) throttles the key to half its limits for ten minutes.
await guard.throttle('key:try-me', { scale: 0.5, durationMs: 600_000, reason: 'looks like a loop' });
console.log(
  `limit scale: ${guard.limitScale({ keyId: 'try-me', tenantId: 'acme', tier: 'free', scopes: [], authMethod: 'api_key' })}`,
);
const statuses: number[] = [];
for (let i = 0; i < 4; i++) {
  const answer = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: `hello ${i}` }] }),
  });
  await answer.arrayBuffer();
  statuses.push(answer.status);
}
console.log(`4 requests, limit 4 × 0.5: ${statuses.join(' ')}`);

server.close();
await guard.close();
await stores.close();
