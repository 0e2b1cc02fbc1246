// `tollgate report --data-dir DIR` reads the embedded ledger a proxy keeps in DIR/ledger (PGlite), written by the
// postgres sink, through the same queries as --postgres: sums to the cent in a table, in CSV and in JSON.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { PGlite } from '@electric-sql/pglite';
import { parse as parseCsv } from 'csv-parse/sync';
import { serveLedger } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';
import { sampleRecord } from '../../metering/test/sample-record.js';
import { runReportCommand } from '../src/report-command.js';

/** Tenant names a CSV must quote: a comma, quotes, a line break. */
const ODD = 'acme, "the big one"';
const MULTILINE = 'globex\nlabs';

const now = Date.now();
const minutesAgo = (minutes: number) => new Date(now - minutes * 60_000).toISOString();
const records = [
  sampleRecord({
    requestId: 'a1',
    timestamp: minutesAgo(50),
    tenantId: ODD,
    userId: 'alice',
    costNanoUsd: 1_234_567_891,
  }),
  sampleRecord({
    requestId: 'a2',
    timestamp: minutesAgo(40),
    tenantId: ODD,
    userId: 'bob',
    costNanoUsd: 2_000_000_004,
  }),
  sampleRecord({
    requestId: 'g1',
    timestamp: minutesAgo(30),
    tenantId: MULTILINE,
    userId: 'carol',
    costNanoUsd: 5_499,
  }),
  sampleRecord({
    requestId: 'g2',
    timestamp: minutesAgo(20),
    tenantId: MULTILINE,
    model: 'gpt-4o-mini',
    costNanoUsd: 987_654_321,
  }),
  sampleRecord({ requestId: 'n1', timestamp: minutesAgo(10), tenantId: null, userId: null, costNanoUsd: 10_000_000 }),
];
const centsOf = (nano: number) => Math.round(nano / 10_000_000);
const expectedCents = (tenant: string | null) =>
  centsOf(records.filter((record) => record.tenantId === tenant).reduce((sum, record) => sum + record.costNanoUsd, 0));
const totalCents = centsOf(records.reduce((sum, record) => sum + record.costNanoUsd, 0));

let dataDir: string;

