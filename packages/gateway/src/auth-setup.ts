// Who is calling: API keys (the gateway's own + the shared key store), optional JWTs, the required scope, attribution.
import { keyRecordsFromConfig } from '@tollgate/auth';
import type { ApiKeyAuthOptions, AttributionOptions, ConfigKeyEntry, JwtVerifyOptions } from '@tollgate/auth';
import { refusalRenderer } from '@tollgate/core';
import type { Identity, TollgateStores } from '@tollgate/core';
import { budgetedKeys } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';

/** Which tier an identity that names none is on: its tenant's, else the default tier. */
export interface TierAssignment {
  /** The tier of tenant `id` when it names one (the gateway's tenant lookup: the config file's, else a stored one). */
  tierOfTenant(id: string): string | undefined;
  /** The tier of callers whose identity and tenant name none. */
  defaultTier?: string | undefined;
}

/** What a key names elsewhere (its tenant, tier and tools' servers), and the budget it carries. */
export interface KeyNaming {
  tenant?: string | undefined;
  tier?: string | undefined;
  tools?: readonly string[] | undefined;
  budget?: unknown;
  /** The team of its tenant it is charged to, and that tenant when `tenant` is left out. */
  team?: string | undefined;
  teamTenant?: string | undefined;
}

/** How callers are identified, and what the chain asks of them right after. */
export interface AuthOptions {
  /** The gateway's own keys (a config file's `keys`), looked up before the key store. */
  keys: readonly ConfigKeyEntry[];
  /** Bearer JWTs accepted besides API keys (their identities get tiers as keys do). */
  jwt?: Omit<JwtVerifyOptions, 'mapIdentity'> | undefined;
  /** The scope every provider route requires. */
  requiredScope?: string | undefined;
  /** Who each request is for, beyond its key (@tollgate/auth `attribution`). */
  attribution: AttributionOptions;
  tiers: TierAssignment;
  /**
   * Why a key names what the gateway does not know, each problem naming its field (`at`); none: it may be served.
   * The rule the gateway's own keys passed at start, for keys from the key store and /admin/keys.
   */
  keyProblems(key: KeyNaming, at: string): string[];
  /**
   * Whether tenant `id` is served now (the config file's or a stored one): a stored key of a tenant deleted since is
   * refused as one of an unknown tenant. Absent: `keyProblems` judges the tenant, once per record.
   */
  knowsTenant?: ((id: string) => boolean) | undefined;
}

/** The tier of an identity that names none: its tenant's tier, else the default tier. */
export function identityTierResolver({ tierOfTenant, defaultTier }: TierAssignment): (identity: Identity) => Identity {
  return function resolveIdentityTier(identity) {
    if (identity.tier !== undefined) return identity;
    const tenantTier = identity.tenantId !== undefined ? tierOfTenant(identity.tenantId) : undefined;
    const tier = tenantTier ?? defaultTier;
    // Object.assign, not `{ ...identity, tier }`: a property after a leading spread is slow on Node 20.
    return tier === undefined ? identity : Object.assign({}, identity, { tier });
  };
}

/** Key lookup by hash: the config's keys (replaceable while running), then the shared key store. */
export interface KeyLookup {
  /** The record at once when the config or a memory store has it; a promise when the store must be asked. */
  find(sha256: string): Promise<ApiKeyRecord | undefined> | ApiKeyRecord | undefined;
  /** The record of key `id` as the gateway serves it (the config's first), for its budget's operator calls. */
  findById(id: string): Promise<ApiKeyRecord | undefined>;
  /** The records it serves that carry a budget, without reading every key of the store (`budgetedKeys`). */
  listBudgeted(): Promise<ApiKeyRecord[]>;
  /** Swap in the config's keys (after the config file changed). Throws on invalid entries, keeping the old ones. */
  replaceConfigKeys(keys: readonly ConfigKeyEntry[]): void;
}

/**
 * Config keys are looked up first (no store round trip), then the shared key store (keys made
 * with `pnpm tollgate keys create --redis`, or through /admin/keys).
 */
