// `tollgate <keys|report|reconcile> ...`: the operator's command line (key management, usage report, budget spend rebuild).
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { runKeysCommand } from '@tollgate/auth';
import { createPricing } from '@tollgate/core';
import { runReportCommand } from '@tollgate/metering';
import { createBudgetGuard } from './budget-setup.js';
import { parseConfig } from './config.js';
import { rebuildFromLedger } from './spend-rebuild.js';
import { createStores } from './stores.js';

const HELP = `Usage: pnpm tollgate <command> ...

  keys create|list|revoke|rotate ...   Manage API keys in a config file (--config) or in Redis (--redis).
  report --by tenant --since 7d ...    Spend and tokens from the PostgreSQL usage ledger;
                                       with --outcomes, cost per outcome per tenant or feature.
  reconcile                            Raise every budget's spend in Redis to what the PostgreSQL
                                       ledger recorded (after Redis lost data); never lowers one.
                                       Reads TOLLGATE_CONFIG (postgresUrl, budgets) and REDIS_URL.

Run "pnpm tollgate <command> --help" for the options of a command.
`;

/**
 * `report` reads the ledger the proxy writes: without `--postgres`, the `postgresUrl` (and its
 * schema and table) of the TOLLGATE_CONFIG file are used.
 */
function reportArguments(argv: string[], env: NodeJS.ProcessEnv): string[] {
  const path = env.TOLLGATE_CONFIG;
  const given = (flag: string) => argv.some((arg) => arg === flag || arg.startsWith(`${flag}=`));
  if (!path || given('--postgres') || argv.includes('--help') || argv.includes('-h')) return argv;
  const config = parseConfig(readFileSync(path, 'utf8'), `TOLLGATE_CONFIG (${path})`);
  if (!config.postgresUrl) return argv;
  const extra = [`--postgres=${config.postgresUrl}`];
  if (config.postgresSchema && !given('--schema')) extra.push(`--schema=${config.postgresSchema}`);
  if (config.postgresTable && !given('--table')) extra.push(`--table=${config.postgresTable}`);
  return [...argv, ...extra];
}

/** `reconcile`: the proxy's budgets, rebuilt from its ledger into its Redis. */
async function runReconcile(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(
      'Usage: TOLLGATE_CONFIG=config.json [REDIS_URL=...] pnpm tollgate reconcile\n\nRaises every budget scope of the current period to the spend the PostgreSQL ledger recorded for it, less top-up credits; never lowers one.\n',
    );
    return 0;
  }
  const path = env.TOLLGATE_CONFIG;
  if (!path) {
    process.stderr.write('reconcile needs TOLLGATE_CONFIG: the config names the budgets and the PostgreSQL ledger.\n');
    return 2;
  }
  const config = parseConfig(readFileSync(path, 'utf8'), `TOLLGATE_CONFIG (${path})`);
  const redisUrl = env.REDIS_URL || config.redisUrl;
  if (!config.postgresUrl || !redisUrl) {
    process.stderr.write(
      'reconcile needs a PostgreSQL ledger (postgresUrl) and Redis (REDIS_URL or redisUrl): memory budgets live and die with their process.\n',
    );
    return 2;
  }
  const stores = await createStores({ redisUrl, ...(config.redisPrefix ? { redisPrefix: config.redisPrefix } : {}) });
  const pool = new pg.Pool({ connectionString: config.postgresUrl, max: 1 });
  const guard = createBudgetGuard(config, stores, createPricing({ models: { ...config.models } }), () => undefined);
  try {
    const report = await rebuildFromLedger(config, guard, pool);
    for (const { key, spentNanoUsd } of report.restored)
      process.stdout.write(`raised ${key} to ${spentNanoUsd} nano-USD\n`);
    process.stdout.write(`${report.restored.length} of ${report.checked} budget scope(s) raised to the ledger\n`);
    return 0;
  } finally {
    await guard.close();
    await pool.end();
    await stores.close();
  }
}

export async function runCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'keys':
      return runKeysCommand(rest);
    case 'report':
      return runReportCommand(reportArguments(rest, process.env));
    case 'reconcile':
      return runReconcile(rest, process.env);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`Unknown command "${command}".\n\n${HELP}`);
      return 2;
  }
}
