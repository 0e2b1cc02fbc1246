// What a rebuild asks the usage ledger to keep apart: only the caller fields that decide a plan's budgets (so a month
// of records can be summed from rollups), every field for a `budgets` function; callers a source answers in rows of
// their own that the plan cannot tell apart are one caller, their spend added, never overwritten.
import { describe, expect, it } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuardOptions, CallerField, SpendSource } from '@tollgate/budget';
import { BudgetPlan } from '../src/budget-plan.js';

const day = (usd: number) => ({ usd, period: 'day' as const });

describe('the caller fields a plan decides by', () => {
  it.each<[string, ConstructorParameters<typeof BudgetPlan>[0], readonly CallerField[] | undefined]>([
    ['the global budget alone', { global: day(100) }, []],
    ['tenants', { tenants: { '*': day(10) } }, ['tenantId']],
    ['keys and tenants', { keys: { '*': day(1) }, tenants: { acme: day(10) } }, ['keyId', 'tenantId']],
    ['budgets keys carry', { keyBudgets: () => undefined }, ['keyId']],
    ['end users across tenants', { users: { '*': day(1) } }, ['userId']],
    ["a tenant's end users", { tenantUsers: { '*': day(1) } }, ['userId', 'tenantId']],
    ['features', { features: { chat: day(1) } }, ['feature']],
    ['models within tenants', { modelBudgets: { acme: { 'gpt-4o': day(1) } } }, ['tenantId', 'model']],
    ['sessions', { sessionBudgets: { tenants: { '*': day(1) } } }, ['keyId', 'tenantId', 'session']],
    [
      'teams and their members',
      { teamBudgets: { acme: { red: { budget: day(5) } } } },
      ['keyId', 'userId', 'tenantId', 'team'],
    ],
    ['a budgets function (it may read any field)', { tenants: { '*': day(1) }, budgets: () => [] }, undefined],
    [
      'a budgets function that declares what it decides by',
      { features: { chat: day(1) }, budgets: () => [], budgetsDecideBy: ['tenantId', 'session'] },
      ['tenantId', 'feature', 'session'],
    ],
  ])('%s', (_case, options, fields) => {
    expect(new BudgetPlan(options).callerFields()).toEqual(fields);
  });
});

describe('a rebuild that asks for the fields its budgets decide by', () => {
  const options: Partial<BudgetGuardOptions> = { tenants: { '*': day(10) }, keys: { 'acme-k1': day(5) } };

  it('asks for them, and adds the spend of rows a source kept apart by other fields', async () => {
    const guard = budgetGuard({ ledger: createMemoryStores().ledger, log: false, ...options });
    const asked: (readonly CallerField[] | undefined)[] = [];
    const nobody = { userId: null, feature: null, model: null, tags: null, team: null };
    const source: SpendSource = {
      async spentByCaller(_since, _until, _before, _from, _only, fields) {
        asked.push(fields);
        // A source that ignores `fields`: acme's key k1 in two sessions, and a call of another key.
        return [
          { ...nobody, keyId: 'acme-k1', tenantId: 'acme', session: 's1', spentNanoUsd: 1_000_000_007 },
          { ...nobody, keyId: 'acme-k1', tenantId: 'acme', session: 's2', spentNanoUsd: 2_000_000_000 },
          { ...nobody, keyId: 'acme-k2', tenantId: 'acme', session: null, spentNanoUsd: 5 },
        ];
      },
    };
    await guard.rebuild(source);
    // Once from the oldest period's start, once from the day's: each read keeps the same fields apart.
    expect(asked).toEqual([
      ['keyId', 'tenantId'],
      ['keyId', 'tenantId'],
    ]);
    const spent = async (selector: Parameters<typeof guard.status>[0]) =>
      (await guard.status(selector)).map((s) => s.spentNanoUsd);
    expect(await spent({ scope: 'key', id: 'acme-k1' })).toEqual([3_000_000_007]);
    expect(await spent({ scope: 'tenant', id: 'acme' })).toEqual([3_000_000_012]);
    await guard.close();
  });
});

describe('a budgets function that declares the fields it decides by', () => {
  it('reads those, and is refused another at once, at a request as at a rebuild', async () => {
    const plan = new BudgetPlan({
      budgets: (identity) =>
        identity.tenantId === 'acme' ? [{ scope: 'tenant', id: 'acme', usd: 5, period: 'day' }] : [],
      budgetsDecideBy: ['tenantId'],
    });
    const identity = { keyId: 'k1', tenantId: 'acme', userId: 'bob', scopes: [], authMethod: 'api_key' as const };
    expect((await plan.forCall(identity, 'gpt-4o')).map((budget) => budget.id)).toEqual(['acme']);

    const byUser = new BudgetPlan({
      budgets: (identity) => (identity.userId === 'bob' ? [{ scope: 'user', id: 'bob', usd: 1, period: 'day' }] : []),
      budgetsDecideBy: ['tenantId'],
    });
    await expect(byUser.forCall(identity, undefined)).rejects.toMatchObject({
      code: 'ERR_TG_BUDGET_UNDECLARED_FIELD',
      message: expect.stringContaining('identity.userId'),
    });
    const guard = budgetGuard({
      ledger: createMemoryStores().ledger,
      log: false,
      budgets: (caller) => (caller.userId === 'bob' ? [{ scope: 'user', id: 'bob', usd: 1, period: 'day' }] : []),
      budgetsDecideBy: ['tenantId'],
    });
    await expect(guard.rebuild({ spentByCaller: async () => [] })).rejects.toMatchObject({
      code: 'ERR_TG_BUDGET_UNDECLARED_FIELD',
    });
    await guard.close();
  });

  it('refuses a field that is not a caller field', () => {
    expect(() => new BudgetPlan({ budgets: () => [], budgetsDecideBy: ['tier' as never] })).toThrow(/budgetsDecideBy/);
  });
});
