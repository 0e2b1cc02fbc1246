// The dashboard's `timezone`: the ledger's spend of a period is summed between the zone's local boundaries, not UTC's.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { periodWindow } from '@tollgate/core';
import { dashboard } from '@tollgate/dashboard';
import { dashboardOverLedger, LEDGER_KINDS, usageRecord } from './helpers.js';

// UTC+14: its day never starts when UTC's does.
const ZONE = 'Pacific/Kiritimati';

describe.each(LEDGER_KINDS)(`a day in ${ZONE}, on the %s ledger`, (kind) => {
  const now = Date.now();
  const day = periodWindow('day', now, ZONE);
  const setup = dashboardOverLedger(
    kind,
    [
      // This local day, and the minute before it began (yesterday there, though maybe still today in UTC).
      usageRecord({ timestamp: new Date(day.start).toISOString(), tenantId: 'initech', costNanoUsd: 7_000_000 }),
      usageRecord({ timestamp: new Date(day.start - 60_000).toISOString(), tenantId: 'initech', costNanoUsd: 5 }),
    ],
    { period: 'day', timezone: ZONE },
  );

  it("sums a tenant's spend from local midnight", async () => {
    const overview = await request(setup.subject.app)
      .get('/dashboard/api/overview')
      .set({ authorization: `Bearer ${setup.subject.adminKey}` });
    expect(overview.body.tenants.find((row: { id: string }) => row.id === 'initech')).toMatchObject({
      period: 'day',
      periodStart: new Date(day.start).toISOString(),
      periodEnd: new Date(day.end).toISOString(),
      ledgerSpentNanoUsd: 7_000_000,
    });
    expect(new Date(day.start).getUTCHours()).toBe(10);
  });
});

describe('the timezone option', () => {
  it('refuses a zone Intl does not know, with the closest name', () => {
    expect(() => dashboard({ adminKeySha256: 'a'.repeat(64), timezone: 'Europe/Pariss' })).toThrow(
      'dashboard(): timezone must be an IANA time zone like "Europe/Berlin" or "UTC"; got "Europe/Pariss"; did you mean "Europe/Paris"?',
    );
  });
});
