// @tollgate/metering: meter() (estimate before, usage read on the way, one record after), usage sinks, the usage spool and the report CLI.
// The sinks that need pg, prom-client or pino have their own doors: @tollgate/metering/postgres, /prometheus, /log.
export { meter } from './meter.js';
export { findUsageObject } from './response-tap.js';
export type { MeterOptions } from './meter.js';
export { toolMeter } from './tool-meter.js';
export type { MeteredToolCall, PricedToolCall, ToolCallOutcome, ToolMeterOptions } from './tool-meter.js';
export { METERING_TRACER_NAME } from './call-span.js';
export { BatchQueue, logOnce } from './sink.js';
export type { BatchOptions, SinkErrorHandler, UsageSink } from './sink.js';
export { openUsageSpool } from './usage-spool.js';
export type { SpoolReplay, UsageSpool, UsageSpoolOptions } from './usage-spool.js';
export { jsonlSink } from './jsonl-sink.js';
export type { JsonlSinkOptions } from './jsonl-sink.js';
export {
  aggregateUsage,
  creditTableName,
  insertUsageRecords,
  ledgerMigrationSql,
  ledgerTableName,
  migrateUsageLedger,
  outcomeTableName,
  postgresSpendSource,
  USAGE_GROUPINGS,
} from './postgres-ledger.js';
export type {
  AggregateOptions,
  LedgerLocation,
  LedgerSpendSource,
  CallerSpendRow,
  RecordSpendRow,
  Queryable,
  UsageAggregate,
  UsageGrouping,
} from './postgres-ledger.js';
export { postgresCreditJournal } from './credit-journal.js';
export type { CreditOperationRow, CreditScopeRow, LedgerCreditJournal } from './credit-journal.js';
export { recentUsage, usageByProvider, usageOverTime } from './ledger-queries.js';
export { dataDirLayout, ledgerClient, serveLedger } from './ledger-socket.js';
export { costPerOutcome, OUTCOME_GROUPINGS, recordOutcome } from './outcomes.js';
export type {
  OutcomeCost,
  OutcomeCostOptions,
  OutcomeGrouping,
  OutcomeReport,
  OutcomeSubject,
  RecordedOutcome,
} from './outcomes.js';
export type {
  ProviderUsage,
  ProviderUsageOptions,
  RecentUsage,
  RecentUsageOptions,
  RecordCursor,
  SeriesSplit,
  UsageFilter,
  UsageOverTimeOptions,
  UsagePoint,
} from './ledger-queries.js';
export {
  runReportCommand,
  formatOutcomeReport,
  formatUsageReport,
  ledgerSource,
  openLedger,
} from './report-command.js';
export type { LedgerSource, OpenLedger, ReportDefaults, ReportIo } from './report-command.js';
