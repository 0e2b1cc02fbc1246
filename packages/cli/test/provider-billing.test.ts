// Provider billing beside the ledger: OpenAI's costs API and Anthropic's cost report read page by page (local fakes of
// their documented shapes), matched per day and model with the ledger, a deliberate gap flagged.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { PGlite } from '@electric-sql/pglite';
import { createPricing } from '@tollgate/core';
import { postgresSink } from '@tollgate/metering/postgres';
import { sampleRecord } from '../../metering/test/sample-record.js';
import { startFakeBilling } from '../../../test/helpers/fake-provider-billing.js';
import type { Billed } from '../../../test/helpers/fake-provider-billing.js';
import { runCli } from '../src/cli.js';
import { ledgerCosts, providerCosts, reconcileCosts } from '../src/provider-billing.js';

const ledger = new PGlite();
const pricing = createPricing();
const DAYS = ['2026-11-01', '2026-11-02', '2026-11-03'];
/** What the ledger holds per day: model as recorded → USD (each in two records). */
const RECORDED: Record<string, { provider: string; usd: number }> = {
  'gpt-4o-2024-08-06': { provider: 'openai', usd: 1.2 },
  'gpt-4o-mini': { provider: 'openai', usd: 0.08 },
  'claude-sonnet-4-5': { provider: 'anthropic', usd: 2.4 },
};

beforeAll(async () => {
  const sink = postgresSink({ db: ledger });
  let n = 0;
  for (const day of DAYS)
    for (const [model, { provider, usd }] of Object.entries(RECORDED))
      for (const hour of ['09', '17'])
        sink.write(
          sampleRecord({
            id: `rec-${n++}`,
            requestId: `req-${n}`,
            timestamp: `${day}T${hour}:00:00.000Z`,
            provider,
            model,
            costNanoUsd: Math.round((usd / 2) * 1e9),
          }),
        );
  await sink.close();
});
afterAll(() => ledger.close());

/** The ledger's figures as the provider bills them, one model of one day 10% higher. */
function billedFor(provider: string, gap: { day: string; model: string }): Billed {
  const billed: Billed = {};
  for (const day of DAYS) {
    billed[day] = {};
    for (const [model, recorded] of Object.entries(RECORDED)) {
      if (recorded.provider !== provider) continue;
      billed[day][model] = recorded.usd * (day === gap.day && model === gap.model ? 1.1 : 1);
    }
  }
  return billed;
}

describe.each(['openai', 'anthropic'] as const)('reconciling %s', (provider) => {
  const gap =
    provider === 'openai'
      ? { day: '2026-11-02', model: 'gpt-4o-2024-08-06' }
      : { day: '2026-11-03', model: 'claude-sonnet-4-5' };
  let fake: Awaited<ReturnType<typeof startFakeBilling>>;
  beforeAll(async () => {
    fake = await startFakeBilling(provider, billedFor(provider, gap), 'admin-key-1');
  });
  afterAll(() => fake.close());

  it('reads every page, and flags the one day and model with a 10% gap', async () => {
    const billed = await providerCosts({
      provider,
      adminKey: 'admin-key-1',
      from: '2026-11-01',
      to: '2026-11-03',
      baseUrl: fake.baseUrl,
    });
    // One day per page: three requests, the second and third with the cursor the page before gave.
    expect(fake.requests).toHaveLength(3);
    expect(fake.requests.slice(1).every((url) => url.includes('page='))).toBe(true);
    const recorded = await ledgerCosts(ledger, { provider, from: '2026-11-01', to: '2026-11-03' });
    const rows = reconcileCosts(billed, recorded, pricing);
    const models = provider === 'openai' ? ['gpt-4o', 'gpt-4o-mini'] : ['claude-sonnet-4-5'];
    expect(rows.map((row) => [row.day, row.model])).toEqual(DAYS.flatMap((day) => models.map((model) => [day, model])));
    const flagged = rows.filter((row) => row.flagged);
    expect(flagged).toHaveLength(1);
    const usd = RECORDED[gap.model]!.usd;
    expect(flagged[0]).toMatchObject({
      day: gap.day,
      ledgerNanoUsd: Math.round(usd * 1e9),
      providerNanoUsd: Math.round(usd * 1.1 * 1e9),
      differenceNanoUsd: Math.round(usd * 1.1 * 1e9) - Math.round(usd * 1e9),
    });
    expect(flagged[0]!.differenceShare).toBeCloseTo(0.1 / 1.1, 6);
    // Every other row matches to the nano-USD.
    for (const row of rows.filter((each) => !each.flagged)) expect(row.differenceNanoUsd).toBe(0);
  });

  it('names the provider and status on a refused admin key, never the key', async () => {
    const error = await providerCosts({
      provider,
      adminKey: 'wrong-key',
      from: '2026-11-01',
      to: '2026-11-01',
      baseUrl: fake.baseUrl,
    }).catch((caught: unknown) => caught as Error);
    expect(String(error)).toMatch(/answered 401: invalid admin key/);
    expect(String(error)).not.toContain('wrong-key');
  });
});

