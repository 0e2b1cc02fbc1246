// The operator view: spent, reserved, limit, remaining and reset time per scope over HTTP, plus top-up and reset.
import { afterAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { createMemoryStores } from '@tollgate/core';
import { budgetAdminRouter, budgetGuard, getBudgetStatus } from '@tollgate/budget';
import { createApp, eventually, pricing } from './helpers.js';

const clock = () => Date.UTC(2026, 10, 22, 9, 0);
const stores = createMemoryStores({ clock, sweepIntervalMs: 0 });
const guard = budgetGuard({
  ledger: stores.ledger,
  pricing,
  now: clock,
  log: false,
  keys: { k1: { usd: 5, period: 'day' } },
  tenants: { acme: { usd: 0.01, period: 'month', softLimit: 0.8 }, '*': { usd: 1, period: 'hour' } },
  global: { usd: 100, period: 'day' },
});
const api = createApp(guard);
const admin = express();
admin.use('/admin/budgets', budgetAdminRouter(guard));

afterAll(async () => {
  await guard.close();
  await stores.close();
});

async function spend(outputTokens: number): Promise<void> {
  await request(api)
    .post('/v1/chat/completions')
    .set('x-test-key', 'k1')
    .set('x-test-tenant', 'acme')
    .send({ input_tokens: 0, max_tokens: outputTokens });
  await eventually(async () => (await guard.status({ scope: 'tenant', id: 'acme' }))[0]!.reservedNanoUsd === 0);
}

describe('budgetAdminRouter', () => {
  it('lists every budget configured with a fixed id, with its numbers', async () => {
    await spend(2500); // $0.005
    const response = await request(admin).get('/admin/budgets');
    expect(response.status).toBe(200);
    expect(response.body.budgets.map((b: { scope: string; id: string | null }) => `${b.scope}:${b.id}`)).toEqual([
      'key:k1',
      'tenant:acme',
      'global:null',
    ]);
    expect(response.body.budgets[1]).toEqual({
      scope: 'tenant',
      id: 'acme',
      tenantId: null,
      period: 'month',
      key: 'budget:tenant:acme:month:2026-11',
      limitNanoUsd: 10_000_000,
      spentNanoUsd: 5_000_000,
      reservedNanoUsd: 0,
      creditNanoUsd: 0,
      remainingNanoUsd: 5_000_000,
      limitUsd: 0.01,
      spentUsd: 0.005,
      reservedUsd: 0,
      creditUsd: 0,
      remainingUsd: 0.005,
      resetAt: '2026-12-01T00:00:00.000Z',
      softLimit: 0.8,
      thresholds: [0.8],
      softLimitReached: false,
      forecastNanoUsd: null,
      forecastUsd: null,
      inForce: true,
    });
    expect(await getBudgetStatus(guard)).toEqual(response.body.budgets);
  });

  it('shows one scope, wildcard ones included, and global', async () => {
    const acme = await request(admin).get('/admin/budgets/tenant/acme');
    expect(acme.body.budgets).toHaveLength(1);
    const other = await request(admin).get('/admin/budgets/tenant/globex');
    expect(other.body.budgets[0]).toMatchObject({
      scope: 'tenant',
      id: 'globex',
      period: 'hour',
      limitUsd: 1,
      resetAt: '2026-11-22T10:00:00.000Z',
    });
    const global = await request(admin).get('/admin/budgets/global');
    expect(global.body.budgets[0]).toMatchObject({ scope: 'global', id: null, limitUsd: 100 });
  });

  it('gives the budgets of one caller', async () => {
    const budgets = await guard.statusFor({ keyId: 'k1', tenantId: 'initech', scopes: [], authMethod: 'api_key' });
    expect(budgets.map((b) => b.key)).toEqual([
      'budget:key:k1:day:2026-11-22',
      'budget:tenant:initech:hour:2026-11-22T09',
      'budget:global:day:2026-11-22',
    ]);
  });

  it('answers 404 for a scope without a budget and 400 for an unknown scope kind', async () => {
    const missing = await request(admin).get('/admin/budgets/key/nope');
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('not_found');
    const bad = await request(admin).get('/admin/budgets/squad/x');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'invalid_request', param: 'scope' });
    // A team belongs to a tenant, a member to a team of one: each is named, or 400 names what is missing.
    const teamless = await request(admin).get('/admin/budgets/team/x');
    expect([teamless.status, teamless.body.error.param]).toEqual([400, 'tenant']);
    const memberless = await request(admin).get('/admin/budgets/member/user:bob?tenant=acme');
    expect([memberless.status, memberless.body.error.param]).toEqual([400, 'team']);
    expect((await request(admin).get('/admin/budgets/team/x?tenant=acme')).status).toBe(404);
  });

  it('tops up a scope (credit against this period, spent left as it was) and rejects a bad amount', async () => {
    const [before] = await guard.status({ scope: 'tenant', id: 'acme' });
    const response = await request(admin).post('/admin/budgets/tenant/acme/top-up').send({ usd: 0.002 });
    expect(response.status).toBe(200);
    expect(response.body.budgets[0]).toMatchObject({
      spentNanoUsd: before!.spentNanoUsd,
      creditNanoUsd: before!.creditNanoUsd + 2_000_000,
    });
    const bad = await request(admin).post('/admin/budgets/tenant/acme/top-up').send({ usd: -3 });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe('usd');
  });

  it('a top-up larger than the spend raises the headroom by its whole amount', async () => {
    const [before] = await guard.status({ scope: 'tenant', id: 'acme' });
    // Five times the limit: before, the credit stopped at zero spend and the rest was discarded.
    const response = await request(admin).post('/admin/budgets/tenant/acme/top-up').send({ usd: 0.05 });
    const [after] = response.body.budgets;
    expect(after).toMatchObject({
      spentNanoUsd: before!.spentNanoUsd,
      creditNanoUsd: before!.creditNanoUsd + 50_000_000,
    });
    expect(after.remainingNanoUsd).toBe(before!.remainingNanoUsd + 50_000_000);
  });

  it('resets a scope and global', async () => {
    const response = await request(admin).post('/admin/budgets/tenant/acme/reset');
    expect(response.status).toBe(200);
    expect(response.body.budgets[0]).toMatchObject({ spentNanoUsd: 0, remainingNanoUsd: 10_000_000 });
    const global = await request(admin).post('/admin/budgets/global/reset');
    expect(global.body.budgets[0].spentNanoUsd).toBe(0);
    // Other scopes keep their spend.
    expect((await guard.status({ scope: 'key', id: 'k1' }))[0]!.spentNanoUsd).toBeGreaterThan(0);
  });
});
