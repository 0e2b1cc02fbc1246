// packages/cli/examples/report.ts: the report command alone (`report --by tenant --since 7d --postgres <url>` prints a table).
import { runReportCommand } from '@tollgate/cli';

process.exitCode = await runReportCommand(process.argv.slice(2));
