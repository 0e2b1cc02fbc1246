// packages/gateway/examples/composer.ts: the chain composed in code from the packages' own options, no JSON config.
import type { AddressInfo } from 'node:net';
import express from 'express';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createMemoryStores } from '@tollgate/core';
import { tollgate } from '@tollgate/gateway';

const stores = createMemoryStores(); // or createRedisStores({ url }) from @tollgate/redis
const key = generateApiKey();
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'free',
  scopes: [],
  createdAt: new Date().toISOString(),
});

const gateway = tollgate({
  stores,
  policy: { tiers: { free: { models: ['gpt-4o-mini'], maxOutputTokens: 64 } } }, // tierPolicy's options
  limits: { requests: { layers: [{ name: 'tenant', by: 'tenant', limit: 1, window: '1m' }] } }, // tieredRateLimit's
  budget: { tenants: { acme: { usd: 1, period: 'day' } } }, // budgetGuard's
  // no `providers`: the built-in mock answers; else { upstreams: { openai: { apiKeyEnv: 'OPENAI_API_KEY' } } }
});
const app = express();
app.use(gateway);
const server = app.listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));

const ask = (model: string) =>
  fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] }),
  });
const chat = (await (await ask('gpt-4o-mini')).json()) as { usage: { total_tokens: number } };
console.log(`gpt-4o-mini: ${chat.usage.total_tokens} tokens`);
console.log(`gpt-4o: ${(await ask('gpt-4o')).status}`); // not the tier's model
console.log(`again: ${(await ask('gpt-4o-mini')).status}`); // past the tenant's 1 a minute: a 429

server.closeAllConnections();
server.close();
await gateway.close();
await stores.close(); // ours: the gateway leaves them open
