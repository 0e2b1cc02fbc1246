// The numbers on the pages are the ledger's: spend per tenant to the cent, bars that turn at the soft limit and the cap, on PGlite and PostgreSQL.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { periodWindow } from '@tollgate/core';
import { createDashboardApp, dashboardOverLedger, LEDGER_KINDS, usageRecord } from './helpers.js';

const MINUTE = 60_000;

describe.each(LEDGER_KINDS)('spend on the %s ledger', (kind) => {
  const now = Date.now();
  const month = periodWindow('month', now);
  // Minutes ago stays in this month unless the month began minutes ago: then the sums below say so too.
  const ago = (minutes: number) => new Date(Math.max(month.start, now - minutes * MINUTE)).toISOString();

  const records = [
    usageRecord({
      timestamp: ago(1),
      tenantId: 'acme',
      keyId: 'acme-app',
      model: 'gpt-4o',
      costNanoUsd: 1_234_567_891,
    }),
    usageRecord({
      timestamp: ago(2),
      tenantId: 'acme',
      keyId: 'acme-app',
      model: 'gpt-4o-mini',
      costNanoUsd: 987_654_321,
      status: 502,
    }),
    usageRecord({
      timestamp: ago(3),
      tenantId: 'acme',
      keyId: 'acme-batch',
      userId: 'bob',
      feature: 'search',
      model: 'gpt-4o',
      costNanoUsd: 2_000_000_005,
    }),
    usageRecord({
      timestamp: ago(4),
      tenantId: 'globex',
      keyId: 'globex-app',
      userId: 'carol',
      feature: 'search',
      provider: 'anthropic',
      model: 'claude-sonnet-4-5',
      costNanoUsd: 3_333_333_333,
      latencyMs: 2000,
    }),
    usageRecord({
      timestamp: ago(5),
      tenantId: 'initech',
      keyId: 'initech-app',
      userId: null,
      feature: null,
      model: 'gpt-4o',
      costNanoUsd: 1_500_000_000,
    }),
    // Last month: outside this period's spend.
    usageRecord({
      timestamp: new Date(month.start - 3_600_000).toISOString(),
      tenantId: 'acme',
      costNanoUsd: 50_000_000_000,
    }),
  ];

  const setup = dashboardOverLedger(kind, records);
  const bearer = () => ({ authorization: `Bearer ${setup.subject.adminKey}` });

  async function ledgerSum(tenant: string): Promise<number> {
    const result = await setup.database.db.query<{ sum: unknown }>(
      `SELECT coalesce(sum(cost_nano_usd), 0) AS sum FROM "${setup.location.table}" WHERE tenant_id = $1 AND ts >= $2 AND ts < $3`,
      [tenant, new Date(month.start).toISOString(), new Date(month.end).toISOString()],
    );
    return Number(result.rows[0]!.sum);
  }

  it('shows each tenant the spend the ledger holds for this month, to the cent', async () => {
    const overview = await request(setup.subject.app).get('/dashboard/api/overview').set(bearer());
    const page = await request(setup.subject.app).get('/dashboard/').set(bearer()).set('accept', 'text/html');
    for (const tenant of ['acme', 'globex', 'initech']) {
      const expected = await ledgerSum(tenant);
      expect(expected).toBeGreaterThan(1e9);
      const row = overview.body.tenants.find((candidate: { id: string }) => candidate.id === tenant);
      expect(row.ledgerSpentNanoUsd).toBe(expected);
      expect(row.period).toBe('month');
      const cell = new RegExp(`data-tenant="${tenant}"[\\s\\S]*?data-nano-usd="(\\d+)">\\$([\\d.]+)<`).exec(page.text);
      expect(Number(cell![1])).toBe(expected);
      expect(cell![2]).toBe((Math.round(expected / 1e7) / 100).toFixed(2));
    }
    // A tenant with no budget of its own is listed from the ledger, with no bar.
    expect(overview.body.tenants.find((row: { id: string }) => row.id === 'initech')).toMatchObject({
      budget: null,
      state: 'none',
    });
  });

  it("turns a tenant's bar at its soft limit and at its cap", async () => {
    const state = async () => {
      const page = await request(setup.subject.app).get('/dashboard/').set(bearer()).set('accept', 'text/html');
      const row =
        /<tr data-tenant="acme" data-state="(\w+)">[\s\S]*?<div class="bar bar--(\w+)" data-state="(\w+)" role="meter"[^>]*aria-valuenow="(\d+)"/.exec(
          page.text,
        );
      return { row: row?.[1], barClass: row?.[2], bar: row?.[3], percent: Number(row?.[4]) };
    };
    // acme's cap is $10 with a soft limit at 80%.
    await setup.subject.charge('tenant', 'acme', 5_000_000_000);
    expect(await state()).toEqual({ row: 'ok', barClass: 'ok', bar: 'ok', percent: 50 });
    await setup.subject.charge('tenant', 'acme', 3_500_000_000);
    expect(await state()).toEqual({ row: 'soft', barClass: 'soft', bar: 'soft', percent: 85 });
    const alerts = (await request(setup.subject.app).get('/dashboard/api/overview').set(bearer())).body.alerts;
    expect(alerts).toContainEqual(expect.objectContaining({ level: 'warning', href: 'tenants/acme' }));
    await setup.subject.charge('tenant', 'acme', 1_500_000_000);
    expect(await state()).toEqual({ row: 'over', barClass: 'over', bar: 'over', percent: 100 });
    const over = (await request(setup.subject.app).get('/dashboard/api/overview').set(bearer())).body.alerts;
    expect(over).toContainEqual(
      expect.objectContaining({
        level: 'critical',
        message: expect.stringContaining('The tenant acme budget is spent'),
      }),
    );
  });

  it('credits a budget from the tenant page, and the bar follows', async () => {
    const answer = await request(setup.subject.app)
      .post('/dashboard/api/budgets/tenant/acme/top-up')
      .set(bearer())
      .send({ usd: 6 });
    expect(answer.status).toBe(200);
    // Spent stays what was spent ($10 of the $10 cap); the $6 is credit, all of it left.
    const figures = { spentNanoUsd: 10_000_000_000, creditNanoUsd: 6_000_000_000 };
    expect(answer.body.budgets[0]).toMatchObject({ scope: 'tenant', id: 'acme', ...figures });
    const tenant = await request(setup.subject.app).get('/dashboard/api/tenants/acme').set(bearer());
    expect(tenant.body.budgets[0]).toMatchObject({
      state: 'ok',
      ...figures,
      remainingNanoUsd: 6_000_000_000,
      resetAt: new Date(month.end).toISOString(),
    });
    expect(
      (
        await request(setup.subject.app)
          .post('/dashboard/api/budgets/tenant/nobody/top-up')
          .set(bearer())
          .send({ usd: 1 })
      ).status,
    ).toBe(404);
    expect(
      (
        await request(setup.subject.app)
          .post('/dashboard/api/budgets/tenant/acme/top-up')
          .set(bearer())
          .send({ usd: -1 })
      ).body.error.param,
    ).toBe('usd');
  });

  it("draws a tenant's spend over time from the ledger, and splits it by model, feature, user and key", async () => {
    const answer = await request(setup.subject.app).get('/dashboard/api/tenants/acme?range=24h').set(bearer());
    expect(answer.status).toBe(200);
    const data = answer.body;
    const inRange = records.filter(
      (record) => record.tenantId === 'acme' && Date.parse(record.timestamp) >= Date.parse(data.since),
    );
    const expected = inRange.reduce((sum, record) => sum + record.costNanoUsd, 0);
    const refusals = inRange.filter((record) => record.refusedBy !== undefined).length;
    expect(data.total).toEqual({
      requests: inRange.length - refusals,
      refusals,
      costNanoUsd: expected,
      cacheHits: 0,
      savedNanoUsd: 0,
    });
    expect(data.spendOverTime.x).toHaveLength(24);
    const charted = data.spendOverTime.series
      .flatMap((series: { values: number[] }) => series.values)
      .reduce((a: number, b: number) => a + b, 0);
    expect(Math.round(charted * 1e9)).toBe(expected);
    expect(data.spendOverTime.series.map((series: { label: string }) => series.label).sort()).toEqual([
      'gpt-4o',
      'gpt-4o-mini',
    ]);
    expect(data.byKey.map((row: { group: string }) => row.group).sort()).toEqual(['acme-app', 'acme-batch']);
    expect(data.byUser.map((row: { group: string }) => row.group).sort()).toEqual(['alice', 'bob']);
    expect(data.byFeature.map((row: { group: string }) => row.group).sort()).toEqual(['search', 'support-bot']);
    const page = await request(setup.subject.app)
      .get('/dashboard/tenants/acme?range=24h')
      .set(bearer())
      .set('accept', 'text/html');
    expect(page.text).toContain('data-chart="tenant-spend"');
    expect(page.text).toContain('<script type="application/json" id="tenant-spend">');
    expect((await request(setup.subject.app).get('/dashboard/api/tenants/acme?range=1y').set(bearer())).status).toBe(
      400,
    );
  });

  it('lists recent requests, filtered, with their cost and status, a page at a time', async () => {
    const all = await request(setup.subject.app).get('/dashboard/api/requests?limit=2').set(bearer());
    expect(all.body.records.map((record: { requestId: string }) => record.requestId)).toEqual([
      records[0]!.requestId,
      records[1]!.requestId,
    ]);
    const next = await request(setup.subject.app)
      .get(`/dashboard/api/requests?limit=2&after=${all.body.next}`)
      .set(bearer());
    expect(next.body.records.map((record: { requestId: string }) => record.requestId)).toEqual([
      records[2]!.requestId,
      records[3]!.requestId,
    ]);
    const errors = await request(setup.subject.app).get('/dashboard/api/requests?status=error').set(bearer());
    expect(errors.body.records).toEqual([
      expect.objectContaining({ status: 502, costNanoUsd: 987_654_321, model: 'gpt-4o-mini' }),
    ]);
    const filtered = await request(setup.subject.app)
      .get('/dashboard/api/requests?tenant=acme&key=acme-batch&model=gpt-4o')
      .set(bearer());
    expect(filtered.body.records.map((record: { keyId: string }) => record.keyId)).toEqual(['acme-batch']);
    const page = await request(setup.subject.app)
      .get('/dashboard/requests?tenant=globex')
      .set(bearer())
      .set('accept', 'text/html');
    expect(page.text).toContain('claude-sonnet-4-5');
    expect(page.text).toContain('$3.33');
    expect(page.text).not.toContain('gpt-4o-mini');
    expect((await request(setup.subject.app).get('/dashboard/api/requests?after=garbage').set(bearer())).status).toBe(
      400,
    );
  });

  it('counts requests, errors and latency per provider and model', async () => {
    const answer = await request(setup.subject.app).get('/dashboard/api/providers?range=24h').set(bearer());
    const mini = answer.body.providers.find((row: { model: string }) => row.model === 'gpt-4o-mini');
    expect(mini).toMatchObject({ provider: 'openai', requests: 1, refusals: 0, errors: 1 });
    expect(answer.body.providers.find((row: { model: string }) => row.model === 'claude-sonnet-4-5')).toMatchObject({
      provider: 'anthropic',
      latencyP50Ms: 2000,
    });
    const page = await request(setup.subject.app).get('/dashboard/providers').set(bearer()).set('accept', 'text/html');
    // What the page does not show, it says where to find: routing state is the router's.
    expect(page.text).toContain('<code>@tollgate/router</code>');
  });
});

describe('a ledger that does not answer', () => {
  it('costs its sections, not the page: the overview says so and still shows the budgets', async () => {
    const broken = {
      query: async () => {
        throw new Error('connect ECONNREFUSED 127.0.0.1:1');
      },
    };
    const subject = await createDashboardApp({ ledger: broken });
    try {
      await subject.charge('tenant', 'acme', 9_000_000_000);
      const answer = await request(subject.app)
        .get('/dashboard/api/overview')
        .set('authorization', `Bearer ${subject.adminKey}`);
      expect(answer.status).toBe(200);
      expect(answer.body.alerts[0]).toMatchObject({
        level: 'critical',
        message: expect.stringContaining('Could not read the usage ledger: Error: connect ECONNREFUSED'),
      });
      expect(answer.body.tenants.find((row: { id: string }) => row.id === 'acme')).toMatchObject({
        state: 'soft',
        ledgerSpentNanoUsd: 0,
      });
    } finally {
      await subject.close();
    }
  });
});
