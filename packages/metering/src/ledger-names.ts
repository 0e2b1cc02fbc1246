// The ledger's table names: quoted, schema-qualified, the side tables named after the usage table.
import { TollgateError } from '@tollgate/core';

export interface LedgerLocation {
  /** Schema of the table (created if missing). @default the connection's search_path (usually `public`) */
  schema?: string;
  /** Table name. @default 'tollgate_usage' */
  table?: string;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export function quoteIdentifier(name: string, what: string): string {
  if (!IDENTIFIER.test(name))
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_IDENTIFIER',
      `${what} must be a plain SQL identifier (letters, digits, _; at most 63); got ${JSON.stringify(name)}`,
    );
  return `"${name}"`;
}

/** The quoted, schema-qualified table name; throws on anything that is not a plain identifier. */
export function ledgerTableName(location: LedgerLocation = {}): string {
  const table = quoteIdentifier(location.table ?? 'tollgate_usage', 'table');
  return location.schema === undefined ? table : `${quoteIdentifier(location.schema, 'schema')}.${table}`;
}

/** A table next to the usage table, in its schema, named `<usage table>_<suffix>` (the usage name cut to fit 63). */
export function besideUsageTable(location: LedgerLocation, suffix: string): string {
  const base = (location.table ?? 'tollgate_usage').slice(0, 62 - suffix.length);
  const table = quoteIdentifier(`${base}_${suffix}`, 'table');
  return location.schema === undefined ? table : `${quoteIdentifier(location.schema, 'schema')}.${table}`;
}
