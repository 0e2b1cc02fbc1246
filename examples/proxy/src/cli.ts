// `pnpm tollgate <keys|report> ...`: the operator's command line (key management, usage report).
import { readFileSync } from 'node:fs';
import { runKeysCommand } from '@tollgate/auth';
import { runReportCommand } from '@tollgate/metering';
import { parseConfig } from './config.js';

const HELP = `Usage: pnpm tollgate <command> ...

  keys create|list|revoke|rotate ...   Manage API keys in a config file (--config) or in Redis (--redis).
  report --by tenant --since 7d ...    Spend and tokens from the PostgreSQL usage ledger.

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

export async function runCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'keys':
      return runKeysCommand(rest);
    case 'report':
      return runReportCommand(reportArguments(rest, process.env));
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

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
