// `pnpm tollgate <keys|report|reconcile> ...`: the gateway's operator command line.
import { runCli } from '@tollgate/gateway';

process.exitCode = await runCli(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
});
