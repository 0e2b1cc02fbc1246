// Team and member budgets within a tenant: named, listed and rebuilt apart from each other; a budget out of its
// validity window neither listed for a rebuild nor restored; mistakes in the options named by their path.
import { describe, expect, it } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuardOptions } from '@tollgate/budget';

const day = (usd: number) => ({ usd, period: 'day' as const });
const TEAMS: BudgetGuardOptions['teamBudgets'] = {
  acme: {
    research: {
      budget: day(10),
      members: { each: { budget: day(1) }, 'user:alice': { exempt: true }, 'key:bot': { budget: day(3) } },
    },
  },
};

function guardWith(options: Partial<BudgetGuardOptions> = {}) {
  return budgetGuard({ ledger: createMemoryStores().ledger, teamBudgets: TEAMS, log: false, ...options });
}

describe('team budgets', () => {
  it('lists each team and each member named with its kind, in the tenant slot', async () => {
    const guard = guardWith();
    const listed = (await guard.status()).map(({ scope, id, tenantId, teamId, limitUsd }) => ({
      scope,
      id,
      tenantId,
      teamId,
      limitUsd,
    }));
    expect(listed).toEqual([
      { scope: 'team', id: 'research', tenantId: 'acme', teamId: undefined, limitUsd: 10 },
      { scope: 'member', id: 'key:bot', tenantId: 'acme', teamId: 'research', limitUsd: 3 },
    ]);
    // A member first seen later has the template; an exempt one has no member budget; a member needs its team.
    const member = (id: string, team?: string) =>
      guard.status({ scope: 'member', id, tenant: 'acme', ...(team ? { team } : {}) });
    expect((await member('user:carol', 'research')).map((s) => s.limitUsd)).toEqual([1]);
    expect(await member('user:alice', 'research')).toEqual([]);
    expect(await member('user:carol')).toEqual([]);
    expect(await member('carol', 'research')).toEqual([]);
    await guard.close();
  });

  it('rebuilds team and member counters from the ledger: user bob and key bob are two members', async () => {
    const guard = guardWith();
    const nobodyElse = { feature: null, model: null, tags: null, session: null, tenantId: 'acme', team: 'research' };
    const callers = [
      { ...nobodyElse, keyId: 'k1', userId: 'bob', spentNanoUsd: 300_000_001 },
      { ...nobodyElse, keyId: 'bob', userId: null, spentNanoUsd: 200_000_000 },
      { ...nobodyElse, keyId: 'k1', userId: 'alice', spentNanoUsd: 7 },
      { ...nobodyElse, keyId: 'bot', userId: null, spentNanoUsd: 11 },
      // A call of acme without a team: the tenant's only.
      { ...nobodyElse, team: null, keyId: 'k1', userId: 'bob', spentNanoUsd: 1_000 },
    ];
    const report = await guard.rebuild({ spentByCaller: async () => callers });
    const spent = async (selector: Parameters<typeof guard.status>[0]) =>
      (await guard.status(selector)).map((s) => s.spentNanoUsd);
    expect(await spent({ scope: 'team', id: 'research', tenant: 'acme' })).toEqual([500_000_019]);
    const member = (id: string) => spent({ scope: 'member', id, tenant: 'acme', team: 'research' });
    expect(await member('user:bob')).toEqual([300_000_001]);
    expect(await member('key:bob')).toEqual([200_000_000]);
    expect(await member('key:bot')).toEqual([11]);
    expect(report.restored.map(({ key }) => key).filter((key) => key.includes(':member:'))).toHaveLength(3);
    expect(report.slots).toEqual(expect.arrayContaining(['tenant:acme']));
    await guard.close();
  });

  it('neither rebuilds nor counts from before its window a budget with validFrom and validUntil', async () => {
    // The store's clock is the real one: the window is set around now.
    const now = Date.now();
    const opened = new Date(now - 1000).toISOString();
    const guard = guardWith({
      now: () => now,
      teamBudgets: undefined,
      tenants: { acme: { ...day(5), validUntil: opened }, beta: { ...day(5), validFrom: opened } },
    });
    const asked: number[] = [];
    const caller = { feature: null, model: null, tags: null, userId: null, spentNanoUsd: 9 };
    const report = await guard.rebuild({
      spentByCaller: async (since) => {
        asked.push(since);
        return [
          { ...caller, keyId: 'a', tenantId: 'acme' },
          { ...caller, keyId: 'b', tenantId: 'beta' },
        ];
      },
    });
    expect(report.restored.map(({ key }) => key)).toEqual([expect.stringMatching(/^budget:tenant:beta:day:/)]);
    // The operator's view says which is in force, and its window.
    const [acme] = await guard.status({ scope: 'tenant', id: 'acme' });
    const [beta] = await guard.status({ scope: 'tenant', id: 'beta' });
    expect(acme).toMatchObject({ inForce: false, validUntil: opened });
    expect(acme).not.toHaveProperty('validFrom');
    expect(beta).toMatchObject({ inForce: true, validFrom: opened });
    expect(beta).not.toHaveProperty('validUntil');
    // beta's day counts from its validFrom, not from midnight.
    expect(asked).toContain(Math.max(Date.parse(opened), now - (now % 86_400_000)));
    await guard.close();
  });

  it('names a mistake by its path', () => {
    const refused = (teamBudgets: unknown) => () => guardWith({ teamBudgets: teamBudgets as never });
    expect(refused({ acme: { t: { members: { each: { exempt: true } } } } })).toThrow(
      /teamBudgets\.acme\.t\.members\.each/,
    );
    expect(refused({ acme: { t: { budgets: day(1) } } })).toThrow(/unknown field "budgets"/);
    expect(refused({ acme: { t: { members: { bob: { exempt: true, budget: day(1) } } } } })).toThrow(/members\.bob/);
    expect(() => guardWith({ global: { ...day(1), validFrom: 'soon' } })).toThrow(/validFrom must be an ISO 8601/);
    expect(() =>
      guardWith({ global: { ...day(1), validFrom: '2026-02-01T00:00:00Z', validUntil: '2026-01-01T00:00:00Z' } }),
    ).toThrow(/validFrom must be before validUntil/);
  });
});
