// `tollgate report`: spend, cache savings and cost per outcome per group from a PostgreSQL ledger, as a table with a
// total row, CSV or JSON; a wrong command line exits 2 with its usage named, an unreadable ledger exits 1.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { recordOutcome } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';
import pg from 'pg';
import { cacheSavings, outcomeRecords, spendRecords } from '../../metering/test/ledger-samples.js';
import { postgresBackend } from '../../metering/test/ledger-backends.js';
import type { Backend } from '../../metering/test/ledger-backends.js';
import { formatUsageReport, runReportCommand } from '../src/report-command.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// A schema of its own per run, dropped after: other test runs share the database.
const schema = `tg_report_${randomBytes(6).toString('hex')}`;
const table = 'usage_ledger';
const db = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });

const now = Date.now();
const records = spendRecords(now);

/** An io that keeps what a run prints. */
function capture() {
  const out = { stdout: '', stderr: '' };
  return {
    out,
    io: {
      stdout: { write: (text: string) => (out.stdout += text) },
      stderr: { write: (text: string) => (out.stderr += text) },
    },
  };
}

beforeAll(async () => {
  const sink = postgresSink({ connectionString: POSTGRES_URL, schema, table, flushIntervalMs: 60_000 });
  for (const record of records) sink.write(record);
  await sink.close();
});

afterAll(async () => {
  await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await db.end();
});

describe('runReportCommand', () => {
  it('prints a table per tenant for the last 7 days', async () => {
    const { out, io } = capture();
    const code = await runReportCommand(
      ['report', '--by', 'tenant', '--since', '7d', '--postgres', POSTGRES_URL, '--schema', schema, '--table', table],
      io,
    );
    expect(out.stderr).toBe('');
    expect(code).toBe(0);
    const lines = out.stdout.split('\n');
    expect(lines[2]).toMatch(
      /^tenant\s+requests\s+input\s+cached\s+cache write\s+output\s+reasoning\s+cost USD\s+cache hits\s+saved USD$/,
    );
    expect(out.stdout).toMatch(/globex\s+1\s+2,000\s+0\s+0\s+300\s+0\s+0\.007500\s+0\s+0\.000000\n/);
    expect(out.stdout).toMatch(/acme\s+2\s+1,500\s+800\s+0\s+150\s+100\s+0\.004000\s+0\s+0\.000000\n/);
    expect(out.stdout).toMatch(/\(none\)\s+1\s+10/);
    expect(out.stdout).toMatch(/total\s+4\s+3,510\s+800\s+0\s+455\s+100\s+0\.011750\s+0\s+0\.000000\n/);
  });

  it('reports by tag as CSV and JSON, without a total row (a record counts under each of its tags)', async () => {
    const flags = ['--since', '7d', '--postgres', POSTGRES_URL, '--schema', schema, '--table', table];
    const csv = capture();
    expect(await runReportCommand(['report', '--by', 'tag', '--format', 'csv', ...flags], csv.io)).toBe(0);
    const lines = csv.out.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^tag,requests,/);
    expect(lines.slice(1).map((line) => line.split(',').slice(0, 2))).toEqual([
      ['eu', '2'],
      ['beta', '1'],
      ['', '2'],
    ]);
    const json = capture();
    expect(await runReportCommand(['report', '--by', 'tag', '--json', ...flags], json.io)).toBe(0);
    const rows = JSON.parse(json.out.stdout) as { tag: string | null; requests: number }[];
    expect(rows.map((row) => [row.tag, row.requests])).toEqual([
      ['eu', 2],
      ['beta', 1],
      [null, 2],
    ]);
    const table_ = capture();
    expect(await runReportCommand(['report', '--by', 'tag', ...flags], table_.io)).toBe(0);
    expect(table_.out.stdout).toMatch(/eu\s+2\s+/);
    expect(table_.out.stdout).not.toMatch(/^total/m);
  });

  it('prints JSON by day, and explains bad arguments with exit code 2', async () => {
    const json = capture();
    expect(
      await runReportCommand(
        ['--by=day', '--since=30d', `--postgres=${POSTGRES_URL}`, `--schema=${schema}`, `--table=${table}`, '--json'],
        json.io,
      ),
    ).toBe(0);
    expect((JSON.parse(json.out.stdout) as unknown[]).length).toBe(
      new Set(records.map((record) => record.timestamp.slice(0, 10))).size,
    );
    const bad = capture();
    expect(await runReportCommand(['report', '--by', 'planet'], bad.io)).toBe(2);
    expect(bad.out.stderr).toContain('--by must be one of tenant, feature, model, day');
    expect(bad.out.stderr).toContain('Run "tollgate report --help" for its usage.');
    const failing = capture();
    expect(
      await runReportCommand(
        ['report', '--postgres', POSTGRES_URL, '--schema', schema, '--table', 'no_such_table'],
        failing.io,
      ),
    ).toBe(1);
    expect(failing.out.stderr).toContain('no_such_table');
  });

  it('refuses a flag taken for the value of the one before it, and a bare number as a date, with exit code 2', async () => {
    // `--tenant --json` would report on a tenant called "--json", as a table.
    const flag = capture();
    expect(
      await runReportCommand(
        ['report', '--tenant', '--json', `--postgres=${POSTGRES_URL}`, `--schema=${schema}`, `--table=${table}`],
        flag.io,
      ),
    ).toBe(2);
    expect(flag.out.stderr).toContain("Option '--tenant' argument is ambiguous");
    // A mistyped flag is named with the one it is closest to.
    const typo = capture();
    expect(await runReportCommand(['report', '--tenat', 'acme'], typo.io)).toBe(2);
    expect(typo.out.stderr).toContain('unknown option --tenat; did you mean "--tenant"?');
    // `--since 7` (meant: 7 days) is not the year 2001.
    const bare = capture();
    expect(
      await runReportCommand(
        ['report', '--since', '7', `--postgres=${POSTGRES_URL}`, `--schema=${schema}`, `--table=${table}`],
        bare.io,
      ),
    ).toBe(2);
    expect(bare.out.stderr).toContain('--since must be a duration like 7d or an ISO date');
  });

  it('formats a table with a total row, money in USD', () => {
    const text = formatUsageReport('model', [
      {
        group: 'gpt-4o',
        requests: 1,
        refusals: 0,
        inputTokens: 1,
        cachedInputTokens: 0,
        cacheWriteTokens: 0,
        outputTokens: 1,
        reasoningTokens: 0,
        costNanoUsd: 1_500_000_000,
        cacheHits: 0,
        savedNanoUsd: 0,
      },
    ]);
    expect(text).toContain(' 1.500000 ');
    expect(text.trimEnd().split('\n').pop()).toMatch(/^total/);
  });
});

