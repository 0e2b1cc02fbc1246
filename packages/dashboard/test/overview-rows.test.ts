// The overview at scale: with a budget on each of 300 tenants and 300 keys it shows the 200 most used of each, those
// past a limit first, and counts in one alert the budgets past a limit it does not show. A tenant's page asks for the
// budgets of its own keys and models, never for every budget there is.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard, type BudgetGuard } from '@tollgate/budget';
import { apiErrorHandler, createMemoryStores } from '@tollgate/core';
import { dashboard } from '@tollgate/dashboard';

const adminKey = generateApiKey();
const stores = createMemoryStores({ sweepIntervalMs: 0 });
const names = (prefix: string) => Array.from({ length: 300 }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);
const cap = { usd: 10, period: 'month' as const, softLimit: 0.8 };
let guard: BudgetGuard;
let app: express.Express;

/** Spends `usd` of the budget of `scope` `id`. */
async function spend(scope: 'tenant' | 'key', id: string, usd: number): Promise<void> {
  const [status] = await guard.status({ scope, id });
  await stores.ledger.adjustSpent(status!.key, usd * 1e9, Date.parse(status!.resetAt));
}

beforeAll(async () => {
  guard = budgetGuard({
    ledger: stores.ledger,
    tenants: Object.fromEntries(names('t').map((id) => [id, cap])),
    keys: Object.fromEntries(names('k').map((id) => [id, cap])),
    modelBudgets: { t100: { 'gpt-4o': { usd: 5, period: 'month' } } },
    log: false,
  });
  // Two of t100's keys in the key store: its page lists them and their budgets.
  for (const id of ['k000', 'k001'])
    await stores.keys.put({
      id,
      sha256: hashApiKey(id),
      tenantId: 't100',
      scopes: [],
      createdAt: '2026-11-01T00:00:00Z',
    });
  // Spent: t250 and k260 over their cap, t251 and every other key from k070 on (229) past the soft limit, t100 a little.
  await spend('tenant', 't250', 12);
  await spend('tenant', 't251', 9);
  await spend('tenant', 't100', 1);
  await spend('key', 'k260', 11);
  for (const id of names('k').slice(70)) if (id !== 'k260') await spend('key', id, 8.5);
  app = express();
  app.use('/d', dashboard({ adminKeySha256: hashApiKey(adminKey), budgets: guard, keys: stores.keys }));
  app.use(apiErrorHandler());
});

afterAll(async () => {
  await guard.close();
});

describe('the overview with a budget on each of 300 tenants and 300 keys', () => {
  it('shows the 200 most used of each, and counts the budgets past a limit it leaves out', async () => {
    const response = await request(app).get('/d/api/overview').set('authorization', `Bearer ${adminKey}`);
    expect(response.status).toBe(200);
    const body = response.body as {
      tenants: { id: string; state: string }[];
      otherBudgets: { id: string; state: string }[];
      alerts: { level: string; message: string }[];
    };
    expect(body.tenants).toHaveLength(200);
    expect(body.tenants.slice(0, 3).map((row) => [row.id, row.state])).toEqual([
      ['t250', 'over'],
      ['t251', 'soft'],
      ['t100', 'ok'],
    ]);
    expect(body.otherBudgets).toHaveLength(200);
    expect(body.otherBudgets[0]).toMatchObject({ id: 'k260', state: 'over' });
    expect(body.otherBudgets.slice(1).every((row) => row.state === 'soft')).toBe(true);
    // Every budget past a limit is either shown (with its own alert) or counted: none past a limit is hidden unsaid.
    expect(body.alerts.filter((alert) => alert.message.startsWith('The key'))).toHaveLength(200);
    expect(body.alerts.map((alert) => alert.message)).toContainEqual(
      expect.stringMatching(/^30 more key, user or model budgets are past their soft limit or spent/),
    );
  });
});

describe("a tenant's page", () => {
  it('asks for the budgets of its keys and models, not for every budget', async () => {
    const asked: unknown[] = [];
    const status = guard.status.bind(guard);
    guard.status = (selector) => {
      asked.push(selector);
      return status(selector);
    };
    const response = await request(app).get('/d/api/tenants/t100').set('authorization', `Bearer ${adminKey}`);
    expect(response.status).toBe(200);
    const budgets = (response.body as { budgets: { scope: string; id: string | null }[] }).budgets;
    expect(budgets.map((budget) => `${budget.scope} ${budget.id}`).sort()).toEqual([
      'key k000',
      'key k001',
      'model gpt-4o',
      'tenant t100',
    ]);
    // Its own budget, its models' (configured, then each met or configured one), its page's keys: nothing else.
    expect(asked).toEqual([
      { scope: 'tenant', id: 't100' },
      { scope: 'model', tenant: 't100' },
      { scope: 'model', id: 'gpt-4o', tenant: 't100' },
      { scope: 'key', id: 'k000' },
      { scope: 'key', id: 'k001' },
    ]);
  });
});
