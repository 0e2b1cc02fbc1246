// The operator's command line, one way for every command: node:util parseArgs with a "did you mean" for a mistyped
// command or flag, the exit codes, and one output formatter (an aligned table, CSV or JSON) with money in USD.
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { usdDecimal } from '@tollgate/core/costs';
import { csvText } from '@tollgate/core/csv';
import { didYouMean } from '@tollgate/core/options';

/** Exit codes of every command: done, the operation failed, the command line was wrong. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** Where a command writes: its results to stdout, what went wrong to stderr. */
export interface CommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/** A command line that is wrong: the command prints the message and its usage, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** `-h` / `--help`, which every command takes. */
export const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

/** `--format table|csv|json`, and `--json` for `--format json`. */
export const FORMAT_OPTIONS = { format: { type: 'string' }, json: { type: 'boolean' } } as const;

export const OUTPUT_FORMATS = ['table', 'csv', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** An error's message; errors of node's own modules fail `instanceof Error` in another realm (a test's VM context). */
function messageOf(error: unknown): string {
  const message = (error as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : String(error);
}

/** Why parseArgs refused `args`, in the command's words: an unknown flag gets the known one it is closest to. */
function usageProblem(error: unknown, args: string[], options: Options): string {
  const code = (error as { code?: unknown }).code;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const { tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });
    const unknown = tokens.find((token) => token.kind === 'option' && !Object.hasOwn(options, token.name));
    if (unknown?.kind === 'option') {
      const known = Object.keys(options).map((name) => `--${name}`);
      return `unknown option ${unknown.rawName}${didYouMean(`--${unknown.name}`, known)}`;
    }
  }
  return messageOf(error);
}

/** What parseCommandLine returns: the flags' values, typed by `options`, and the positional arguments. */
export type ParsedCommandLine<O extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: true }>
>;

/**
 * Parses `args` with node:util parseArgs (strict). A wrong command line (an unknown flag, a flag
 * without its value, a value where none is taken, an empty value) throws UsageError saying so.
 */
export function parseCommandLine<const O extends Options>(
  args: string[],
  options: O,
  allowPositionals = false,
): ParsedCommandLine<O> {
  let parsed: ParsedCommandLine<O>;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals }) as ParsedCommandLine<O>;
  } catch (error) {
    throw new UsageError(usageProblem(error, args, options));
  }
  for (const [name, value] of Object.entries(parsed.values)) {
    if (value === '' || (Array.isArray(value) && value.includes(''))) throw new UsageError(`--${name} needs a value`);
  }
  return parsed;
}

/** The entry of `commands` that `name` names; an unknown one is a UsageError with a "did you mean". */
export function pickCommand<T>(name: string, commands: Readonly<Record<string, T>>, what = 'command'): T {
  if (!Object.hasOwn(commands, name))
    throw new UsageError(`unknown ${what} "${name}"${didYouMean(name, Object.keys(commands))}`);
  return commands[name]!;
}

/**
 * Prints what went wrong for `command` (`tollgate keys`) and returns the exit code: 2 for a wrong
 * command line (with where its usage is), 1 for a failed operation.
 */
export function commandFailure(error: unknown, command: string, io: CommandIo): number {
  if (error instanceof UsageError) {
    io.stderr.write(`${command}: ${error.message}\nRun "${command} --help" for its usage.\n`);
    return EXIT_USAGE;
  }
  io.stderr.write(`${command}: ${messageOf(error)}\n`);
  return EXIT_FAILED;
}

/** The format `--format` (or `--json`) asks for, among those the command prints. @default 'table' */
export function outputFormat(
  values: { format?: string | undefined; json?: boolean | undefined },
  allowed: readonly OutputFormat[] = OUTPUT_FORMATS,
): OutputFormat {
  if (values.json === true && values.format !== undefined && values.format !== 'json')
    throw new UsageError(`--json is --format json: give one of them`);
  const format = values.json === true ? 'json' : (values.format ?? 'table');
  if (!(allowed as readonly string[]).includes(format))
    throw new UsageError(
      `--format must be one of ${allowed.join(', ')}; got ${JSON.stringify(format)}${didYouMean(format, allowed)}`,
    );
  return format as OutputFormat;
}

/**
 * What a column holds: text, a list of names (an array in JSON, comma-separated elsewhere), a number
 * (a count, a ratio), or money (an integer of nano-USD, printed in USD).
 */