describe('what caching saved, in the report', () => {
  const savings = { schema, table: 'cache_savings' };
  const { cached, inRange, expected } = cacheSavings(now);
  const flags = ['--since', '7d', `--postgres=${POSTGRES_URL}`, `--schema=${schema}`, `--table=${savings.table}`];

  beforeAll(async () => {
    const sink = postgresSink({ connectionString: POSTGRES_URL, ...savings, flushIntervalMs: 60_000 });
    for (const record of cached) sink.write(record);
    await sink.close();
  });

  it('prints cache hits and saved per tenant and in total, and the same figures as JSON', async () => {
    const table = capture();
    expect(await runReportCommand(['report', '--by', 'tenant', ...flags], table.io)).toBe(0);
    expect(table.out.stderr).toBe('');
    expect(table.out.stdout).toMatch(/\nglobex\s.*\s0\.007000\s+1\s+2501\.234568\n/);
    expect(table.out.stdout).toMatch(/\nacme\s.*\s0\.003450\s+2\s+0\.009800\n/);
    expect(table.out.stdout).toMatch(/\ninitech\s.*\s0\.001000\s+0\s+0\.000000\n/);
    expect(table.out.stdout).toMatch(/\ntotal\s+6\s.*\s0\.011450\s+3\s+2501\.244368\n/);
    const json = capture();
    expect(await runReportCommand(['report', '--by', 'tenant', '--json', ...flags], json.io)).toBe(0);
    const rows = JSON.parse(json.out.stdout) as { tenant: string; cacheHits: number; savedUsd: number }[];
    for (const tenant of ['acme', 'globex', 'initech']) {
      const { cacheHits, savedNanoUsd } = expected(tenant);
      const row = rows.find((candidate) => candidate.tenant === tenant)!;
      expect(row.cacheHits).toBe(cacheHits);
      // USD to the micro-USD: 2,501,234,567,891 nano-USD is 2501.234568.
      expect(row.savedUsd).toBeCloseTo(savedNanoUsd / 1e9, 6);
    }
    expect(Math.round(rows.reduce((sum, row) => sum + row.savedUsd, 0) * 1e6)).toBe(
      Math.round(inRange.reduce((sum, record) => sum + (record.savedNanoUsd ?? 0), 0) / 1000),
    );
  });
});

describe('report --outcomes', () => {
  let backend: Backend;

  beforeAll(async () => {
    backend = await postgresBackend('tg_outcomes')();
    const sink = postgresSink({ db: backend.db, ...backend.location, flushIntervalMs: 60_000 });
    for (const record of outcomeRecords) sink.write(record);
    await sink.close();
    await recordOutcome(
      backend.db,
      { tenantId: 'acme', conversationId: 'c1', kind: 'resolved', valueNanoUsd: 8_000_000_000 },
      backend.location,
    );
    await recordOutcome(backend.db, { tenantId: 'acme', requestId: 'r4', kind: 'resolved' }, backend.location);
  });

  afterAll(async () => {
    await backend.close();
  });

  it('prints cost per outcome per tenant and kind, and value per cost', async () => {
    const { out, io } = capture();
    const flags = [
      '--postgres',
      POSTGRES_URL,
      '--schema',
      backend.location.schema!,
      '--table',
      backend.location.table!,
    ];
    expect(await runReportCommand(['report', '--outcomes', '--since', '1h', ...flags], io)).toBe(0);
    expect(out.stderr).toBe('');
    const lines = out.stdout.split('\n');
    expect(lines[2]).toMatch(
      /^tenant\s+outcome\s+outcomes\s+requests\s+cost USD\s+per outcome USD\s+value USD\s+value per cost$/,
    );
    // c1 ($0.004, valued $8) and r4 ($0.002): $0.003 per resolution; $8 for the $0.004 of the valued one.
    expect(out.stdout).toMatch(/acme\s+resolved\s+2\s+3\s+0\.006000\s+0\.003000\s+8\.000000\s+2,000\n/);
    const json = capture();
    expect(
      await runReportCommand(
        ['report', '--outcomes', '--by', 'feature', '--kind', 'resolved', '--json', ...flags],
        json.io,
      ),
    ).toBe(0);
    expect(JSON.parse(json.out.stdout)).toEqual([
      expect.objectContaining({ feature: 'support', outcome: 'resolved', outcomes: 2, costUsd: 0.006 }),
    ]);
    const bad = capture();
    expect(await runReportCommand(['report', '--outcomes', '--by', 'model', ...flags], bad.io)).toBe(2);
    expect(bad.out.stderr).toContain('--by with --outcomes must be one of tenant, feature');
  });
});
