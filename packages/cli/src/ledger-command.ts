// `tollgate ledger partition`: turns a usage ledger made before partitions into one partitioned by month, so that
// `usageRetention` can drop whole old months (docs/usage-rollups.md, "Retention").
import { commandFailure, EXIT_OK, HELP_OPTION, parseCommandLine, UsageError } from './command-line.js';
import type { CommandIo } from './command-line.js';
import { ledgerSource } from './ledger-source.js';
import type { ReportDefaults } from './ledger-source.js';
import { openLedger, partitionUsageLedger } from '@tollgate/metering';
import type { OpenLedger } from '@tollgate/metering';

const USAGE = `Usage: tollgate ledger partition [--postgres <url> | --data-dir <dir>] [--schema <name>] [--table <name>]

Turns a usage table made before partitions into one partitioned by month, in one transaction: the
old table becomes the partition of every time up to the first whole month after its newest row, the
months after it get their own. No row, id or rollup changes. Writes to the table wait while it runs
(it checks the old rows against their bound and builds the key (id, ts) on them); the gateway's
usage spool keeps the records meanwhile. A ledger made by this version is partitioned already.
  --postgres  the PostgreSQL ledger's connection string (default the config's postgresUrl,
              $TOLLGATE_POSTGRES_URL, $POSTGRES_URL or $DATABASE_URL)
  --data-dir  the proxy's data directory (its embedded ledger, while no proxy has it open)
  --schema    schema of the ledger table (default the search_path)
  --table     ledger table (default tollgate_usage)

Exit code 0 done (or partitioned already), 1 failed, 2 a wrong command line.
`;

const OPTIONS = {
  postgres: { type: 'string' },
  'data-dir': { type: 'string' },
  schema: { type: 'string' },
  table: { type: 'string' },
  ...HELP_OPTION,
} as const;

/** Runs `ledger partition ...` (argv after `ledger`); `defaults` says where the ledger is (the proxy's config). */
export async function runLedgerCommand(
  argv: string[],
  io: CommandIo,
  defaults: () => ReportDefaults | Promise<ReportDefaults>,
): Promise<number> {
  let ledger: OpenLedger | undefined;
  try {
    const [action, ...args] = argv;
    const { values } = parseCommandLine(args, OPTIONS);
    if (action === '--help' || action === '-h' || values.help) {
      io.stdout.write(USAGE);
      return EXIT_OK;
    }
    if (action !== 'partition')
      throw new UsageError(`tollgate ledger takes one action, partition; got ${JSON.stringify(action ?? '')}`);
    const fallback = await defaults();
    const location = { schema: values.schema ?? fallback.schema, table: values.table ?? fallback.table };
    ledger = await openLedger(ledgerSource(values, fallback), 'tollgate ledger partition');
    const started = Date.now();
    const { converted } = await partitionUsageLedger(ledger.db, location);
    io.stdout.write(
      converted
        ? `Partitioned the usage table by month in ${((Date.now() - started) / 1000).toFixed(1)} s.\n`
        : 'The usage table is partitioned already: nothing to do.\n',
    );
    return EXIT_OK;
  } catch (error) {
    return commandFailure(error, 'tollgate ledger', io);
  } finally {
    await ledger?.close();
  }
}