export type ColumnKind = 'text' | 'list' | 'number' | 'usd';

export interface Column<Row> {
  /** The field's name in JSON and in the CSV header (`costUsd`). */
  name: string;
  /** The table's header. @default name */
  title?: string;
  /** @default 'text' */
  kind?: ColumnKind;
  /** The row's value: text or a list (null when unset), a number, or nano-USD for a `usd` column. */
  value(row: Row): string | readonly string[] | number | null | undefined;
}

interface FormatOptions<Row> {
  /** A total row, under the table's rule (tables only: CSV and JSON hold the rows alone). */
  total?: Row;
  /** What the table shows for an unset text value. @default '-' */
  unset?: string;
}

// Control characters would break a table's lines: shown escaped, as JSON writes them (`\n`, `\u0085`).
const CONTROL = /\p{Cc}/gu;
const escapeControl = (text: string) =>
  text.replace(CONTROL, (char) => {
    const json = JSON.stringify(char).slice(1, -1);
    return json === char ? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}` : json;
  });

const isNumeric = (kind: ColumnKind | undefined) => kind === 'number' || kind === 'usd';
// One formatter for every cell: toLocaleString makes one per call, which took seconds over a report of 10,000 tenants.
const NUMBER = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const text = (value: string | readonly string[] | number) => (Array.isArray(value) ? value.join(',') : String(value));

function tableCell<Row>(column: Column<Row>, row: Row, unset: string): string {
  const value = column.value(row);
  if (value === null || value === undefined || (Array.isArray(value) && value.length === 0))
    return isNumeric(column.kind) ? '' : unset;
  if (column.kind === 'number') return NUMBER.format(Number(value));
  if (column.kind === 'usd') return usdDecimal(Number(value));
  return escapeControl(text(value));
}

function jsonValue<Row>(column: Column<Row>, row: Row): string | readonly string[] | number | null {
  const value = column.value(row);
  if (value === null || value === undefined) return null;
  if (column.kind === 'number') return Number(value);
  // At most 6 decimals: the number reads back as written (fewer than 16 significant digits under MAX_USD).
  if (column.kind === 'usd') return Number(usdDecimal(Number(value)));
  if (column.kind === 'list') return Array.isArray(value) ? value : [String(value)];
  return String(value);
}

function csvCell<Row>(column: Column<Row>, row: Row): string {
  const value = column.value(row);
  if (value === null || value === undefined) return '';
  return column.kind === 'usd' ? usdDecimal(Number(value)) : text(value);
}

function renderTable<Row>(columns: readonly Column<Row>[], rows: readonly Row[], options: FormatOptions<Row>): string {
  const unset = options.unset ?? '-';
  const header = columns.map((column) => column.title ?? column.name);
  const body = rows.map((row) => columns.map((column) => tableCell(column, row, unset)));
  const total = options.total === undefined ? [] : [columns.map((column) => tableCell(column, options.total!, unset))];
  const widths = header.map((title, i) =>
    Math.max(title.length, ...[...body, ...total].map((cells) => cells[i]!.length)),
  );
  const render = (cells: readonly string[]) =>
    cells
      .map((cell, i) => {
        return isNumeric(columns[i]!.kind) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  const lines = [render(header), rule, ...body.map(render)];
  if (total.length > 0) lines.push(rule, render(total[0]!));
  return `${lines.join('\n')}\n`;
}

/**
 * Rows as an aligned table (a header, text to the left, numbers to the right, money as `12.345678` USD),
 * as CSV (a header of field names, quoted where a value holds a comma, a quote or a line break) or as a
 * JSON array of objects (money as a number of USD). One formatter for every command's output.
 */
export function formatRows<Row>(
  format: OutputFormat,
  columns: readonly Column<Row>[],
  rows: readonly Row[],
  options: FormatOptions<Row> = {},
): string {
  if (format === 'json') {
    const objects = rows.map((row) =>
      Object.fromEntries(columns.map((column) => [column.name, jsonValue(column, row)])),
    );
    return `${JSON.stringify(objects, null, 2)}\n`;
  }
  if (format === 'csv')
    return csvText([
      columns.map((column) => column.name),
      ...rows.map((row) => columns.map((column) => csvCell(column, row))),
    ]);
  return renderTable(columns, rows, options);
}