describe('reconcileCosts', () => {
  it('leaves small differences alone (a share and an amount both passed flag a row)', () => {
    const rows = reconcileCosts(
      [
        { day: '2026-11-01', model: 'gpt-4o', costNanoUsd: 1_000 },
        { day: '2026-11-01', model: 'gpt-4o-mini', costNanoUsd: 1_000_000_000 },
      ],
      [
        { day: '2026-11-01', model: 'gpt-4o', costNanoUsd: 2_000 },
        { day: '2026-11-01', model: 'gpt-4o-mini', costNanoUsd: 990_000_000 },
      ],
      pricing,
    );
    // 50% of a fraction of a cent, and 1% of a dollar: neither is a finding.
    expect(rows.map((row) => row.flagged)).toEqual([false, false]);
  });

  it('refuses a range that is not days, or runs backwards', async () => {
    await expect(
      providerCosts({ provider: 'openai', adminKey: 'k', from: '2026-11-03', to: '2026-11-01' }),
    ).rejects.toThrow(/before --from/);
    await expect(
      providerCosts({ provider: 'openai', adminKey: 'k', from: 'yesterday', to: '2026-11-01' }),
    ).rejects.toThrow(/YYYY-MM-DD/);
  });
});

describe('tollgate reconcile-provider', () => {
  it('prints both sides per day and model in USD, and exits 1 on a flagged gap, 0 without one', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'tollgate-reconcile-'));
    const onDisk = new PGlite(path.join(dataDir, 'ledger'));
    const sink = postgresSink({ db: onDisk });
    for (const [i, day] of ['2026-11-01', '2026-11-02'].entries())
      sink.write(
        sampleRecord({
          id: `cli-${i}`,
          requestId: `cli-${i}`,
          timestamp: `${day}T12:00:00.000Z`,
          provider: 'openai',
          model: 'gpt-4o',
          costNanoUsd: 2_000_000_000,
        }),
      );
    await sink.close();
    await onDisk.close();
    const gapped = await startFakeBilling(
      'openai',
      { '2026-11-01': { 'gpt-4o': 2 }, '2026-11-02': { 'gpt-4o': 2.2 } },
      'admin-key-2',
    );
    const even = await startFakeBilling(
      'openai',
      { '2026-11-01': { 'gpt-4o': 2 }, '2026-11-02': { 'gpt-4o': 2 } },
      'admin-key-2',
    );
    const run = async (baseUrl: string, format: string) => {
      const out = { stdout: '', stderr: '' };
      const code = await runCli(
        [
          'reconcile-provider',
          '--provider',
          'openai',
          '--from',
          '2026-11-01',
          '--to',
          '2026-11-02',
          '--data-dir',
          dataDir,
          '--base-url',
          baseUrl,
          '--format',
          format,
        ],
        {
          stdout: { write: (text: string) => (out.stdout += text) },
          stderr: { write: (text: string) => (out.stderr += text) },
        },
        { OPENAI_ADMIN_KEY: 'admin-key-2' },
      );
      return { code, ...out };
    };
    try {
      const flagged = await run(gapped.baseUrl, 'json');
      expect(flagged.code).toBe(1);
      expect(JSON.parse(flagged.stdout)).toEqual([
        {
          day: '2026-11-01',
          model: 'gpt-4o',
          providerUsd: 2,
          ledgerUsd: 2,
          differenceUsd: 0,
          differencePercent: 0,
          flagged: 'no',
        },
        {
          day: '2026-11-02',
          model: 'gpt-4o',
          providerUsd: 2.2,
          ledgerUsd: 2,
          differenceUsd: 0.2,
          differencePercent: 9.09,
          flagged: 'yes',
        },
      ]);
      expect(flagged.stderr).toContain('1 of 2 day and model row(s) differ');
      const table = await run(gapped.baseUrl, 'table');
      expect(table.stdout).toMatch(/2026-11-02 +gpt-4o +2\.200000 +2\.000000 +0\.200000 +9\.09 +yes/);
      const clean = await run(even.baseUrl, 'csv');
      expect(clean.code).toBe(0);
      expect(clean.stdout.split('\n')[0]).toBe(
        'day,model,providerUsd,ledgerUsd,differenceUsd,differencePercent,flagged',
      );
    } finally {
      await gapped.close();
      await even.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 180_000);
});
