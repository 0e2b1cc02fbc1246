// packages/gateway/examples/mount.ts: the whole gateway mounted in an Express app of your own, beside your routes.
import type { AddressInfo } from 'node:net';
import express from 'express';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGateway, validateConfig } from '@tollgate/gateway';

const key = generateApiKey();
// What a config file holds (examples/proxy/README.md); the built-in mock provider answers, named on purpose.
const config = validateConfig({
  upstreams: { mock: { kind: 'mock' } },
  tiers: { free: { requestsPerMinute: 60, models: ['gpt-4o-mini'], maxOutputTokens: 64 } },
  tenants: { acme: { tier: 'free', budget: { usd: 1, period: 'day' } } },
  keys: [{ id: 'try-me', sha256: hashApiKey(key), tenant: 'acme' }],
  log: { level: 'silent' },
});

const gateway = createGateway(config, { log: () => undefined }); // an express Router, memory stores of its own
await gateway.spendReady();
const app = express();
app.get('/status', (_req, res) => void res.json({ ok: true })); // your routes, before it or after it
app.use(gateway);
const server = app.listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

const answer = await fetch(`${base}/v1/chat/completions`, {
  method: 'POST',
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
});
const chat = (await answer.json()) as { usage: { total_tokens: number } };
console.log(`gateway: ${answer.status}, ${chat.usage.total_tokens} tokens`);
const refused = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{"messages": "oops"}' });
console.log(`without a key: ${refused.status}`);
console.log(`your route: ${(await fetch(`${base}/status`)).status}`);

server.closeAllConnections();
server.close();
await gateway.close(); // ends upstream calls, flushes the sinks, closes the stores it made
