// `tollgate tenants list|get|create|update|delete|import`: tenants kept as data, through a running gateway's
// /admin/tenants (the admin key from TOLLGATE_ADMIN_KEY, never from the command line, where `ps` would show it).
import { readFileSync } from 'node:fs';
import { EXIT_FAILED, EXIT_OK, formatRows, outputFormat, UsageError } from './command-line.js';
import type { Column, CommandIo, ParsedCommandLine } from './command-line.js';
import { ADMIN_OPTIONS, runAdminCommand } from './admin-api.js';
import type { AdminSubcommand } from './admin-api.js';

const USAGE = `Usage: TOLLGATE_ADMIN_KEY=... tollgate tenants <command> [--url URL] [options]

Commands:
  list [--q TEXT] [--limit N] [--cursor ID]   Tenants by id (the config file's and the stored ones);
                                              --all reads every page.
  get <id>                                    One tenant, as JSON.
  create <id> --tier TIER [--json-fields '{"budget": {"usd": 100}}']
  update <id> --json-fields '{"tier": "pro", "budget": null}'   (null takes a field away)
  delete <id>
  import <file.ndjson>                        One tenant a line, idempotent by id; prints each line's outcome.

--url is the gateway's (default TOLLGATE_URL, else http://127.0.0.1:8787). list prints a table, or
--format csv|json. A tenant of the config file is changed in the file: the gateway answers 409.
Exit code 0 done, 1 failed (the gateway's refusal is printed), 2 a wrong command line.
`;

const OPTIONS = {
  ...ADMIN_OPTIONS,
  q: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
  all: { type: 'boolean' },
  tier: { type: 'string' },
  'json-fields': { type: 'string' },
} as const;

interface TenantRow {
  id: string;
  source: string;
  tier?: string;
  budget?: unknown;
  updatedAt?: string;
}

const COLUMNS: readonly Column<TenantRow>[] = [
  { name: 'id', value: (row) => row.id },
  { name: 'source', value: (row) => row.source },
  { name: 'tier', value: (row) => row.tier ?? '' },
  { name: 'budget', value: (row) => (row.budget === undefined ? '' : JSON.stringify(row.budget)) },
  { name: 'updatedAt', value: (row) => row.updatedAt ?? '' },
];

function fieldsOf(text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  let fields: unknown;
  try {
    fields = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--json-fields is not JSON: ${(error as Error).message}`);
  }
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields))
    throw new UsageError('--json-fields must be a JSON object');
  return fields as Record<string, unknown>;
}

function onlyId(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new UsageError(`tenants ${command} takes one tenant id`);
  return positionals[0]!;
}

type Run = AdminSubcommand<ParsedCommandLine<typeof OPTIONS>['values']>;

const print = (io: CommandIo, value: unknown) => io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

const SUBCOMMANDS: Readonly<Record<string, Run>> = {
  async list(call, positionals, values, io) {
    if (positionals.length > 0) throw new UsageError('tenants list takes no arguments');
    const format = outputFormat(values);
    const rows: TenantRow[] = [];
    let cursor = values.cursor;
    for (;;) {
      const query = new URLSearchParams({
        ...(values.q ? { q: values.q } : {}),
        ...(values.limit ? { limit: values.limit } : {}),
        ...(cursor ? { cursor } : {}),
      });
      const page = await call('GET', `?${query.toString()}`);
      rows.push(...(page.tenants as TenantRow[]));
      cursor = page.nextCursor as string | undefined;
      if (!values.all || cursor === undefined) break;
    }
    io.stdout.write(formatRows(format, COLUMNS, rows));
    if (cursor !== undefined && format === 'table') io.stderr.write(`more: --cursor ${cursor}\n`);
    return EXIT_OK;
  },
  async get(call, positionals, _values, io) {
    print(io, (await call('GET', `/${encodeURIComponent(onlyId(positionals, 'get'))}`)).tenant);
    return EXIT_OK;
  },
  async create(call, positionals, values, io) {
    const id = onlyId(positionals, 'create');
    const body = { id, ...(values.tier ? { tier: values.tier } : {}), ...fieldsOf(values['json-fields']) };
    print(io, (await call('POST', '', JSON.stringify(body))).tenant);
    return EXIT_OK;
  },
  async update(call, positionals, values, io) {
    const id = onlyId(positionals, 'update');
    const body = { ...(values.tier ? { tier: values.tier } : {}), ...fieldsOf(values['json-fields']) };
    if (Object.keys(body).length === 0) throw new UsageError('tenants update needs --tier or --json-fields');
    print(io, (await call('PATCH', `/${encodeURIComponent(id)}`, JSON.stringify(body))).tenant);
    return EXIT_OK;
  },
  async delete(call, positionals, _values, io) {
    const id = onlyId(positionals, 'delete');
    await call('DELETE', `/${encodeURIComponent(id)}`);
    io.stdout.write(`deleted ${id}\n`);
    return EXIT_OK;
  },
  async import(call, positionals, _values, io) {
    if (positionals.length !== 1) throw new UsageError('tenants import takes one NDJSON file');
    const text = readFileSync(positionals[0]!, 'utf8');
    // The route is /admin/tenants:import: the path's own, not a sub-route.
    const report = await call('POST', ':import', text, 'application/x-ndjson');
    const lines = report.lines as { line: number; outcome: string; id?: string; error?: string }[];
    for (const line of lines.filter((entry) => entry.outcome === 'error'))
      io.stderr.write(`line ${line.line}${line.id ? ` (${line.id})` : ''}: ${line.error}\n`);
    io.stdout.write(
      `${String(report.created)} created, ${String(report.updated)} updated, ${String(report.unchanged)} unchanged, ${String(report.errors)} refused\n`,
    );
    return report.errors === 0 ? EXIT_OK : EXIT_FAILED;
  },
};

/** Runs `tenants ...` and returns the exit code: 0 done, 1 failed, 2 a wrong command line. */
export function runTenantsCommand(argv: string[], io: CommandIo, env: NodeJS.ProcessEnv): Promise<number> {
  const command = { name: 'tenants', base: '/tenants', usage: USAGE, options: OPTIONS, subcommands: SUBCOMMANDS };
  return runAdminCommand(command, argv, io, env);
}
