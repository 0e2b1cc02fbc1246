// `tollgate report --by tenant --since 7d`: spend, tokens and what caching saved per group from the PostgreSQL ledger, as a table.
import { formatUsd, parseDuration } from '@tollgate/core';
import type pg from 'pg';
import { loadOptionalPeer } from './optional-peer.js';
import { costPerOutcome, OUTCOME_GROUPINGS } from './outcomes.js';
import type { OutcomeCost, OutcomeGrouping } from './outcomes.js';
import { aggregateUsage, USAGE_GROUPINGS } from './postgres-ledger.js';
import type { UsageAggregate, UsageGrouping } from './postgres-ledger.js';

export interface ReportIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

const USAGE = `Usage: tollgate report [--by tenant|feature|model|day|key|user] [--since 7d|<ISO date>] [--until <ISO date>]
                       [--tenant <id>] [--postgres <url>] [--schema <name>] [--table <name>] [--json]
       tollgate report --outcomes [--by tenant|feature] [--kind <kind>] [...the same]

Spend, tokens, cache hits and what caching saved per group from the usage ledger (PostgreSQL);
with --outcomes, cost per outcome.
  --by        grouping (default tenant)
  --outcomes  cost per outcome (per tenant or feature, and kind) of the outcomes reported in the period
  --kind      with --outcomes: only this kind (resolved, converted, ...)
  --since     a duration back from now (30m, 24h, 7d) or an ISO date (default 7d)
  --until     an ISO date (default now)
  --tenant    only this tenant
  --postgres  connection string (default $TOLLGATE_POSTGRES_URL, $POSTGRES_URL or $DATABASE_URL)
  --schema    schema of the ledger table (default the search_path)
  --table     ledger table (default tollgate_usage)
  --json      print the rows as JSON instead of a table
`;

interface ReportArgs {
  by: UsageGrouping;
  outcomes: boolean;
  kind?: string;
  since: Date;
  until?: Date;
  tenantId?: string;
  postgres?: string;
  schema?: string;
  table?: string;
  json: boolean;
}

class UsageError extends Error {}

function parseDate(value: string, flag: string, now: number): Date {
  if (/^\d+(\.\d+)?\s*(ms|s|m|h|d|w)$/.test(value.trim())) return new Date(now - parseDuration(value, flag));
  // Only ISO dates: Date() also reads a bare "7" as a day in 2001.
  const date = /^\d{4}-\d{2}-\d{2}/.test(value.trim()) ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(date.getTime()))
    throw new UsageError(`${flag} must be a duration like 7d or an ISO date; got ${JSON.stringify(value)}`);
  return date;
}

function parseArgs(argv: string[], now: number): ReportArgs | 'help' {
  const args = argv[0] === 'report' ? argv.slice(1) : argv;
  const values = new Map<string, string>();
  let json = false;
  let outcomes = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--help' || arg === '-h') return 'help';
    if (arg === '--json' || arg === '--outcomes') {
      if (arg === '--json') json = true;
      else outcomes = true;
      continue;
    }
    const match = /^--(by|since|until|tenant|postgres|schema|table|kind)(?:=(.*))?$/.exec(arg);
    if (!match) throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    // The next argument is the value, unless it is another flag (`--tenant --json`).
    const value = match[2] ?? (args[i + 1]?.startsWith('--') ? undefined : args[++i]);
    if (value === undefined || value === '') throw new UsageError(`--${match[1]} needs a value`);
    values.set(match[1]!, value);
  }
  const by = (values.get('by') ?? 'tenant') as UsageGrouping;
  const groupings: readonly string[] = outcomes ? OUTCOME_GROUPINGS : USAGE_GROUPINGS;
  if (!groupings.includes(by))
    throw new UsageError(
      `--by${outcomes ? ' with --outcomes' : ''} must be one of ${groupings.join(', ')}; got ${JSON.stringify(by)}`,
    );
  if (values.has('kind') && !outcomes) throw new UsageError('--kind goes with --outcomes');
  const until = values.has('until') ? parseDate(values.get('until')!, '--until', now) : undefined;
  return {
    by,
    outcomes,
    kind: values.get('kind'),
    since: parseDate(values.get('since') ?? '7d', '--since', now),
    until,
    tenantId: values.get('tenant'),
    postgres:
      values.get('postgres') ??
      process.env.TOLLGATE_POSTGRES_URL ??
      process.env.POSTGRES_URL ??
      process.env.DATABASE_URL,
    schema: values.get('schema'),
    table: values.get('table'),
    json,
  };
}

const integer = (value: number) => value.toLocaleString('en-US');

