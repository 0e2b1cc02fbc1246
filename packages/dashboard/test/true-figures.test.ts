// The figures in the JSON and on the pages are true: tollgate's refusals are no provider errors, budgets add up
// after a top-up, a key without a creation date has none (not 1970), and no page calls the router or guard unbuilt.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { hashApiKey, keyRecordsFromConfig } from '@tollgate/auth';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { createDashboardApp, dashboardOverLedger, LEDGER_KINDS, refusalsAndProviderErrors } from './helpers.js';

interface Figures {
  /** The text of each figure, by name (`spent`, `credit`, `held`, `remaining`, `over`, `cap`). */
  shown: Record<string, string>;
  nano: Record<string, number>;
  /** The sum written out. */
  sum: string;
}

/** A budget card's figures as the page shows them. */
function figuresOnPage(page: string, scope: string, id: string): Figures {
  const start = page.indexOf(`<article class="card budget" data-scope="${scope}" data-id="${id}"`);
  const card = page.slice(start, page.indexOf('</article>', start));
  const figures: Figures = { shown: {}, nano: {}, sum: '' };
  const figure = /data-figure="(\w+)"><dt>[^<]*<\/dt><dd data-nano-usd="(\d+)">([^<]*)</g;
  for (const [, name, nano, text] of card.matchAll(figure)) {
    figures.shown[name!] = text!;
    figures.nano[name!] = Number(nano);
  }
  figures.sum = /data-figure="sum"><dt>[^<]*<\/dt><dd>([^<]*)</.exec(card)![1]!;
  return figures;
}

/** `$12.50` or `$48.765432109` in nano-USD, exactly. */
function nanoOf(text: string): number {
  const match = /^\$(\d+)\.(\d{2,9})$/.exec(text)!;
  return Number(match[1]) * 1e9 + Number(match[2]!.padEnd(9, '0'));
}

interface BudgetFigures {
  limitNanoUsd: number;
  spentNanoUsd: number;
  creditNanoUsd: number;
  reservedNanoUsd: number;
  remainingNanoUsd: number;
  overNanoUsd: number;
}

/** spent − credit + held + remaining − over: the cap, when the figures are true. */
const sumOf = (b: BudgetFigures) =>
  b.spentNanoUsd - b.creditNanoUsd + b.reservedNanoUsd + b.remainingNanoUsd - b.overNanoUsd;

describe.each(LEDGER_KINDS)('figures on the %s ledger', (kind) => {
  const setup = dashboardOverLedger(kind, refusalsAndProviderErrors(Date.now()));
  const bearer = () => ({ authorization: `Bearer ${setup.subject.adminKey}` });
  const json = (path: string) => request(setup.subject.app).get(`/dashboard/api${path}`).set(bearer());
  const html = (path: string) =>
    request(setup.subject.app).get(`/dashboard${path}`).set(bearer()).set('accept', 'text/html');
  const topUp = (tenant: string, usd: number) =>
    request(setup.subject.app).post(`/dashboard/api/budgets/tenant/${tenant}/top-up`).set(bearer()).send({ usd });

  it("counts tollgate's own refusals apart from provider errors, and leaves them out of the latency", async () => {
    const answer = await json('/providers?range=24h');
    expect(answer.body.providers).toEqual([
      expect.objectContaining({ provider: 'openai', model: 'gpt-4o', requests: 9, refusals: 4, errors: 2 }),
    ]);
    // Over the five calls sent: 500, 1000, 1000, 1000, 3000 ms.
    expect(answer.body.providers[0]).toMatchObject({ latencyP50Ms: 1000, latencyMeanMs: 1300 });
    const page = await html('/providers');
    expect(page.text).toContain('<td class="num" data-figure="refusals" data-count="4">4</td>');
    expect(page.text).toMatch(/data-figure="provider-errors" data-count="2">\s*2 \(40\.0%\)<\/td>/);
  });

  it('lists a refusal with the piece that refused it, and a provider failure with none', async () => {
    const records = (await json('/requests?status=429')).body.records as { latencyMs: number; refusedBy?: string }[];
    expect(records.find((record) => record.latencyMs === 500)).not.toHaveProperty('refusedBy');
    const refusedBy = records.map((record) => record.refusedBy ?? 'provider').sort();
    expect(refusedBy).toEqual(['budget', 'provider', 'requests', 'requests']);
    const page = await html('/requests');
    expect(page.text).toContain('<span class="tag" data-refused-by="guard">refused by guard</span>');
    expect(page.text.match(/data-refused-by=/g)).toHaveLength(4);
  });

  it('shows budget figures that add up after a top-up larger than the spend, and past the cap', async () => {
    // acme: $10 a month. $3 spent, then $5 credited: spent stays $3, credit $5, $12 remaining.
    await setup.subject.charge('tenant', 'acme', 3_000_000_000);
    expect((await topUp('acme', 5)).status).toBe(200);
    const budgets = (await json('/tenants/acme')).body.budgets as (BudgetFigures & { scope: string })[];
    const acme = budgets.find((status) => status.scope === 'tenant')!;
    expect(acme).toMatchObject({ limitNanoUsd: 10e9, spentNanoUsd: 3e9, creditNanoUsd: 5e9, reservedNanoUsd: 0 });
    expect(acme).toMatchObject({ remainingNanoUsd: 12e9, overNanoUsd: 0 });
    expect(sumOf(acme)).toBe(acme.limitNanoUsd);
    const acmeFigures = figuresOnPage((await html('/tenants/acme')).text, 'tenant', 'acme');
    const shown = { spent: '$3.00', credit: '$5.00', held: '$0.00', remaining: '$12.00', cap: '$10.00' };
    expect(acmeFigures.shown).toEqual(shown);
    expect(acmeFigures.sum).toBe('$3.00 spent − $5.00 credit + $0.00 held + $12.00 remaining = $10.00 cap');

    // globex: $100 a month, charged $103.25 (a settle past its reservation), then $1 credited: $2.25 over.
    await setup.subject.charge('tenant', 'globex', 103_250_000_000);
    await topUp('globex', 1);
    const globex = (await json('/overview')).body.tenants.find((row: { id: string }) => row.id === 'globex');
    expect(globex.budget).toMatchObject({ spentNanoUsd: 103_250_000_000, creditNanoUsd: 1e9, remainingNanoUsd: 0 });
    expect(globex.overNanoUsd).toBe(2_250_000_000);
    expect(sumOf({ ...globex.budget, overNanoUsd: globex.overNanoUsd })).toBe(100e9);
    const globexFigures = figuresOnPage((await html('/tenants/globex')).text, 'tenant', 'globex');
    const sum = '$103.25 spent − $1.00 credit + $0.00 held + $0.00 remaining − $2.25 over = $100.00 cap';
    expect(globexFigures.sum).toBe(sum);
    const { spent, credit, held, remaining, over, cap } = globexFigures.nano;
    expect(spent! - credit! + held! + remaining! - over!).toBe(cap);
  });

  it("shows a budget's odd amounts to one exact decimal, so the sum on the page is exact", async () => {
    // The support-bot feature: $50 a month; real spend is seldom whole cents.
    await setup.subject.charge('feature', 'support-bot', 1_234_567_891);
    const row = /<tr data-feature="support-bot"[\s\S]*?<\/tr>/.exec((await html('/')).text)![0];
    const cell = (name: string) => new RegExp(`data-figure="${name}" data-nano-usd="(\\d+)">([^<]*)<`).exec(row)!;
    expect(cell('remaining')[2]).toBe('$48.765432109');
    expect(nanoOf(cell('remaining')[2]!)).toBe(Number(cell('remaining')[1]));
    expect(nanoOf(cell('credit')[2]!)).toBe(0);
  });
});

