// `pnpm tollgate <keys|report> ...`: the operator's command line (key management, usage report).
import { runKeysCommand } from '@tollgate/auth';

const HELP = `Usage: pnpm tollgate <command> ...

  keys create|list|revoke|rotate ...   Manage API keys in a config file (--config) or in Redis (--redis).
  report --by tenant --since 7d ...    Spend and tokens from the PostgreSQL usage ledger.

Run "pnpm tollgate <command> --help" for the options of a command.
`;

async function runReport(_argv: string[]): Promise<number> {
  process.stderr.write('The report command needs @tollgate/metering, which this build does not include yet.\n');
  return 1;
}

export async function runCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'keys':
      return runKeysCommand(rest);
    case 'report':
      return runReport(rest);
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
