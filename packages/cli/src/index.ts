// @tollgate/cli: the operator's command line, `tollgate <keys|tenants|budgets|report|reconcile|reconcile-provider> ...`,
// to run from code as the `tollgate` bin runs it; `keys` and `report` also alone, with their own defaults.
export { runCli } from './cli.js';
export { runKeysCommand } from './keys-command.js';
export type { KeysCommandOptions } from './keys-command.js';
export { runReportCommand } from './report-command.js';
export type { ReportDefaults } from './ledger-source.js';