export function createKeyLookup(
  options: Pick<AuthOptions, 'keys' | 'keyProblems' | 'knowsTenant'>,
  stores: TollgateStores,
  log: (line: string) => void = () => undefined,
): KeyLookup {
  const index = (keys: readonly ConfigKeyEntry[]) =>
    new Map(keyRecordsFromConfig(keys).map((record) => [record.sha256, record]));
  let fromConfig = index(options.keys);
  let byId = new Map([...fromConfig.values()].map((record) => [record.id, record]));
  const servable = storedKeyCheck(options.keyProblems, options.knowsTenant, log);
  return {
    async findById(id) {
      return byId.get(id) ?? servable(await stores.keys.findById(id));
    },
    async listBudgeted() {
      const stored = (await budgetedKeys(stores.keys)).filter((record) => !byId.has(record.id));
      const configured = [...byId.values()].filter((record) => record.budget !== undefined);
      return [...configured, ...stored.flatMap((record) => servable(record) ?? [])];
    },
    find(sha256) {
      const keys = stores.keys;
      const configured = fromConfig.get(sha256);
      if (configured) return configured;
      const stored = keys.findByHashSync ? keys.findByHashSync(sha256) : keys.findByHash(sha256);
      return stored instanceof Promise ? stored.then(servable) : servable(stored);
    },
    replaceConfigKeys(keys) {
      fromConfig = index(keys);
      byId = new Map([...fromConfig.values()].map((record) => [record.id, record]));
    },
  };
}

/**
 * A key from the key store is served only when the gateway knows what it names (the rule its own keys pass at start,
 * `keyProblems`): one naming an unknown tier would run on the default tier, one naming an unknown tenant with no
 * tenant budget, one whose budget does not read with no budget. Such a key is refused as unknown, and said once at error level.
 */
function storedKeyCheck(
  keyProblems: AuthOptions['keyProblems'],
  knowsTenant: AuthOptions['knowsTenant'],
  log: (line: string) => void,
) {
  const judged = new WeakMap<ApiKeyRecord, boolean>();
  return function servableStoredKey(record: ApiKeyRecord | undefined): ApiKeyRecord | undefined {
    if (!record) return undefined;
    let ok = judged.get(record);
    if (ok === undefined) {
      // A tenant that comes and goes while the record stays is judged on each lookup (below), not once.
      const tenant = knowsTenant ? undefined : record.tenantId;
      const problems = keyProblems(
        {
          tenant,
          tier: record.tier,
          tools: record.tools,
          budget: record.budget,
          team: record.team,
          teamTenant: record.tenantId,
        },
        `key "${record.id}"`,
      );
      ok = problems.length === 0;
      judged.set(record, ok);
      if (!ok) log(`tollgate proxy: refused a key from the key store: ${problems.join('; ')}`);
    }
    if (ok && knowsTenant && record.tenantId !== undefined && !knowsTenant(record.tenantId)) return undefined;
    return ok ? record : undefined;
  };
}

/**
 * Identification, as @tollgate/auth `apiKeyAuth` takes it: an API key (either header), or with `jwt` configured also a
 * bearer JWT. One middleware for both, so a valid JWT costs no key lookup and every 401 names both kinds. Its
 * refusals, the 503 of a key store that failed included, name the `auth` layer; `onStoreError` hears the key store's
 * failures.
 */
export function apiKeyAuthOptions(
  options: Pick<AuthOptions, 'jwt' | 'tiers'>,
  keys: KeyLookup,
  onStoreError?: (error: unknown) => void,
): Partial<ApiKeyAuthOptions> {
  const withTier = identityTierResolver(options.tiers);
  return {
    keys: (sha256) => keys.find(sha256),
    mapIdentity: withTier,
    ...(options.jwt ? { jwt: { ...options.jwt, mapIdentity: withTier } } : {}),
    renderError: refusalRenderer('auth'),
    ...(onStoreError ? { onStoreError } : {}),
  };
}
