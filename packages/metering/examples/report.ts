// packages/metering/examples/report.ts: a command line for the ledger (`report --by tenant --since 7d --postgres <url>` prints a table).
import { runReportCommand } from '@tollgate/metering';

process.exitCode = await runReportCommand(process.argv.slice(2));
