// The config's `sessionBudget` on tiers, tenants and keys, as budgetGuard takes it: a key's own wins over its tenant's,
// a tenant's over its tier's (the default tier's too); a mistake is named by its field.
import { describe, expect, it } from '@jest/globals';
import { validateConfig } from '../src/config/index.js';
import { budgetOptions } from '../src/config/budget-options.js';
import { rejection } from './helpers/config-rejection.js';
import { WITH_MOCK } from './helpers/mock-upstream.js';

const HASH = 'a'.repeat(64);
const day = (usd: number) => ({ usd, period: 'day' as const });

describe('proxy config: sessionBudget', () => {
  it("maps tiers, tenants and keys to sessionBudgets, the narrowest holder's winning", () => {
    const config = validateConfig({
      ...WITH_MOCK,
      defaultTier: 'free',
      tiers: { free: { sessionBudget: day(1) }, pro: { sessionBudget: day(5) }, team: {} },
      tenants: { acme: { tier: 'pro' }, globex: { tier: 'pro', sessionBudget: [day(2), { usd: 20 }] }, initech: {} },
      keys: [
        { id: 'own', sha256: HASH, tenant: 'acme', sessionBudget: day(3) },
        { id: 'same-tier', sha256: HASH.replace('a', 'b'), tenant: 'acme', tier: 'pro' },
        { id: 'other-tier', sha256: HASH.replace('a', 'c'), tenant: 'initech', tier: 'pro' },
        { id: 'over-tenant', sha256: HASH.replace('a', 'd'), tenant: 'globex', tier: 'free' },
        { id: 'alone', sha256: HASH.replace('a', 'e') },
      ],
    });
    expect(budgetOptions(config).sessionBudgets).toEqual({
      tenants: {
        acme: { usd: 5, period: 'day' },
        globex: [
          { usd: 2, period: 'day' },
          { usd: 20, period: 'month' },
        ],
        initech: { usd: 1, period: 'day' },
      },
      keys: {
        own: { usd: 3, period: 'day' },
        'other-tier': { usd: 5, period: 'day' },
        alone: { usd: 1, period: 'day' },
      },
    });
  });

  it('leaves budgetGuard without sessionBudgets when nothing names one', () => {
    const config = validateConfig({ ...WITH_MOCK, tenants: { acme: { budget: day(10) } } });
    expect(budgetOptions(config)).not.toHaveProperty('sessionBudgets');
  });

  it('names a bad sessionBudget by its field', () => {
    expect(rejection({ tiers: { pro: { sessionBudget: { usd: -1 } } } })).toContain('tiers.pro.sessionBudget.usd');
    expect(rejection({ tenants: { acme: { sessionBudget: { usd: 1, period: 'year' } } } })).toContain(
      'tenants.acme.sessionBudget.period',
    );
    expect(rejection({ keys: [{ id: 'k', sha256: HASH, sesionBudget: day(1) }] })).toContain('sessionBudget');
  });
});
