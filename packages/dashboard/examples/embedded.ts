// The dashboard on the embedded default: memory stores, a budget guard and a PGlite usage ledger holding a month of demo usage.
// Run: node --import tsx --conditions=source packages/dashboard/examples/embedded.ts   (PORT, ADMIN_KEY and LEDGER_DIR are optional)
import { randomUUID } from 'node:crypto';
import express from 'express';
import { PGlite } from '@electric-sql/pglite';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { createMemoryStores, periodWindow } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { dashboard } from '@tollgate/dashboard';
import { postgresSink } from '@tollgate/metering/postgres';

const adminKey = process.env.ADMIN_KEY || generateApiKey();
const stores = createMemoryStores();
// A data directory keeps the history across restarts; without one the ledger lives in memory.
const ledger = new PGlite(process.env.LEDGER_DIR);
// In an app, meter({ sinks: [usage] }) writes every request's record here; below, a month of records is written by hand.
const usage = postgresSink({ db: ledger, flushIntervalMs: 200 });
const budgets = budgetGuard({
  ledger: stores.ledger,
  tenants: {
    acme: { usd: 50, period: 'month', softLimit: 0.8 },
    globex: { usd: 40, period: 'month', softLimit: 0.8 },
  },
  features: { 'support-bot': { usd: 60, period: 'month', softLimit: 0.9 } },
  log: false,
});

/** What meter() would have recorded over the last 30 days, and the same spend charged to this month's budgets. */
async function writeDemoUsage(): Promise<void> {
  const now = Date.now();
  const month = periodWindow('month', now);
  const plan = [
    {
      tenantId: 'acme',
      keyId: 'acme-support',
      userId: 'alice',
      feature: 'support-bot',
      model: 'gpt-4o',
      provider: 'openai',
      dailyNano: 1_700_000_000,
    },
    {
      tenantId: 'acme',
      keyId: 'acme-search',
      userId: 'bob',
      feature: 'search',
      model: 'gpt-4o-mini',
      provider: 'openai',
      dailyNano: 260_000_000,
    },
    {
      tenantId: 'globex',
      keyId: 'globex-app',
      userId: 'carol',
      feature: 'support-bot',
      model: 'claude-sonnet-4-5',
      provider: 'anthropic',
      dailyNano: 600_000_000,
    },
  ] as const;
  const spentThisMonth = new Map<string, number>();
  for (let day = 29; day >= 0; day--) {
    for (const [index, who] of plan.entries()) {
      for (let call = 0; call < 4; call++) {
        const timestamp = now - day * 86_400_000 - (call * 5 + index) * 3_600_000;
        // A little weekly rhythm, so the chart is not flat.
        const costNanoUsd = Math.round((who.dailyNano / 4) * (1 + 0.5 * Math.sin((day + call) / 2)));
        const record: UsageRecord = {
          id: randomUUID(),
          requestId: randomUUID(),
          timestamp: new Date(timestamp).toISOString(),
          keyId: who.keyId,
          tenantId: who.tenantId,
          userId: who.userId,
          feature: who.feature,
          route: '/v1/chat/completions',
          provider: who.provider,
          model: who.model,
          requestedModel: who.model,
          inputTokens: 1200 + call * 100,
          cachedInputTokens: 0,
          cacheWriteTokens: 0,
          outputTokens: 300,
          reasoningTokens: 0,
          costNanoUsd,
          estimatedCostNanoUsd: costNanoUsd * 2,
          status: call === 3 && day % 9 === 0 ? 502 : 200,
          stream: call % 2 === 0,
          aborted: false,
          latencyMs: 400 + call * 250,
          usageSource: 'provider',
        };
        usage.write(record);
        if (timestamp >= month.start) {
          for (const budget of [`tenant:${who.tenantId}`, `feature:${who.feature}`])
            spentThisMonth.set(budget, (spentThisMonth.get(budget) ?? 0) + costNanoUsd);
        }
      }
    }
  }
  await usage.flush();
  for (const [budget, spent] of spentThisMonth) {
    const [scope, id] = budget.split(':') as ['tenant' | 'feature', string];
    const [status] = await budgets.status({ scope, id });
    if (status) await stores.ledger.adjustSpent(status.key, spent, Date.parse(status.resetAt));
  }
  for (const who of plan) {
    await stores.keys.put({
      id: who.keyId,
      sha256: hashApiKey(generateApiKey()),
      tenantId: who.tenantId,
      userId: who.userId,
      feature: who.feature,
      scopes: ['chat'],
      createdAt: new Date(now - 40 * 86_400_000).toISOString(),
    });
  }
}

await writeDemoUsage();

const app = express();
app.use(
  '/dashboard',
  dashboard({
    adminKeySha256: hashApiKey(adminKey),
    budgets,
    keys: stores.keys,
    ledger,
    tenants: ['acme', 'globex'],
    title: 'tollgate demo',
  }),
);

const server = app.listen(Number(process.env.PORT ?? 8790), '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  console.log(`dashboard listening on http://127.0.0.1:${port}/dashboard`);
  console.log(`admin key: ${adminKey}`);
});

process.once('SIGTERM', () => {
  server.close(async () => {
    await usage.close();
    await budgets.close();
    await stores.close();
    await ledger.close();
    process.exit(0);
  });
  server.closeAllConnections();
});
