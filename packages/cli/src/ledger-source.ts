// Which usage ledger a command reads: the one its command line names (`--postgres`, `--data-dir`), else the proxy's
// config's, else the environment's PostgreSQL URL.
import type { LedgerLocation, LedgerSource } from '@tollgate/metering';
import { UsageError } from './command-line.js';

/** Where the ledger is when the command line does not say: the proxy's config names its database. */
export interface ReportDefaults extends LedgerLocation {
  /** PostgreSQL connection string. */
  postgres?: string;
  /** A gateway's data directory, whose embedded ledger is read when no PostgreSQL is named. */
  dataDir?: string;
}

/** The ledger `--postgres` or `--data-dir` names, else the defaults (the proxy's config), else TOLLGATE_POSTGRES_URL. */
export function ledgerSource(
  values: { postgres?: string | undefined; 'data-dir'?: string | undefined },
  defaults: ReportDefaults,
): LedgerSource {
  if (values.postgres !== undefined && values['data-dir'] !== undefined)
    throw new UsageError('give --postgres or --data-dir, not both');
  if (values['data-dir'] !== undefined) return { dataDir: values['data-dir'] };
  if (values.postgres === undefined && defaults.postgres === undefined && defaults.dataDir !== undefined)
    return { dataDir: defaults.dataDir };
  const postgres =
    values.postgres ??
    defaults.postgres ??
    process.env.TOLLGATE_POSTGRES_URL ??
    process.env.POSTGRES_URL ??
    process.env.DATABASE_URL;
  if (!postgres)
    throw new UsageError(
      'no ledger to read: pass --postgres <url> (or set TOLLGATE_POSTGRES_URL) or --data-dir <the proxy data directory>',
    );
  return { postgres };
}
