// examples/proxy/examples/in-code.ts: the proxy as an express app in your own process, on stores you own, closed cleanly.
import type { AddressInfo } from 'node:net';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createMemoryStores } from '@tollgate/core';
import { createGatewayApp, validateConfig } from '@tollgate/gateway';

const key = generateApiKey();
const config = {
  // what a config file holds (see config.example.json)
  upstreams: { mock: { kind: 'mock' } }, // the built-in mock's fake answers, on purpose; else your providers
  tiers: { free: { requestsPerMinute: 60, models: ['gpt-4o-mini'], maxOutputTokens: 64 } },
  tenants: { acme: { tier: 'free', budget: { usd: 1, period: 'day' } } },
  keys: [{ id: 'try-me', sha256: hashApiKey(key), tenant: 'acme' }],
  log: { level: 'silent' },
};
const stores = createMemoryStores(); // or createRedisStores({ url }) from @tollgate/redis

const app = createGatewayApp(validateConfig(config), { stores, log: () => undefined }); // an express app
await app.replayUsage(); // what a proxy that died left in the spool, written
await app.spendReady(); // budget spend Redis lost, rebuilt from the ledger
const server = app.listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));

const answer = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`, {
  method: 'POST',
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
});
const chat = (await answer.json()) as { usage: { total_tokens: number } };
console.log(`${answer.status}, ${chat.usage.total_tokens} tokens`);

server.closeAllConnections();
server.close();
await app.close(); // ends upstream calls, flushes the sinks and the spool
await stores.close(); // ours: the app leaves them open
