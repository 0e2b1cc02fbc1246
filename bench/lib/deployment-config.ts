// The realistic deployment the `deployment` benchmarks run: 1,000 tenants with one key each, their limits and budgets.
import type { AutocannonRequest } from 'autocannon';
import { authHeaders, benchKey, sha256Hex } from './fixtures.js';

/** The workload, shared by the example proxy's config and the peer stack, so both enforce the same limits (issue 65). */
export const DEPLOYMENT = {
  tenants: 1_000,
  tier: 'pro',
  /** Per tenant (its one key). */
  requestsPerMinute: 600,
  tokensPerMinute: 400_000,
  tenantBudgetUsdPerDay: 50,
  /** The tenant budgets' soft limit: a share of the budget past which the tenant is warned. */
  softLimit: 0.8,
  /** Distinct end users and features the keys carry (key `i`: user `i % users`, feature `i % features`). */
  users: 7,
  features: 3,
  /** Over all tenants: far above what a run sends or spends, so nothing is refused. */
  globalRequestsPerMinute: 1_000_000,
  globalBudgetUsdPerDay: 100_000,
  /** The model the requests name, priced per token in the config, counted with its own tokenizer. */
  model: 'gpt-4o-mini',
  /** The requests' output cap: the mock upstream answers this many one-token words. */
  maxTokens: 16,
} as const;

/**
 * The request every deployment workload sends (issue 65's): a one-line summary with an output cap of 16 tokens. The
 * mock upstream answers 16 one-token words, so no call is cut at its grant; streams ask for their usage.
 */
const DEPLOYMENT_BODY = JSON.stringify({
  model: DEPLOYMENT.model,
  messages: [
    { role: 'user', content: 'Summarise the following in one line: the quick brown fox jumps over the lazy dog.' },
  ],
  max_tokens: DEPLOYMENT.maxTokens,
});
const DEPLOYMENT_STREAM_BODY = JSON.stringify({
  ...JSON.parse(DEPLOYMENT_BODY),
  stream: true,
  stream_options: { include_usage: true },
});

/** The workload's request, streamed or not. */
export function deploymentBody(stream: boolean): string {
  return stream ? DEPLOYMENT_STREAM_BODY : DEPLOYMENT_BODY;
}

export function deploymentTenant(index: number): string {
  return `tenant-${String(index).padStart(4, '0')}`;
}

/** The API key of tenant `index` (a well-formed tollgate key). */
export function deploymentKey(index: number): string {
  return benchKey(index);
}

/**
 * The example proxy's config (what TOLLGATE_CONFIG holds) for the workload, as a company runs it: one tier with the
 * tenant limits, a daily budget per tenant with a soft limit, keys carrying a user and a feature, a global request limit
 * and budget, the model priced in the config, a JSONL usage log (`usage.jsonl`, its spool beside it) and the access log
 * at `info` (`access.log`): both relative, so they land in the proxy's working directory (a temporary one: see
 * compiled-proxy.ts and tollgate-apps.ts). The bench adds the upstream and the stores.
 * The count cache is off: every request sends the same body, which it would answer from memory every time.
 */
export function deploymentProxyConfig(): Record<string, unknown> {
  const tenants: Record<string, unknown> = {};
  const keys: Record<string, unknown>[] = [];
  const createdAt = new Date().toISOString();
  const budget = { usd: DEPLOYMENT.tenantBudgetUsdPerDay, period: 'day', softLimit: DEPLOYMENT.softLimit };
  for (let index = 0; index < DEPLOYMENT.tenants; index++) {
    const tenant = deploymentTenant(index);
    tenants[tenant] = { tier: DEPLOYMENT.tier, budget };
    keys.push({
      id: `key-${tenant}`,
      sha256: sha256Hex(deploymentKey(index)),
      tenant,
      user: `user-${index % DEPLOYMENT.users}`,
      feature: `feature-${index % DEPLOYMENT.features}`,
      scopes: ['chat'],
      createdAt,
    });
  }
  return {
    models: {
      [DEPLOYMENT.model]: { provider: 'openai', inputPerMTok: 0.15, outputPerMTok: 0.6, tokenizer: 'o200k_base' },
    },
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
    global: {
      requestsPerMinute: DEPLOYMENT.globalRequestsPerMinute,
      budget: { usd: DEPLOYMENT.globalBudgetUsdPerDay, period: 'day' },
    },
    usageLog: 'usage.jsonl',
    log: { level: 'info', destination: 'access.log' },
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
 * `upstream` (the mock's URL) and `stores` (e.g. `redisUrl`, `redisPrefix`; none: memory stores).
 */
export function deployedProxyConfig(upstream: string, stores: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...deploymentProxyConfig(),
    upstreams: { openai: { baseUrl: `${upstream}/v1`, apiKey: 'upstream-bench-key' } },
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
  const bodyOf = (n: number) => deploymentBody(mode === 'stream' || (mode === 'mixed' && n % 2 === 1));
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
