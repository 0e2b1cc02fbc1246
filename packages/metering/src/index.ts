// @tollgate/metering: meter() (estimate before, usage read on the way, one record after), usage sinks, the usage spool and the report CLI.
// The sinks that need pg, prom-client or pino have their own doors: @tollgate/metering/postgres, /prometheus, /log.
export { meter } from './meter.js';
export type { MeterOptions } from './meter.js';
export { toolMeter } from './tool-meter.js';
export type { MeteredToolCall, PricedToolCall, ToolCallOutcome } from './tool-meter.js';
export { realtimeMeter } from './realtime-meter.js';
export type { MeteredRealtimeResponse, RealtimeOutcome, RealtimeResponseAsk } from './realtime-meter.js';
export { METERING_TRACER_NAME } from './call-span.js';
export type { UsageSink } from './sink.js';
export { openUsageSpool } from './usage-spool.js';
export type { SpoolReplay, UsageSpool } from './usage-spool.js';
export { jsonlSink } from './jsonl-sink.js';
export { aggregateUsage, migrateUsageLedger, postgresSpendSource } from './postgres-ledger.js';
export { auditMigrationSql, auditTableName, postgresAuditStore } from './postgres-audit.js';
export type { LedgerLocation, Queryable, UsageAggregate, UsageGrouping } from './postgres-ledger.js';
export { postgresCreditJournal } from './credit-journal.js';
export { recentUsage, usageByProvider, usageOverTime } from './ledger-queries.js';
export { dataDirLayout, serveLedger } from './ledger-socket.js';
export { costPerOutcome, recordOutcome } from './outcomes.js';
export type { OutcomeCost, OutcomeReport, RecordedOutcome } from './outcomes.js';
export type { ProviderUsage, RecordCursor, UsageFilter, UsagePoint } from './ledger-queries.js';
export {
  runReportCommand,
  formatOutcomeReport,
  formatUsageReport,
  ledgerSource,
  openLedger,
} from './report-command.js';
export type { ReportDefaults } from './report-command.js';
