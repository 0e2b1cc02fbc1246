// resolveTierModels: the tier allowlist rule, an unknown tier failing closed unless the options name a fallback; the pattern rule.
import { describe, expect, it } from '@jest/globals';
import { isModelAllowed, isNameAllowed, resolveTierModels } from '@tollgate/core/checks';

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

describe('the pattern rule of allowlists', () => {
  it('matches `*`, `prefix*` and exact names, for tools as for models', () => {
    const patterns = ['search/*', 'files/read'];
    expect(
      ['search/web_search', 'files/read', 'files/write', 'other/x'].map((n) => isNameAllowed(n, patterns)),
    ).toEqual([true, true, false, false]);
    expect(isNameAllowed('anything/at_all', ['*'])).toBe(true);
  });

  it('lets a dated model id match its family, and only a model', () => {
    expect(isModelAllowed('gpt-4o-2024-08-06', ['gpt-4o'])).toBe(true);
    expect(isNameAllowed('gpt-4o-2024-08-06', ['gpt-4o'])).toBe(false);
  });
});
