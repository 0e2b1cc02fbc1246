// Which models a tier may use: the one rule of every per-tier allowlist (tierPolicy, modelAllowlist, /v1/models).

/** Where a caller whose tier has no entry of its own is sent. Only what the options say: nothing is implied. */
interface TierModelsFallback {
  /** The tier whose entry such a caller gets. An entry without patterns allows any model. */
  defaultTier?: string;
  /** The patterns such a caller gets, when there is no `defaultTier` entry. */
  otherTiers?: readonly string[];
}

/**
 * Resolves, once, which model patterns each tier may use (`isModelAllowed` reads them). Without
 * `tiers` no tier rule applies: every tier gets `undefined`, any model. With `tiers` (even `{}`) a
 * tier with an entry gets its patterns (an entry of `undefined`: any model); any other tier, and a
 * caller without one, gets the fallback the options name, else no model at all. A guard that a tier
 * missing from the list walks around is worse than none, so an unknown tier fails closed.
 */
export function resolveTierModels(
  tiers: Readonly<Record<string, readonly string[] | undefined>> | undefined,
  fallback: TierModelsFallback = {},
): (tier: string | undefined) => readonly string[] | undefined {
  if (tiers === undefined) return () => undefined;
  // A Map, so a tier named like an Object.prototype member ("constructor") is not an entry by accident.
  const entries = new Map(Object.entries(tiers));
  const { defaultTier, otherTiers } = fallback;
  const others = defaultTier !== undefined && entries.has(defaultTier) ? entries.get(defaultTier) : (otherTiers ?? []);
  return function modelsOfTier(tier) {
    return tier !== undefined && entries.has(tier) ? entries.get(tier) : others;
  };
}
