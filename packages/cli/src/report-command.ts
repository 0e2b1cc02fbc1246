// `tollgate report --by tenant --since 7d`: spend, tokens and what caching saved per group from the usage ledger
// (PostgreSQL, or the embedded PGlite ledger of a data directory), as a table, CSV or JSON.
import { parseDuration } from '@tollgate/core';
import {
  commandFailure,
  EXIT_OK,
  FORMAT_OPTIONS,
  formatRows,
  HELP_OPTION,
  outputFormat,
  parseCommandLine,
  UsageError,
} from './command-line.js';
import type { Column, CommandIo, OutputFormat } from './command-line.js';
import { ledgerSource } from './ledger-source.js';
import type { ReportDefaults } from './ledger-source.js';
import { aggregateUsage, costPerOutcome, openLedger, OUTCOME_GROUPINGS, USAGE_GROUPINGS } from '@tollgate/metering';
import type {
  LedgerLocation,
  LedgerSource,
  OpenLedger,
  OutcomeCost,
  OutcomeGrouping,
  Queryable,
  UsageAggregate,
  UsageGrouping,
} from '@tollgate/metering';

export type ReportIo = CommandIo;

const USAGE = `Usage: tollgate report [--by tenant|feature|user|tag|model|day|key|session|team] [--since 7d|<ISO date>] [--until <ISO date>]
                       [--tenant <id>] [--format table|csv|json]
                       [--postgres <url> | --data-dir <dir>] [--schema <name>] [--table <name>]
       tollgate report --outcomes [--by tenant|feature] [--kind <kind>] [...the same]

Spend, tokens, cache hits and what caching saved per group from the usage ledger; with --outcomes,
cost per outcome. Money is in USD.
  --by        grouping (default tenant); by tag, a record counts under each of its tags (no total row)
  --outcomes  cost per outcome (per tenant or feature, and kind) of the outcomes reported in the period
  --kind      with --outcomes: only this kind (resolved, converted, ...)
  --since     a duration back from now (30m, 24h, 7d) or an ISO date (default 7d)
  --until     an ISO date (default now)
  --tenant    only this tenant
  --format    table (default, with a total row), csv or json (--json is short for --format json)
  --postgres  the PostgreSQL ledger's connection string (default the config's postgresUrl,
              $TOLLGATE_POSTGRES_URL, $POSTGRES_URL or $DATABASE_URL)
  --data-dir  the proxy's data directory: reads the embedded (PGlite) ledger in <dir>/ledger,
              while no proxy has it open
  --schema    schema of the ledger table (default the search_path)
  --table     ledger table (default tollgate_usage)

Exit code 0 done, 1 the ledger could not be read, 2 a wrong command line.
`;

const OPTIONS = {
  by: { type: 'string' },
  outcomes: { type: 'boolean' },
  kind: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  tenant: { type: 'string' },
  postgres: { type: 'string' },
  'data-dir': { type: 'string' },
  schema: { type: 'string' },
  table: { type: 'string' },
  ...FORMAT_OPTIONS,
  ...HELP_OPTION,
} as const;

interface ReportArgs extends LedgerLocation {
  by: UsageGrouping;
  outcomes: boolean;
  kind?: string;
  since: Date;
  until?: Date;
  tenantId?: string;
  format: OutputFormat;
  source: LedgerSource;
}

function parseDate(value: string, flag: string, now: number): Date {
  if (/^\d+(\.\d+)?\s*(ms|s|m|h|d|w)$/.test(value.trim())) return new Date(now - parseDuration(value, flag));
  // Only ISO dates: Date() also reads a bare "7" as a day in 2001.
  const date = /^\d{4}-\d{2}-\d{2}/.test(value.trim()) ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(date.getTime()))
    throw new UsageError(`${flag} must be a duration like 7d or an ISO date; got ${JSON.stringify(value)}`);
  return date;
}

async function parseReportArgs(
  argv: string[],
  now: number,
  defaults: () => ReportDefaults | Promise<ReportDefaults>,
): Promise<ReportArgs | 'help'> {
  const args = argv[0] === 'report' ? argv.slice(1) : argv;
  const { values } = parseCommandLine(args, OPTIONS);
  if (values.help) return 'help';
  const outcomes = values.outcomes === true;
  const by = values.by ?? 'tenant';
  const groupings: readonly string[] = outcomes ? OUTCOME_GROUPINGS : USAGE_GROUPINGS;
  if (!groupings.includes(by))
    throw new UsageError(
      `--by${outcomes ? ' with --outcomes' : ''} must be one of ${groupings.join(', ')}; got ${JSON.stringify(by)}`,
    );
  if (values.kind !== undefined && !outcomes) throw new UsageError('--kind goes with --outcomes');
  const format = outputFormat(values);
  const since = parseDate(values.since ?? '7d', '--since', now);
  const until = values.until === undefined ? undefined : parseDate(values.until, '--until', now);
  // The config's ledger is read only when the command line names none.
  const fallback = values.postgres === undefined && values['data-dir'] === undefined ? await defaults() : {};
  return {
    by: by as UsageGrouping,
    outcomes,
    kind: values.kind,
    since,
    until,
    tenantId: values.tenant,
    format,
    source: ledgerSource(values, fallback),
    schema: values.schema ?? fallback.schema,
    table: values.table ?? fallback.table,
  };
}

