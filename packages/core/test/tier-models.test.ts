// resolveTierModels: the tier allowlist rule, an unknown tier failing closed unless the options name a fallback.
import { describe, expect, it } from '@jest/globals';
import { resolveTierModels } from '@tollgate/core/kit';

describe('resolveTierModels', () => {
  const tiers = { free: ['gpt-4o-mini'], pro: undefined };

  it('restricts nobody without tiers', () => {
    const modelsOf = resolveTierModels(undefined, { otherTiers: ['x'] });
    expect([modelsOf('free'), modelsOf(undefined)]).toEqual([undefined, undefined]);
  });

  it('gives a listed tier its patterns, or any model for an entry without them', () => {
    const modelsOf = resolveTierModels(tiers);
    expect(modelsOf('free')).toEqual(['gpt-4o-mini']);
    expect(modelsOf('pro')).toBeUndefined();
  });

  it('gives an unknown tier, and a caller without one, no model unless the options name a fallback', () => {
    expect(['gold', undefined, 'constructor', 'toString'].map(resolveTierModels(tiers))).toEqual([[], [], [], []]);
    expect(resolveTierModels({})('free')).toEqual([]);
    expect(resolveTierModels(tiers, { defaultTier: 'free' })('gold')).toEqual(['gpt-4o-mini']);
    expect(resolveTierModels(tiers, { defaultTier: 'pro' })(undefined)).toBeUndefined();
    expect(resolveTierModels(tiers, { otherTiers: ['o3'] })('gold')).toEqual(['o3']);
    // A default that names no entry is no fallback at all.
    expect(resolveTierModels(tiers, { defaultTier: 'platinum' })('gold')).toEqual([]);
  });
});
