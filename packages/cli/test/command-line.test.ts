// The command line's one parser and one formatter: "did you mean" for flags and commands, exit codes, tables, CSV and
// JSON with money in USD.
import { describe, expect, it } from '@jest/globals';
import { parse as parseCsv } from 'csv-parse/sync';
import {
  commandFailure,
  EXIT_FAILED,
  EXIT_USAGE,
  formatRows,
  outputFormat,
  parseCommandLine,
  pickCommand,
  UsageError,
} from '../src/command-line.js';
import type { Column } from '../src/command-line.js';

const OPTIONS = { tenant: { type: 'string' }, since: { type: 'string' }, json: { type: 'boolean' } } as const;

function usageMessage(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error('no usage error');
}

describe('parseCommandLine', () => {
  it('reads flags with node:util parseArgs', () => {
    const { values } = parseCommandLine(['--tenant', 'acme', '--since=7d', '--json'], OPTIONS);
    expect(values).toEqual({ tenant: 'acme', since: '7d', json: true });
  });

  it('names a mistyped flag with the one it is closest to, and refuses what parseArgs refuses', () => {
    expect(usageMessage(() => parseCommandLine(['--tennat', 'acme'], OPTIONS))).toBe(
      'unknown option --tennat; did you mean "--tenant"?',
    );
    expect(usageMessage(() => parseCommandLine(['--colour'], OPTIONS))).toBe('unknown option --colour');
    expect(usageMessage(() => parseCommandLine(['--tenant'], OPTIONS))).toMatch(/'--tenant <value>' argument missing/);
    expect(usageMessage(() => parseCommandLine(['--tenant='], OPTIONS))).toBe('--tenant needs a value');
    expect(usageMessage(() => parseCommandLine(['--json=yes'], OPTIONS))).toMatch(/'--json' does not take an argument/);
    expect(usageMessage(() => parseCommandLine(['stray'], OPTIONS))).toMatch(/Unexpected argument 'stray'/);
    expect(parseCommandLine(['stray'], OPTIONS, true).positionals).toEqual(['stray']);
  });

  it('picks a command, or names the closest one', () => {
    const commands = { list: 1, revoke: 2 };
    expect(pickCommand('revoke', commands)).toBe(2);
    expect(usageMessage(() => pickCommand('lst', commands))).toBe('unknown command "lst"; did you mean "list"?');
    expect(usageMessage(() => pickCommand('toString', commands))).toBe('unknown command "toString"');
  });

  it('reads --format, and --json as --format json', () => {
    expect(outputFormat({})).toBe('table');
    expect(outputFormat({ json: true })).toBe('json');
    expect(outputFormat({ format: 'csv' })).toBe('csv');
    expect(usageMessage(() => outputFormat({ format: 'cvs' }))).toBe(
      '--format must be one of table, csv, json; got "cvs"; did you mean "csv"?',
    );
    expect(usageMessage(() => outputFormat({ format: 'csv', json: true }))).toBe(
      '--json is --format json: give one of them',
    );
    expect(usageMessage(() => outputFormat({ format: 'csv' }, ['table', 'json']))).toMatch(/one of table, json/);
  });

  it('exits 2 on a wrong command line and 1 on a failure, saying which on stderr', () => {
    let stderr = '';
    const io = { stdout: { write: () => undefined }, stderr: { write: (text: string) => (stderr += text) } };
    expect(commandFailure(new UsageError('--by must be one of tenant'), 'tollgate report', io)).toBe(EXIT_USAGE);
    expect(stderr).toBe('tollgate report: --by must be one of tenant\nRun "tollgate report --help" for its usage.\n');
    stderr = '';
    expect(commandFailure(new Error('connection refused'), 'tollgate report', io)).toBe(EXIT_FAILED);
    expect(stderr).toBe('tollgate report: connection refused\n');
  });
});

interface Row {
  name: string | null;
  scopes?: string[];
  requests: number;
  costNanoUsd: number;
}

const COLUMNS: Column<Row>[] = [
  { name: 'tenant', value: (row) => row.name },
  { name: 'scopes', kind: 'list', value: (row) => row.scopes },
  { name: 'requests', kind: 'number', value: (row) => row.requests },
  { name: 'costUsd', title: 'cost USD', kind: 'usd', value: (row) => row.costNanoUsd },
];
const ROWS: Row[] = [
  { name: 'acme, "the big one"', scopes: ['chat', 'embeddings'], requests: 12_345, costNanoUsd: 12_345_678_901 },
  { name: 'globex\nlabs', requests: 1, costNanoUsd: 5_000 },
  { name: null, requests: 2, costNanoUsd: 0 },
];

describe('formatRows', () => {
  it('prints an aligned table: a header, a rule, text to the left, numbers to the right, money in USD', () => {
    const text = formatRows('table', COLUMNS, ROWS, {
      total: { name: 'total', requests: 12_348, costNanoUsd: 12_345_683_901 },
    });
    expect(text.split('\n')).toEqual([
      'tenant               scopes           requests   cost USD',
      '-------------------  ---------------  --------  ---------',
      'acme, "the big one"  chat,embeddings    12,345  12.345679',
      'globex\\nlabs         -                       1   0.000005',
      '-                    -                       2   0.000000',
      '-------------------  ---------------  --------  ---------',
      'total                -                  12,348  12.345684',
      '',
    ]);
  });

  it('prints CSV a CSV parser reads back as written: commas, quotes and line breaks quoted', () => {
    const rows = parseCsv(formatRows('csv', COLUMNS, ROWS), { columns: true }) as Record<string, string>[];
    expect(rows).toEqual([
      { tenant: 'acme, "the big one"', scopes: 'chat,embeddings', requests: '12345', costUsd: '12.345679' },
      { tenant: 'globex\nlabs', scopes: '', requests: '1', costUsd: '0.000005' },
      { tenant: '', scopes: '', requests: '2', costUsd: '0.000000' },
    ]);
    expect(formatRows('csv', COLUMNS, [])).toBe('tenant,scopes,requests,costUsd\n');
  });

  it('prints JSON: an array of objects, lists as arrays, money as a number of USD', () => {
    expect(JSON.parse(formatRows('json', COLUMNS, ROWS))).toEqual([
      { tenant: 'acme, "the big one"', scopes: ['chat', 'embeddings'], requests: 12345, costUsd: 12.345679 },
      { tenant: 'globex\nlabs', scopes: null, requests: 1, costUsd: 0.000005 },
      { tenant: null, scopes: null, requests: 2, costUsd: 0 },
    ]);
    expect(formatRows('json', COLUMNS, [])).toBe('[]\n');
  });
});