const SPEND_COLUMNS: readonly Column<UsageAggregate>[] = [
  { name: 'requests', kind: 'number', value: (row) => row.requests },
  { name: 'inputTokens', title: 'input', kind: 'number', value: (row) => row.inputTokens },
  { name: 'cachedInputTokens', title: 'cached', kind: 'number', value: (row) => row.cachedInputTokens },
  { name: 'cacheWriteTokens', title: 'cache write', kind: 'number', value: (row) => row.cacheWriteTokens },
  { name: 'outputTokens', title: 'output', kind: 'number', value: (row) => row.outputTokens },
  { name: 'reasoningTokens', title: 'reasoning', kind: 'number', value: (row) => row.reasoningTokens },
  { name: 'costUsd', title: 'cost USD', kind: 'usd', value: (row) => row.costNanoUsd },
  { name: 'cacheHits', title: 'cache hits', kind: 'number', value: (row) => row.cacheHits },
  { name: 'savedUsd', title: 'saved USD', kind: 'usd', value: (row) => row.savedNanoUsd },
];

function totalOf(rows: readonly UsageAggregate[]): UsageAggregate {
  const total: UsageAggregate = {
    group: 'total',
    requests: 0,
    refusals: 0,
    inputTokens: 0,
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: 0,
    reasoningTokens: 0,
    costNanoUsd: 0,
    cacheHits: 0,
    savedNanoUsd: 0,
  };
  for (const row of rows)
    for (const field of Object.keys(total) as (keyof UsageAggregate)[])
      if (field !== 'group') total[field] += row[field];
  return total;
}

/**
 * Usage aggregates as a table (one row per group, then a total row), CSV or JSON; the group's column
 * is named for the grouping (`tenant`), money is in USD.
 */
export function formatUsageReport(
  by: UsageGrouping,
  rows: readonly UsageAggregate[],
  format: OutputFormat = 'table',
): string {
  const columns = [{ name: by, value: (row: UsageAggregate) => row.group }, ...SPEND_COLUMNS];
  // By tag a record counts in each of its tags' rows: their sum is no total, so none is printed.
  return formatRows(
    format,
    columns,
    rows,
    by === 'tag' ? { unset: '(none)' } : { total: totalOf(rows), unset: '(none)' },
  );
}

/** Cost per outcome as a table, CSV or JSON: per group and kind, what one outcome cost and, where valued, value per cost. */
function formatOutcomeReport(
  by: OutcomeGrouping,
  rows: readonly OutcomeCost[],
  format: OutputFormat = 'table',
): string {
  const columns: Column<OutcomeCost>[] = [
    { name: by, value: (row) => row.group },
    { name: 'outcome', value: (row) => row.kind },
    { name: 'outcomes', kind: 'number', value: (row) => row.outcomes },
    { name: 'requests', kind: 'number', value: (row) => row.requests },
    { name: 'costUsd', title: 'cost USD', kind: 'usd', value: (row) => row.costNanoUsd },
    { name: 'costPerOutcomeUsd', title: 'per outcome USD', kind: 'usd', value: (row) => row.costPerOutcomeNanoUsd },
    { name: 'valueUsd', title: 'value USD', kind: 'usd', value: (row) => row.valueNanoUsd },
    { name: 'valuePerCost', title: 'value per cost', kind: 'number', value: (row) => row.valuePerCost },
  ];
  return formatRows(format, columns, rows, { unset: '(none)' });
}

async function printReport(db: Queryable, args: ReportArgs, io: ReportIo): Promise<void> {
  const location = { schema: args.schema, table: args.table };
  const period = `from ${args.since.toISOString()} to ${(args.until ?? new Date()).toISOString()}`;
  const common = { since: args.since, until: args.until, tenantId: args.tenantId, ...location };
  if (args.outcomes) {
    const by = args.by as OutcomeGrouping;
    const rows = await costPerOutcome(db, { by, kind: args.kind, ...common });
    if (args.format !== 'table') io.stdout.write(formatOutcomeReport(by, rows, args.format));
    else if (rows.length === 0) io.stdout.write(`No outcomes reported ${period}.\n`);
    else io.stdout.write(`Cost per outcome by ${by}, outcomes reported ${period}\n\n${formatOutcomeReport(by, rows)}`);
    return;
  }
  const rows = await aggregateUsage(db, { by: args.by, ...common });
  if (args.format !== 'table') io.stdout.write(formatUsageReport(args.by, rows, args.format));
  else if (rows.length === 0) io.stdout.write(`No usage recorded ${period}.\n`);
  else io.stdout.write(`Usage by ${args.by} ${period}\n\n${formatUsageReport(args.by, rows)}`);
}

/**
 * Runs `report ...` (argv with or without the leading `report`). `defaults` says where the ledger is
 * when the command line does not (the proxy's config). Returns the exit code: 0 done, 1 the ledger
 * could not be read, 2 a wrong command line.
 */
export async function runReportCommand(
  argv: string[],
  io: ReportIo = { stdout: process.stdout, stderr: process.stderr },
  defaults: () => ReportDefaults | Promise<ReportDefaults> = () => ({}),
): Promise<number> {
  let ledger: OpenLedger | undefined;
  try {
    const args = await parseReportArgs(argv, Date.now(), defaults);
    if (args === 'help') {
      io.stdout.write(USAGE);
      return EXIT_OK;
    }
    ledger = await openLedger(args.source, 'tollgate report');
    await printReport(ledger.db, args, io);
    return EXIT_OK;
  } catch (error) {
    return commandFailure(error, 'tollgate report', io);
  } finally {
    await ledger?.close();
  }
}
