// The plan keeps an id's bound budgets from its second ask on: a request path asks the same tenants again and again and
// finds them kept, a rebuild that asks each of 100,000 tenants once keeps none (they die young: bench/guard-stall.ts).
import { describe, expect, it } from '@jest/globals';
import type { Identity } from '@tollgate/core';
import { BudgetPlan } from '../src/budget-plan.js';

const caller = (tenantId: string) => ({ keyId: `key-of-${tenantId}`, tenantId, scopes: [] }) as unknown as Identity;

describe("a plan's bound budgets", () => {
  it('are made anew for an id asked once, and kept from its second ask on', () => {
    const plan = new BudgetPlan({ tenants: { '*': { usd: 10, period: 'month' } } });
    const first = plan.forIdentity(caller('acme')) as readonly { id: string | null }[];
    const second = plan.forIdentity(caller('acme'));
    const third = plan.forIdentity(caller('acme'));
    expect(first).toEqual(second);
    expect(first[0]!.id).toBe('acme');
    // The first ask only noted the id: its budgets were not the ones kept.
    expect(second).not.toBe(first);
    expect(third).toBe(second);
  });

  it('asked for 30,000 tenants once each, keep none of them, and a tenant asked again meanwhile stays kept', () => {
    const plan = new BudgetPlan({ tenants: { '*': { usd: 10, period: 'month' } } });
    plan.forIdentity(caller('regular'));
    const kept = plan.forIdentity(caller('regular'));
    const once = new Set<unknown>();
    for (let i = 0; i < 30_000; i++) {
      once.add(plan.forIdentity(caller(`t${i}`)));
      if (i % 1_000 === 0) expect(plan.forIdentity(caller('regular'))).toBe(kept);
    }
    // Asked again, none of the 30,000 is answered with what it was given: nothing of theirs was kept.
    for (let i = 0; i < 30_000; i += 1_111) expect(once.has(plan.forIdentity(caller(`t${i}`)))).toBe(false);
  });
});