/** Renders aggregates as an aligned text table with a total row. */
export function formatUsageTable(by: UsageGrouping, rows: readonly UsageAggregate[]): string {
  const total = rows.reduce(
    (sum, row) => ({
      requests: sum.requests + row.requests,
      inputTokens: sum.inputTokens + row.inputTokens,
      cachedInputTokens: sum.cachedInputTokens + row.cachedInputTokens,
      cacheWriteTokens: sum.cacheWriteTokens + row.cacheWriteTokens,
      outputTokens: sum.outputTokens + row.outputTokens,
      reasoningTokens: sum.reasoningTokens + row.reasoningTokens,
      costNanoUsd: sum.costNanoUsd + row.costNanoUsd,
      cacheHits: sum.cacheHits + row.cacheHits,
      savedNanoUsd: sum.savedNanoUsd + row.savedNanoUsd,
    }),
    {
      requests: 0,
      inputTokens: 0,
      cachedInputTokens: 0,
      cacheWriteTokens: 0,
      outputTokens: 0,
      reasoningTokens: 0,
      costNanoUsd: 0,
      cacheHits: 0,
      savedNanoUsd: 0,
    },
  );
  const header = [
    by,
    'requests',
    'input',
    'cached',
    'cache write',
    'output',
    'reasoning',
    'cost',
    'cache hits',
    'saved',
  ];
  const line = (group: string, row: Omit<UsageAggregate, 'group'>) => [
    group,
    integer(row.requests),
    integer(row.inputTokens),
    integer(row.cachedInputTokens),
    integer(row.cacheWriteTokens),
    integer(row.outputTokens),
    integer(row.reasoningTokens),
    formatUsd(row.costNanoUsd),
    integer(row.cacheHits),
    formatUsd(row.savedNanoUsd),
  ];
  const body = rows.map((row) => line(row.group ?? '(none)', row));
  const table = [header, ...body, line('total', total)];
  const widths = header.map((_, column) => Math.max(...table.map((cells) => cells[column]!.length)));
  const render = (cells: string[]) =>
    cells
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join('  ');
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  return [render(header), rule, ...body.map(render), rule, render(table[table.length - 1]!)].join('\n') + '\n';
}

const ratio = (value: number | null) => (value === null ? '' : `${value.toFixed(value >= 100 ? 0 : 2)}x`);

/** Renders cost per outcome as an aligned text table: per group and kind, what one outcome cost and, where valued, value per cost. */
export function formatOutcomeTable(by: OutcomeGrouping, rows: readonly OutcomeCost[]): string {
  const header = [by, 'outcome', 'outcomes', 'requests', 'cost', 'cost per outcome', 'value', 'value per cost'];
  const body = rows.map((row) => [
    row.group ?? '(none)',
    row.kind,
    integer(row.outcomes),
    integer(row.requests),
    formatUsd(row.costNanoUsd),
    formatUsd(row.costPerOutcomeNanoUsd),
    row.valueNanoUsd === null ? '' : formatUsd(row.valueNanoUsd),
    ratio(row.valuePerCost),
  ]);
  const table = [header, ...body];
  const widths = header.map((_, column) => Math.max(...table.map((cells) => cells[column]!.length)));
  const render = (cells: string[]) =>
    cells
      .map((cell, column) => (column < 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join('  ');
  return [render(header), widths.map((width) => '-'.repeat(width)).join('  '), ...body.map(render)].join('\n') + '\n';
}

/**
 * Runs `report ...` (argv with or without the leading `report`). Returns the exit code:
 * 0 done, 1 the query failed, 2 bad arguments.
 */
export async function runReportCommand(
  argv: string[],
  io: ReportIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let args: ReportArgs | 'help';
  try {
    args = parseArgs(argv, Date.now());
  } catch (error) {
    io.stderr.write(`tollgate report: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (args === 'help') {
    io.stdout.write(USAGE);
    return 0;
  }
  if (!args.postgres) {
    io.stderr.write('tollgate report: no PostgreSQL to read: pass --postgres <url> or set TOLLGATE_POSTGRES_URL\n');
    return 2;
  }
  const client = new (loadOptionalPeer<typeof pg>('pg', 'tollgate report').Client)({
    connectionString: args.postgres,
    connectionTimeoutMillis: 10_000,
  });
  try {
    await client.connect();
    if (args.outcomes) {
      const by = args.by as OutcomeGrouping;
      const rows = await costPerOutcome(client, {
        by,
        since: args.since,
        until: args.until,
        tenantId: args.tenantId,
        kind: args.kind,
        schema: args.schema,
        table: args.table,
      });
      if (args.json) {
        io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      } else {
        io.stdout.write(
          `Cost per outcome by ${by}, outcomes reported from ${args.since.toISOString()} to ${(args.until ?? new Date()).toISOString()}\n\n`,
        );
        io.stdout.write(rows.length === 0 ? 'No outcomes reported in this period.\n' : formatOutcomeTable(by, rows));
      }
      return 0;
    }
    const rows = await aggregateUsage(client, {
      by: args.by,
      since: args.since,
      until: args.until,
      tenantId: args.tenantId,
      schema: args.schema,
      table: args.table,
    });
    if (args.json) {
      io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    } else {
      io.stdout.write(
        `Usage by ${args.by} from ${args.since.toISOString()} to ${(args.until ?? new Date()).toISOString()}\n\n`,
      );
      io.stdout.write(rows.length === 0 ? 'No usage recorded in this period.\n' : formatUsageTable(args.by, rows));
    }
    return 0;
  } catch (error) {
    io.stderr.write(`tollgate report: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    await client.end().catch(() => undefined);
  }
}
