// The tenants list is the ledger's page of it: most expensive first, 50 a page, searched by the start of the id.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { periodWindow } from '@tollgate/core';
import { dashboardOverLedger, LEDGER_KINDS, usageRecord } from './helpers.js';

describe.each(LEDGER_KINDS)('the tenants list on the %s ledger', (kind) => {
  const month = periodWindow('month', Date.now());
  // Tenant t-i spent i + 1 micro-USD this month: t-119 is the most expensive; one call without a tenant too.
  const records = [
    ...Array.from({ length: 120 }, (_, i) =>
      usageRecord({ timestamp: new Date(month.start).toISOString(), tenantId: `t-${i}`, costNanoUsd: (i + 1) * 1000 }),
    ),
    usageRecord({ timestamp: new Date(month.start).toISOString(), tenantId: null, costNanoUsd: 10_000_000 }),
    ...['acme-app', 'acme-batch'].map((keyId) =>
      usageRecord({ timestamp: new Date().toISOString(), tenantId: 'acme', keyId, userId: 'bob', costNanoUsd: 5 }),
    ),
  ];
  const setup = dashboardOverLedger(kind, records);
  const bearer = () => ({ authorization: `Bearer ${setup.subject.adminKey}` });
  const list = async (query: string) => {
    const response = await request(setup.subject.app).get(`/dashboard/api/tenants${query}`).set(bearer());
    expect(response.status).toBe(200);
    return response.body as { tenants: { group: string; costNanoUsd: number }[]; more: boolean; page: number };
  };

  it('pages through every tenant, most expensive first, leaving out calls without one', async () => {
    const pages = [await list(''), await list('?page=2'), await list('?page=3')];
    expect(pages.map((page) => [page.tenants.length, page.more])).toEqual([
      [50, true],
      [50, true],
      [21, false],
    ]);
    const ids = pages.flatMap((page) => page.tenants.map((row) => row.group));
    expect(ids).toEqual([...Array.from({ length: 120 }, (_, i) => `t-${119 - i}`), 'acme']);
    expect(pages[0]!.tenants[0]!.costNanoUsd).toBe(120_000);
  });

  it('searches by the start of the id, and escapes LIKE wildcards', async () => {
    const found = await list('?q=t-11');
    expect(found.tenants.map((row) => row.group)).toEqual([
      't-119',
      't-118',
      't-117',
      't-116',
      't-115',
      't-114',
      't-113',
      't-112',
      't-111',
      't-110',
      't-11',
    ]);
    expect((await list('?q=t_1')).tenants).toEqual([]);
    const page = await request(setup.subject.app)
      .get('/dashboard/tenants?q=t-11')
      .set(bearer())
      .set('accept', 'text/html');
    expect(page.text).toContain('data-tenant="t-110"');
    expect(page.text).toContain('value="t-11"');
  });

  it("lists a tenant's users and keys searched by the start of their id", async () => {
    const response = await request(setup.subject.app)
      .get('/dashboard/api/tenants/acme?range=30d&q=acme-b')
      .set(bearer());
    expect(response.status).toBe(200);
    expect(response.body.search).toBe('acme-b');
    expect(response.body.byKey.map((row: { group: string }) => row.group)).toEqual(['acme-batch']);
    expect(response.body.byUser).toEqual([]);
  });

  it('refuses a page that is not a whole number', async () => {
    const response = await request(setup.subject.app).get('/dashboard/api/tenants?page=0').set(bearer());
    expect(response.status).toBe(400);
  });
});
