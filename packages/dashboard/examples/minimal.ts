// packages/dashboard/examples/minimal.ts: the dashboard mounted on an app: memory stores, a budget guard and a PGlite usage ledger, for the admin key only.
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { PGlite } from '@electric-sql/pglite';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { createMemoryStores } from '@tollgate/core';
import { dashboard } from '@tollgate/dashboard';
import { postgresSink } from '@tollgate/metering/postgres';

const adminKey = generateApiKey();
const stores = createMemoryStores(); // or createRedisStores({ url })
const ledger = new PGlite(); // in memory here; new PGlite('.tollgate/ledger') keeps it on disk, new pg.Pool({ connectionString }) takes the same SQL
const usage = postgresSink({ db: ledger }); // meter({ sinks: [usage] }) writes every request here
const budgets = budgetGuard({
  ledger: stores.ledger,
  tenants: { acme: { usd: 50, period: 'month', softLimit: 0.8 } },
  log: false,
});

// One request as meter() would have recorded it.
usage.write({
  id: randomUUID(),
  requestId: randomUUID(),
  timestamp: new Date().toISOString(),
  keyId: 'k1',
  tenantId: 'acme',
  userId: null,
  feature: null,
  route: '/v1/chat/completions',
  provider: 'openai',
  model: 'gpt-4o-mini',
  requestedModel: 'gpt-4o-mini',
  inputTokens: 1200,
  cachedInputTokens: 0,
  cacheWriteTokens: 0,
  outputTokens: 300,
  reasoningTokens: 0,
  costNanoUsd: 360_000,
  estimatedCostNanoUsd: 720_000,
  status: 200,
  stream: false,
  aborted: false,
  latencyMs: 420,
  usageSource: 'provider',
});
await usage.flush();

const app = express();
app.use(
  '/dashboard',
  dashboard({
    adminKeySha256: hashApiKey(adminKey), // the key itself is never configured
    budgets, // the guard: live budget state, top-ups
    keys: stores.keys, // the key store apiKeyAuth reads: revocations count at once
    ledger, // spend history, recent requests, providers
    tenants: ['acme'], // a select on the new-key form (others are refused)
  }),
);
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dashboard`;

console.log(`without the admin key: ${(await fetch(`${url}/api/requests`)).status}`);
const answer = await fetch(`${url}/api/requests`, { headers: { authorization: `Bearer ${adminKey}` } });
const { records } = (await answer.json()) as { records: { tenantId: string; model: string }[] };
console.log(`with it: ${answer.status}, ${records.map((record) => `${record.tenantId} ${record.model}`).join(', ')}`);

server.close();
await usage.close();
await ledger.close();
await stores.close();