describe('keys without a creation date', () => {
  it('list them with none, never the epoch, and show "unknown" on the page', async () => {
    // A config entry written by hand has no createdAt; @tollgate/auth stands the epoch in for it.
    const entry = { id: 'hand-written', sha256: hashApiKey('hand-written-key'), tenant: 'acme', scopes: ['chat'] };
    const configKeys = keyRecordsFromConfig([entry]);
    expect(configKeys[0]!.createdAt).toBe(new Date(0).toISOString());
    const subject = await createDashboardApp({ dashboard: { configKeys: () => configKeys } });
    try {
      // A stored record from before keys carried one.
      const old = { ...subject.apiKeyRecord, id: 'old-stored', sha256: hashApiKey('old-key') };
      const { createdAt: _createdAt, ...undated } = old;
      await subject.stores.keys.put(undated as ApiKeyRecord);
      const bearer = { authorization: `Bearer ${subject.adminKey}` };
      const answer = await request(subject.app).get('/dashboard/api/keys').set(bearer);
      // Dated keys first, newest first; then the undated ones.
      expect(answer.body.keys.map((key: { id: string; createdAt: string | null }) => [key.id, key.createdAt])).toEqual([
        ['acme-app', subject.apiKeyRecord.createdAt],
        ['hand-written', null],
        ['old-stored', null],
      ]);
      for (const path of ['/dashboard/keys', '/dashboard/tenants/acme', '/dashboard/']) {
        const page = await request(subject.app).get(path).set(bearer).set('accept', 'text/html');
        expect(page.text).not.toContain('1970');
      }
      const page = await request(subject.app).get('/dashboard/keys').set(bearer).set('accept', 'text/html');
      const created = /<tr data-key="hand-written"[\s\S]*?<\/tr>/.exec(page.text)![0];
      expect(created).toContain('<td class="muted" title="No creation date was recorded">unknown</td>');
    } finally {
      await subject.close();
    }
  });
});

describe('every page', () => {
  it('says what is true of the router and the guard, never that they are not built', async () => {
    const subject = await createDashboardApp();
    try {
      const bearer = { authorization: `Bearer ${subject.adminKey}` };
      for (const path of ['/', '/tenants/acme', '/keys', '/requests', '/providers']) {
        const page = await request(subject.app).get(`/dashboard${path}`).set(bearer).set('accept', 'text/html');
        expect(page.status).toBe(200);
        expect(page.text).not.toMatch(/not (built|there) yet/i);
      }
      const keys = await request(subject.app).get('/dashboard/keys').set(bearer).set('accept', 'text/html');
      expect(keys.text).toContain('403 <code>key_suspended</code>');
    } finally {
      await subject.close();
    }
  });
});
