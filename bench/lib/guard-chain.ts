// The chain the guard's cost benchmark measures, with and without the guard (the bench app `guard-chain`).
import express, { type Express, type RequestHandler } from 'express';
import type { TollgateStores } from '@tollgate/core';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import type { Guard } from '@tollgate/guard';
import { answerAtOnce, type AppOptions, type BuiltApp } from './app-base.js';
import { benchKey, CHAT_PATH, sha256Hex } from './fixtures.js';

export const KEYS = 100;
const HUGE = { requests: 1_000_000_000, tokens: 1_000_000_000_000, budget: { usd: 1_000_000, period: 'day' as const } };

/** What each row mounts on top of the chain (the guard's pieces in the order its README gives). */
export const STEPS = [
  'the chain (apiKeyAuth, meter, combineLimits(tieredRateLimit, tokenRateLimit, budgetGuard))',
  '+ guard.authFailures (before auth) and guard.suspensions (after auth)',
  '+ guard.repeatedRequests inside combineLimits',
  '+ guard.onUsage on the meter (spend-anomaly detector, flushed every second)',
];

function keyRecords(): ApiKeyRecord[] {
  const createdAt = new Date().toISOString();
  return Array.from({ length: KEYS }, (_, index) => ({
    id: `bench-key-${index}`,
    sha256: sha256Hex(benchKey(index)),
    tenantId: `tenant-${index % 10}`,
    tier: 'pro',
    scopes: ['chat'],
    createdAt,
  }));
}

export interface Chain {
  app: Express;
  guard: Guard | undefined;
  close(): Promise<void>;
}

/** The recommended chain on `stores`, with the first `guardSteps` pieces of the guard mounted. */
export async function buildChain(
  stores: TollgateStores,
  guardSteps: number,
  guardOptions: Record<string, unknown> = {},
): Promise<Chain> {
  const [
    { apiKeyAuth },
    { combineLimits, tieredRateLimit, tokenRateLimit },
    { meter },
    { budgetGuard },
    { createGuard },
  ] = await Promise.all([
    import('@tollgate/auth'),
    import('@tollgate/ratelimit'),
    import('@tollgate/metering'),
    import('@tollgate/budget'),
    import('@tollgate/guard'),
  ]);
  for (const record of keyRecords()) await stores.keys.put(record);
  const guard = guardSteps > 0 ? createGuard({ stores, alerts: { log: false }, ...guardOptions }) : undefined;
  if (guard) await guard.ready;
  const limits: RequestHandler[] = [
    tieredRateLimit({
      stores,
      by: 'key',
      tiers: { pro: HUGE.requests },
      defaultTier: 'pro',
      prefix: 'bench-guard:rl:',
    }),
    tokenRateLimit({
      stores,
      by: 'key',
      tiers: { pro: HUGE.tokens },
      defaultTier: 'pro',
      prefix: 'bench-guard:tokens:',
    }),
    budgetGuard({
      ledger: stores.ledger,
      keys: { '*': HUGE.budget },
      tenants: { '*': HUGE.budget },
      global: HUGE.budget,
      log: false,
    }),
  ];
  const app = express();
  app.disable('x-powered-by');
  const chain: RequestHandler[] = [];
  if (guard && guardSteps >= 1) chain.push(guard.authFailures as RequestHandler);
  chain.push(apiKeyAuth({ keys: stores.keys }));
  if (guard && guardSteps >= 1) chain.push(guard.suspensions as RequestHandler);
  chain.push(express.json({ limit: '2mb' }));
  chain.push(meter({ api: 'openai.chat', ...(guard && guardSteps >= 3 ? { onUsage: guard.onUsage } : {}) }));
  chain.push(combineLimits(...(guard && guardSteps >= 2 ? [guard.repeatedRequests as RequestHandler] : []), ...limits));
  app.post(CHAT_PATH, ...chain, answerAtOnce);
  return { app, guard, close: async () => guard?.close() };
}

/** The chain on memory stores, with or without (`options.guard`) every piece of the guard, for a bench child. */
export async function buildGuardChain(options: AppOptions): Promise<BuiltApp> {
  const { createMemoryStores } = await import('@tollgate/core');
  const stores = createMemoryStores();
  const chain = await buildChain(stores, options.guard === true ? 3 : 0);
  // The guard's maps hold something, as during an attack: lookups take their real path.
  await chain.guard?.suspend('key:someone-else', 'bench');
  await chain.guard?.throttle('tenant:someone-else', { scale: 0.5, durationMs: 3_600_000 });
  return {
    app: chain.app,
    close: async () => {
      await chain.close();
      await stores.close();
    },
  };
}
