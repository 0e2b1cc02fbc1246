// What the proxy does when Redis fails or stalls: per layer, answer from a bounded lease, let everything through, or refuse (503).
import { closestName, leasedStores } from '@tollgate/core';
import type { LeasedStores, OutagePolicy, TollgateStores } from '@tollgate/core';
import { ConfigError } from './config.js';

export interface StoreOutageConfig {
  /** Request limits (tieredRateLimit). */
  requests: OutagePolicy;
  /** Token limits (tokenRateLimit). */
  tokens: OutagePolicy;
  /** Budgets (budgetGuard). */
  budget: OutagePolicy;
  /** The share of each limit and budget one process may grant on its own while Redis is out. */
  slice: number;
}

const POLICIES: readonly OutagePolicy[] = ['lease', 'failOpen', 'failClosed'];
const FIELDS = ['policy', 'requests', 'tokens', 'budget', 'slice'] as const;

function policyAt(value: unknown, path: string): OutagePolicy {
  if (typeof value === 'string' && (POLICIES as readonly string[]).includes(value)) return value as OutagePolicy;
  const hint = typeof value === 'string' ? closestName(value, POLICIES) : undefined;
  throw new ConfigError(`${path} must be "lease", "failOpen" or "failClosed"${hint ? `; did you mean "${hint}"?` : ''}`);
}

/**
 * `"storeOutage": "lease"`, or `{ "policy": "lease", "budget": "failClosed", "slice": 0.02 }`: one
 * policy for every layer, with a layer's own where given. @default failClosed everywhere (no lease)
 */
export function parseStoreOutage(value: unknown): StoreOutageConfig {
  if (typeof value === 'string') return { requests: policyAt(value, 'storeOutage'), tokens: policyAt(value, 'storeOutage'), budget: policyAt(value, 'storeOutage'), slice: 0.02 };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError('storeOutage must be "lease", "failOpen", "failClosed" or an object');
  const raw = value as Record<string, unknown>;
  for (const name of Object.keys(raw)) {
    if ((FIELDS as readonly string[]).includes(name)) continue;
    const hint = closestName(name, FIELDS);
    throw new ConfigError(`storeOutage has no field "${name}"${hint ? `; did you mean "${hint}"?` : ''} (known: ${FIELDS.join(', ')})`);
  }
  const all = raw.policy === undefined ? 'failClosed' : policyAt(raw.policy, 'storeOutage.policy');
  const slice = raw.slice ?? 0.02;
  if (typeof slice !== 'number' || !(slice > 0 && slice <= 1)) throw new ConfigError('storeOutage.slice must be a number above 0 and at most 1 (a share of each limit and budget)');
  return {
    requests: raw.requests === undefined ? all : policyAt(raw.requests, 'storeOutage.requests'),
    tokens: raw.tokens === undefined ? all : policyAt(raw.tokens, 'storeOutage.tokens'),
    budget: raw.budget === undefined ? all : policyAt(raw.budget, 'storeOutage.budget'),
    slice,
  };
}

/**
 * The stores the limits and the budget use: Redis stores behind leasedStores when the config asks
 * for a lease or failOpen anywhere; the stores themselves otherwise (and on memory, which cannot
 * fail). Outages are logged when they start and end.
 */
export function outageStores<S extends TollgateStores>(outage: StoreOutageConfig | undefined, stores: S, log: (line: string) => void): LeasedStores<S> | undefined {
  if (!outage || stores.kind === 'memory') return undefined;
  if (outage.requests === 'failClosed' && outage.tokens === 'failClosed' && outage.budget === 'failClosed') return undefined;
  return leasedStores(stores, {
    policy: { fixedWindow: outage.requests, counter: outage.tokens, ledger: outage.budget },
    slice: outage.slice,
    onOutage(event) {
      if (event.state === 'down') {
        const cause = event.error instanceof Error ? event.error.message : String(event.error);
        log(`tollgate proxy: Redis is out (${cause}); requests ${outage.requests}, tokens ${outage.tokens}, budgets ${outage.budget} (slice ${outage.slice}) until it answers`);
      } else {
        log(`tollgate proxy: Redis answers again; ${event.pendingCharges === 0 ? 'what the leases granted is charged' : `${event.pendingCharges} lease charges still to send`}`);
      }
    },
  });
}
