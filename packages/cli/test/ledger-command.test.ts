// `tollgate ledger partition`: a PostgreSQL ledger made before partitions turned into one by month, once; a wrong
// command line exits 2 with its usage named, an unreachable ledger exits 1.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { makeUnpartitionedLedger, postgresBackend } from '../../metering/test/ledger-backends.js';
import type { Backend } from '../../metering/test/ledger-backends.js';
import { sampleRecord } from '../../metering/test/sample-record.js';
import { insertUsageRecords, isPartitioned, ledgerTableName } from '../../metering/src/postgres-ledger.js';
import { runCli } from '../src/cli.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(
    argv,
    { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: (text: string) => (stderr += text) } },
    {},
  );
  return { code, stdout, stderr };
}

let backend: Backend;
beforeAll(async () => {
  backend = await postgresBackend('tg_ledger_cli')();
  const { db, location } = backend;
  await makeUnpartitionedLedger(db, location);
  await insertUsageRecords(db, [sampleRecord({ id: 'a', costNanoUsd: 11 }), sampleRecord({ id: 'b' })], location);
});
afterAll(() => backend.close());

describe('tollgate ledger partition', () => {
  it('partitions a ledger made before partitions, then says there is nothing to do', async () => {
    const { db, location } = backend;
    const args = ['--postgres', POSTGRES_URL, '--schema', location.schema!, '--table', location.table!];
    expect(await isPartitioned(db, location)).toBe(false);
    const first = await run('ledger', 'partition', ...args);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toMatch(/^Partitioned the usage table by month in \d+\.\d s\.\n$/);
    expect(await isPartitioned(db, location)).toBe(true);
    const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ledgerTableName(location)}`);
    expect(rows[0]!.n).toBe('2');
    expect(await run('ledger', 'partition', ...args)).toEqual({
      code: 0,
      stdout: 'The usage table is partitioned already: nothing to do.\n',
      stderr: '',
    });
  });

  it('exits 2 on a wrong action and 1 when the ledger cannot be reached', async () => {
    const wrong = await run('ledger', 'split');
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('tollgate ledger takes one action, partition; got "split"');
    const help = await run('ledger', '--help');
    expect(help).toMatchObject({ code: 0, stdout: expect.stringContaining('Usage: tollgate ledger partition') });
    const unreachable = await run('ledger', 'partition', '--postgres', 'postgres://nobody@127.0.0.1:1/none');
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain('tollgate ledger');
  });
});
