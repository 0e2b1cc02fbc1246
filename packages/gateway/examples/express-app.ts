// packages/gateway/examples/express-app.ts: an Express app of your own, its AI routes behind tollgate.
import type { AddressInfo } from 'node:net';
import express from 'express';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGateway, validateConfig } from '@tollgate/gateway';

const key = generateApiKey(); // give it to a client: tollgate keeps only its SHA-256
const gateway = createGateway(
  validateConfig({
    upstreams: { mock: { kind: 'mock' } }, // fake answers; a real one names its baseUrl and apiKeyEnv
    tiers: { free: { requestsPerMinute: 60, models: ['gpt-4o-mini'], maxOutputTokens: 256 } },
    tenants: { acme: { tier: 'free', budget: { usd: 1, period: 'day' } } },
    keys: [{ id: 'try-me', sha256: hashApiKey(key), tenant: 'acme' }],
  }),
);
const app = express();
app.get('/status', (_req, res) => void res.json({ ok: true })); // your routes, as they were
app.use(gateway); // POST /v1/chat/completions, /v1/messages, ...: key, limits, budget, metering
const server = app.listen(Number(process.env.PORT ?? 3000), () =>
  console.log(`listening on http://localhost:${(server.address() as AddressInfo).port}; try the key ${key}`),
);