async function report(...argv: string[]) {
  const out = { stdout: '', stderr: '' };
  const code = await runReportCommand(['report', ...argv], {
    stdout: { write: (text: string) => (out.stdout += text) },
    stderr: { write: (text: string) => (out.stderr += text) },
  });
  return { code, ...out };
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'tollgate-report-data-dir-'));
  // What a proxy with "dataDir" leaves behind: the postgres sink's table in a PGlite data directory, closed.
  const db = new PGlite(join(dataDir, 'ledger'));
  const sink = postgresSink({ db });
  for (const record of records) sink.write(record);
  await sink.close();
  await db.close();
}, 60_000);

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('tollgate report --data-dir', () => {
  it('prints a table per tenant whose costs and total are the ledger sums, to the cent, in USD', async () => {
    const out = await report('--data-dir', dataDir, '--since', '2h');
    expect(out).toMatchObject({ code: 0, stderr: '' });
    const lines = out.stdout.split('\n');
    expect(lines[2]).toMatch(/^tenant\s+requests\s+input\s+cached\s+cache write\s+output\s+reasoning\s+cost USD/);
    // A table line per group; the line break in a name is shown escaped, so the columns stay aligned.
    const costOf = (label: string) => {
      const line = lines.find((text) => text.startsWith(`${label} `));
      const cost = line?.match(/\s(\d+\.\d{6})\s+\d+\s+\d+\.\d{6}$/)?.[1];
      return Math.round(Number(cost) * 100);
    };
    expect(costOf(ODD)).toBe(expectedCents(ODD));
    expect(costOf('globex\\nlabs')).toBe(expectedCents(MULTILINE));
    expect(costOf('(none)')).toBe(expectedCents(null));
    expect(costOf('total')).toBe(totalCents);
    expect(out.stdout).toContain('3.234568');
    expect(out.stdout).not.toMatch(/nano/i);
  }, 60_000);

  it('prints CSV that a CSV parser reads back: names with commas, quotes and line breaks intact, sums to the cent', async () => {
    const out = await report('--data-dir', dataDir, '--since', '2h', '--format', 'csv');
    expect(out).toMatchObject({ code: 0, stderr: '' });
    const rows = parseCsv(out.stdout, { columns: true }) as Record<string, string>[];
    expect(rows.map((row) => row.tenant).sort()).toEqual(['', ODD, MULTILINE].sort());
    for (const tenant of [ODD, MULTILINE]) {
      const row = rows.find((candidate) => candidate.tenant === tenant)!;
      expect(Math.round(Number(row.costUsd) * 100)).toBe(expectedCents(tenant));
    }
    const cents = rows.reduce((sum, row) => sum + Math.round(Number(row.costUsd) * 1_000_000), 0) / 10_000;
    expect(Math.round(cents)).toBe(totalCents);
    expect(rows.find((row) => row.tenant === ODD)).toMatchObject({ requests: '2', costUsd: '3.234568' });
  }, 60_000);

  it('prints JSON with money in USD, by user as well as by tenant', async () => {
    const out = await report('--data-dir', dataDir, '--since', '2h', '--format', 'json');
    expect(out).toMatchObject({ code: 0, stderr: '' });
    const rows = JSON.parse(out.stdout) as { tenant: string | null; requests: number; costUsd: number }[];
    expect(rows.find((row) => row.tenant === ODD)).toMatchObject({ requests: 2, costUsd: 3.234568 });
    expect(Math.round(rows.find((row) => row.tenant === MULTILINE)!.costUsd * 100)).toBe(expectedCents(MULTILINE));
    expect(Math.round(rows.reduce((sum, row) => sum + row.costUsd, 0) * 100)).toBe(totalCents);
    expect(out.stdout).not.toMatch(/nano/i);

    const byUser = JSON.parse(
      (await report('--data-dir', dataDir, '--since', '2h', '--by', 'user', '--json')).stdout,
    ) as {
      user: string | null;
      costUsd: number;
    }[];
    // sampleRecord's user is alice unless a record names another (or none).
    expect(byUser.map((row) => row.user).sort()).toEqual(['alice', 'bob', 'carol', null].sort());
  }, 60_000);

  it('refuses a directory that holds no ledger, reads the one a running proxy holds through its socket, and is not told two ledgers', async () => {
    const empty = await report('--data-dir', join(dataDir, 'nothing-here'));
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('no ledger in');

    // A proxy holding the directory (its lock names a live process) keeps its PGlite open: the report reads the
    // ledger through the socket it serves, and does not open the directory a second time.
    const closed = await report('--data-dir', dataDir, '--format', 'json');
    expect(closed.code).toBe(0);
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    const held = new PGlite(join(dataDir, 'ledger'));
    const lock = join(dataDir, 'tollgate.pid');
    await writeFile(lock, JSON.stringify({ pid: holder.pid, host: hostname(), startedAt: new Date().toISOString() }));
    try {
      const starting = await report('--data-dir', dataDir);
      expect(starting.code).toBe(1);
      expect(starting.stderr).toContain(`is held by process ${holder.pid}, which serves no ledger socket there`);
      const served = await serveLedger(held, join(dataDir, 'ledger.sock'));
      try {
        const live = await report('--data-dir', dataDir, '--format', 'json');
        expect(live.code).toBe(0);
        expect(JSON.parse(live.stdout)).toEqual(JSON.parse(closed.stdout));
      } finally {
        await served.close();
      }
    } finally {
      await rm(lock, { force: true });
      holder.kill('SIGKILL');
      await held.close();
    }

    const both = await report('--data-dir', dataDir, '--postgres', 'postgres://127.0.0.1/test');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give --postgres or --data-dir, not both');
  }, 60_000);
});
