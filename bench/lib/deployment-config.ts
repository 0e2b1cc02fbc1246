// The realistic deployment the `deployment` benchmarks run: 1,000 tenants with one key each, their limits and budgets.
import type { AutocannonRequest } from 'autocannon';
import { authHeaders, benchKey, CHAT_BODY, sha256Hex, STREAM_CHAT_BODY } from './fixtures.js';

/** The workload, shared by the example proxy's config and the peer stack, so both enforce the same limits. */
export const DEPLOYMENT = {
  tenants: 1_000,
  tier: 'standard',
  /** Per tenant (its one key). */
  requestsPerMinute: 600,
  tokensPerMinute: 400_000,
  tenantBudgetUsdPerDay: 50,
  /** Over all tenants: far above what a run spends, so nothing is refused. */
  globalBudgetUsdPerDay: 100_000,
} as const;

export function deploymentTenant(index: number): string {
  return `tenant-${String(index).padStart(4, '0')}`;
}

/** The API key of tenant `index` (a well-formed tollgate key). */
export function deploymentKey(index: number): string {
  return benchKey(index);
}

/**
 * The example proxy's config (what TOLLGATE_CONFIG holds) for the workload: one tier with the tenant limits, a daily
 * budget per tenant and a global one. The bench adds the upstream, the stores and the log (tollgate-apps.ts buildProxy).
 * The count cache is off: every request sends the same body, which it would answer from memory every time.
 */
export function deploymentProxyConfig(): Record<string, unknown> {
  const tenants: Record<string, unknown> = {};
  const keys: Record<string, unknown>[] = [];
  const createdAt = new Date().toISOString();
  for (let index = 0; index < DEPLOYMENT.tenants; index++) {
    const tenant = deploymentTenant(index);
    tenants[tenant] = { tier: DEPLOYMENT.tier, budget: { usd: DEPLOYMENT.tenantBudgetUsdPerDay, period: 'day' } };
    keys.push({ id: `key-${tenant}`, sha256: sha256Hex(deploymentKey(index)), tenant, scopes: ['chat'], createdAt });
  }
  return {
    tiers: {
      [DEPLOYMENT.tier]: {
        requestsPerMinute: DEPLOYMENT.requestsPerMinute,
        tokensPerMinute: DEPLOYMENT.tokensPerMinute,
        models: ['*'],
      },
    },
    defaultTier: DEPLOYMENT.tier,
    tenants,
    keys,
    global: { budget: { usd: DEPLOYMENT.globalBudgetUsdPerDay, period: 'day' } },
    countCacheChars: 0,
  };
}

/** The names the deployment sections give their cases, the same in every table. */
export const DEPLOYMENT_CASE = {
  passthrough: 'bare passthrough (Express + undici)',
  memory: 'tollgate proxy (memory)',
  redis: 'tollgate proxy (Redis, blocks on)',
} as const;

/**
 * What the compiled example proxy reads from TOLLGATE_CONFIG for the workload: `deploymentProxyConfig()` before
 * `upstream` (the mock's URL), its log silent, and `stores` (e.g. `redisUrl`, `redisPrefix`; none: memory stores).
 */
export function deployedProxyConfig(upstream: string, stores: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...deploymentProxyConfig(),
    upstreams: { openai: { baseUrl: `${upstream}/v1`, apiKey: 'upstream-bench-key' } },
    log: { level: 'silent' },
    ...stores,
  };
}

export type DeploymentMode = 'json' | 'stream' | 'mixed';

/** What runLoad sends: the first request, and a rewrite that gives each request the next key (and body, in `mixed`). */
interface RotatingLoad {
  body: string;
  headers: Record<string, string>;
  setupRequest: NonNullable<AutocannonRequest['setupRequest']>;
}

/**
 * Every request takes the next key, round-robin over the connections together, so the requests in flight belong to
 * different tenants and each key is used (requests / tenants) times. In `mixed`, each key sends a JSON request, then a
 * streamed one. autocannon rebuilds a request that has a rewrite (~4 µs of the load generator's CPU per request, the
 * same for every case).
 */
export function rotatingLoad(mode: DeploymentMode): RotatingLoad {
  const headers = Array.from({ length: DEPLOYMENT.tenants }, (_, index) => authHeaders(deploymentKey(index)));
  const bodyOf = (n: number) =>
    mode === 'json' ? CHAT_BODY : mode === 'stream' ? STREAM_CHAT_BODY : n % 2 === 0 ? CHAT_BODY : STREAM_CHAT_BODY;
  const keyOf = (n: number) => (mode === 'mixed' ? n >> 1 : n) % DEPLOYMENT.tenants;
  let next = 0;
  return {
    body: bodyOf(0),
    headers: headers[0]!,
    setupRequest(request) {
      const n = next++;
      // A copy: autocannon writes the body's content-length into the headers it is given.
      request.headers = { ...headers[keyOf(n)] };
      request.body = bodyOf(n);
      return request;
    },
  };
}
