// `tollgate reconcile`: every budget of the current period raised to the spend the PostgreSQL ledger recorded (after
// Redis lost data); never lowers one. Prints the scopes it raised, in USD.
import { readFileSync } from 'node:fs';
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
import type { Column, CommandIo } from './command-line.js';
import { parseConfig, reconcileBudgets } from '@tollgate/gateway';

const USAGE = `Usage: TOLLGATE_CONFIG=config.json [REDIS_URL=...] tollgate reconcile [--format table|csv|json]

Raises every budget scope of the current period to the spend the PostgreSQL ledger recorded for it,
keeping its top-up credit; never lowers one. Reads the config's postgresUrl and budgets, and Redis from
REDIS_URL or the config's redisUrl. Prints the scopes it raised and what to, in USD (csv and json:
the rows alone; the count of scopes checked goes to stderr).

Exit code 0 done, 1 failed, 2 a wrong command line or config.
`;

const OPTIONS = { ...FORMAT_OPTIONS, ...HELP_OPTION } as const;

interface Raised {
  key: string;
  spentNanoUsd: number;
}

const COLUMNS: readonly Column<Raised>[] = [
  { name: 'budget', value: (row) => row.key },
  { name: 'spentUsd', title: 'raised to USD', kind: 'usd', value: (row) => row.spentNanoUsd },
];

/** Runs `reconcile ...` and returns the exit code: 0 done, 1 failed, 2 a wrong command line or config. */
export async function runReconcileCommand(argv: string[], io: CommandIo, env: NodeJS.ProcessEnv): Promise<number> {
  try {
    const { values } = parseCommandLine(argv, OPTIONS);
    if (values.help) {
      io.stdout.write(USAGE);
      return EXIT_OK;
    }
    const format = outputFormat(values);
    const path = env.TOLLGATE_CONFIG;
    if (!path) throw new UsageError('reconcile needs TOLLGATE_CONFIG: the config names the budgets and the ledger');
    const config = parseConfig(readFileSync(path, 'utf8'), `TOLLGATE_CONFIG (${path})`);
    const redisUrl = env.REDIS_URL || config.redisUrl;
    if (!config.postgresUrl || !redisUrl)
      throw new UsageError(
        'reconcile needs a PostgreSQL ledger (postgresUrl) and Redis (REDIS_URL or redisUrl): memory budgets live and die with their process',
      );
    const report = await reconcileBudgets(config, redisUrl);
    const summary = `${report.restored.length} of ${report.checked} budget scope(s) raised to the ledger\n`;
    if (format === 'table') {
      if (report.restored.length > 0) io.stdout.write(`${formatRows(format, COLUMNS, report.restored)}\n`);
      io.stdout.write(summary);
    } else {
      io.stdout.write(formatRows(format, COLUMNS, report.restored));
      io.stderr.write(summary);
    }
    return EXIT_OK;
  } catch (error) {
    return commandFailure(error, 'tollgate reconcile', io);
  }
}
