// What caching saved, on the pages: response-cache hits and prompt-cache discounts summed from the ledger to the cent, on PGlite and PostgreSQL.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { periodWindow } from '@tollgate/core';
import { dashboardOverLedger, LEDGER_KINDS, usageRecord } from './helpers.js';

const MINUTE = 60_000;

/** The dollars a page shows for an amount of $1 or more. */
const cents = (nano: number) => (Math.round(nano / 1e7) / 100).toFixed(2);

describe.each(LEDGER_KINDS)('savings on the %s ledger', (kind) => {
  const now = Date.now();
  const month = periodWindow('month', now);
  const ago = (minutes: number) => new Date(Math.max(month.start, now - minutes * MINUTE)).toISOString();

  const records = [
    // A provider call whose cached input was billed at the cached price: the discount is its saving.
    usageRecord({
      timestamp: ago(1),
      tenantId: 'acme',
      model: 'gpt-4o',
      cachedInputTokens: 800,
      costNanoUsd: 2_000_000_005,
      savedNanoUsd: 750_000_001,
    }),
    // Response-cache hits: billed nothing, or a fraction of the answer's cost.
    usageRecord({
      timestamp: ago(2),
      tenantId: 'acme',
      model: 'gpt-4o',
      usageSource: 'cache',
      costNanoUsd: 0,
      savedNanoUsd: 1_234_567_891,
    }),
    usageRecord({
      timestamp: ago(3),
      tenantId: 'acme',
      model: 'gpt-4o-mini',
      usageSource: 'cache',
      costNanoUsd: 123_456_789,
      savedNanoUsd: 1_111_111_101,
    }),
    usageRecord({
      timestamp: ago(4),
      tenantId: 'globex',
      keyId: 'globex-app',
      usageSource: 'cache',
      costNanoUsd: 0,
      savedNanoUsd: 3_333_333_333,
    }),
    usageRecord({ timestamp: ago(5), tenantId: 'initech', keyId: 'initech-app', costNanoUsd: 1_500_000_000 }),
    // No tenant: in the overview's total, in no tenant's row.
    usageRecord({
      timestamp: ago(6),
      tenantId: null,
      keyId: null,
      usageSource: 'cache',
      costNanoUsd: 0,
      savedNanoUsd: 500_000_003,
    }),
    // Last month: outside this period.
    usageRecord({
      timestamp: new Date(month.start - 3_600_000).toISOString(),
      tenantId: 'acme',
      usageSource: 'cache',
      costNanoUsd: 0,
      savedNanoUsd: 50_000_000_000,
    }),
  ];

  const setup = dashboardOverLedger(kind, records);
  const bearer = () => ({ authorization: `Bearer ${setup.subject.adminKey}` });

  /** Hits and savings straight from the ledger: one tenant's, or everyone's (null). */
  async function ledgerSavings(
    tenant: string | null,
    since: number,
    until: number,
  ): Promise<{ cacheHits: number; savedNanoUsd: number }> {
    const values: unknown[] = [new Date(since).toISOString(), new Date(until).toISOString()];
    if (tenant !== null) values.push(tenant);
    const result = await setup.database.db.query<{ hits: unknown; saved: unknown }>(
      `SELECT count(*) FILTER (WHERE usage_source = 'cache') AS hits, coalesce(sum(saved_nano_usd), 0) AS saved
         FROM "${setup.location.table}" WHERE ts >= $1 AND ts < $2${tenant === null ? '' : ' AND tenant_id = $3'}`,
      values,
    );
    return { cacheHits: Number(result.rows[0]!.hits), savedNanoUsd: Number(result.rows[0]!.saved) };
  }

  it('shows what caching saved this month, in total and per tenant, to the cent', async () => {
    const overview = await request(setup.subject.app).get('/dashboard/api/overview').set(bearer());
    const page = await request(setup.subject.app).get('/dashboard/').set(bearer()).set('accept', 'text/html');
    const total = await ledgerSavings(null, month.start, month.end);
    expect(total).toEqual({ cacheHits: 4, savedNanoUsd: 6_929_012_329 });
    expect(overview.body.savings).toEqual({
      periodStart: new Date(month.start).toISOString(),
      periodEnd: new Date(month.end).toISOString(),
      ...total,
    });
    const summary =
      /class="summary savings">Caching saved <strong data-saved-nano-usd="(\d+)">\$([\d.]+)<\/strong> since [^<]*? UTC: (\d+) requests answered/.exec(
        page.text,
      );
    expect(summary?.slice(1)).toEqual([String(total.savedNanoUsd), cents(total.savedNanoUsd), '4']);
    for (const tenant of ['acme', 'globex', 'initech']) {
      const expected = await ledgerSavings(tenant, month.start, month.end);
      const row = overview.body.tenants.find((candidate: { id: string }) => candidate.id === tenant);
      expect({ cacheHits: row.cacheHits, savedNanoUsd: row.savedNanoUsd }).toEqual(expected);
      const cell = new RegExp(
        `data-tenant="${tenant}"[\\s\\S]*?<td class="num">(\\d+)</td>\\s*<td class="num" data-saved-nano-usd="(\\d+)">\\$([\\d.]+)<`,
      ).exec(page.text);
      expect(cell?.slice(1)).toEqual([
        String(expected.cacheHits),
        String(expected.savedNanoUsd),
        cents(expected.savedNanoUsd),
      ]);
    }
    expect((await ledgerSavings('acme', month.start, month.end)).savedNanoUsd).toBe(3_095_678_993);
  });

  it('shows a tenant what caching saved in its range, in its summary and per model', async () => {
    const answer = await request(setup.subject.app).get('/dashboard/api/tenants/acme?range=24h').set(bearer());
    expect(answer.status).toBe(200);
    const since = Date.parse(answer.body.since);
    const until = Date.parse(answer.body.until) + 1;
    const expected = await ledgerSavings('acme', since, until);
    expect(expected.savedNanoUsd).toBeGreaterThan(1e9);
    expect(answer.body.total).toMatchObject(expected);
    const perModel = Object.fromEntries(
      answer.body.byModel.map((row: { group: string; savedNanoUsd: number }) => [row.group, row.savedNanoUsd]),
    );
    expect(perModel['gpt-4o'] + perModel['gpt-4o-mini']).toBe(expected.savedNanoUsd);
    const page = await request(setup.subject.app)
      .get('/dashboard/tenants/acme?range=24h')
      .set(bearer())
      .set('accept', 'text/html');
    const summary =
      /caching saved <strong data-saved-nano-usd="(\d+)">\$([\d.]+)<\/strong>, (\d+) answered from the response cache/.exec(
        page.text,
      );
    expect(summary?.slice(1)).toEqual([
      String(expected.savedNanoUsd),
      cents(expected.savedNanoUsd),
      String(expected.cacheHits),
    ]);
    const mini = /<th scope="row">gpt-4o-mini<\/th>[\s\S]*?data-saved-nano-usd="(\d+)">\$([\d.]+)</.exec(page.text);
    expect(mini?.slice(1)).toEqual([String(perModel['gpt-4o-mini']), cents(perModel['gpt-4o-mini'])]);
  });
});
