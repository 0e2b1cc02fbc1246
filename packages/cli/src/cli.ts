// `tollgate <keys|tenants|budgets|report|ledger|reconcile|reconcile-provider> ...`: the operator's command line. A command's code is loaded when it runs, so the
// help answers at once.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { commandFailure, EXIT_OK, EXIT_USAGE, pickCommand } from './command-line.js';
import type { CommandIo } from './command-line.js';
import type { ReportDefaults } from './ledger-source.js';

interface Command {
  run(argv: string[], io: CommandIo, env: NodeJS.ProcessEnv): Promise<number>;
}

const HELP = `Usage: tollgate <command> [options]

Commands:
  keys create|list|revoke|rotate|delete ...   Manage API keys in a config file (--config) or in Redis (--redis).
  tenants list|get|create|update|delete|import
                                              Tenants kept as data, through a running gateway's
                                              /admin/tenants (TOLLGATE_ADMIN_KEY, --url).
  budgets drift|repair|holds [<budget>]       Each budget's counter against the usage ledger, its repair
                                              and its holds, through a running gateway's /admin/budgets.
  report [--by tenant|feature|user|model|day] Spend and tokens from the usage ledger (PostgreSQL, or the
                                              embedded ledger of a data directory); with --outcomes,
                                              cost per outcome per tenant or feature.
  reconcile                                   Raise every budget's spend in Redis to what the PostgreSQL
                                              ledger recorded (after Redis lost data); never lowers one.
  ledger partition                            Partition a usage ledger made before partitions by month
                                              (what usageRetention needs to drop old months).
  reconcile-provider --provider openai|anthropic --from YYYY-MM-DD --to YYYY-MM-DD
                                              What the provider billed per day and model beside the
                                              ledger; exit 1 when a difference passes the threshold.

keys list, report and reconcile print a table, or --format csv|json. Money is in USD. --version prints the version.
keys --config checks every write as the gateway checks the file (a wrong change is refused, the file untouched),
and says whether the running gateways reading the file took it: see "tollgate keys --help".
TOLLGATE_CONFIG names the proxy's config: report reads its ledger, reconcile its budgets and ledger.
Exit code 0 done, 1 failed, 2 a wrong command line.

Run "tollgate <command> --help" for the options of a command.
`;

/**
 * `report` reads the ledger the proxy writes: the `postgresUrl` (and its schema and table) of the TOLLGATE_CONFIG file,
 * else the embedded ledger of its `dataDir` (TOLLGATE_DATA_DIR wins, as it does for the proxy).
 */
async function configLedger(env: NodeJS.ProcessEnv): Promise<ReportDefaults> {
  const path = env.TOLLGATE_CONFIG;
  const dataDir = env.TOLLGATE_DATA_DIR || undefined;
  if (!path) return { dataDir };
  const { parseConfig } = await import('@tollgate/gateway');
  const config = parseConfig(readFileSync(path, 'utf8'), `TOLLGATE_CONFIG (${path})`);
  return {
    postgres: config.postgresUrl,
    schema: config.postgresSchema,
    table: config.postgresTable,
    dataDir: dataDir ?? config.dataDir,
  };
}

const COMMANDS: Readonly<Record<string, Command>> = {
  keys: {
    // Every write is checked as the gateway checks the file it writes to (key-file-checks.ts).
    run: async (argv, io, env) => {
      const checks = await import('./key-file-checks.js');
      return (await import('./keys-command.js')).runKeysCommand(argv, io, {
        configProblems: checks.keyFileProblems,
        storedKeyProblems: checks.storedKeyProblems(env, io),
      });
    },
  },
  tenants: {
    run: async (argv, io, env) => (await import('./tenants-command.js')).runTenantsCommand(argv, io, env),
  },
  budgets: {
    run: async (argv, io, env) => (await import('./budgets-command.js')).runBudgetsCommand(argv, io, env),
  },
  report: {
    run: async (argv, io, env) =>
      (await import('./report-command.js')).runReportCommand(argv, io, () => configLedger(env)),
  },
  ledger: {
    run: async (argv, io, env) =>
      (await import('./ledger-command.js')).runLedgerCommand(argv, io, () => configLedger(env)),
  },
  reconcile: {
    run: async (argv, io, env) => (await import('./reconcile-command.js')).runReconcileCommand(argv, io, env),
  },
  'reconcile-provider': {
    run: async (argv, io, env) =>
      (await import('./reconcile-provider-command.js')).runReconcileProviderCommand(argv, io, env, () =>
        configLedger(env),
      ),
  },
};

/** Runs `tollgate <command> ...` and returns the exit code: 0 done, 1 failed, 2 a wrong command line. */
export async function runCli(
  argv: string[],
  io: CommandIo = { stdout: process.stdout, stderr: process.stderr },
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(HELP);
    return EXIT_USAGE;
  }
  if (name === 'help' || name === '--help' || name === '-h') {
    io.stdout.write(HELP);
    return EXIT_OK;
  }
  if (name === '--version' || name === '-v') {
    io.stdout.write(`tollgate ${createRequire(import.meta.url)('../package.json').version}\n`);
    return EXIT_OK;
  }
  let command: Command;
  try {
    command = pickCommand(name, COMMANDS);
  } catch (error) {
    return commandFailure(error, 'tollgate', io);
  }
  return command.run(rest, io, env);
}
