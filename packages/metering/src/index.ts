// @tollgate/metering: meter() (estimate before, usage read on the way, one record after), usage sinks, the usage spool and the ledger's queries.
// The sinks that need pg, prom-client or pino have their own doors: @tollgate/metering/postgres, /prometheus, /log.
export { meter, usageDeliverer } from './meter.js';
export type { MeterOptions } from './meter.js';
export { toolMeter } from './tool-meter.js';
export type { MeteredToolCall, PricedToolCall, ToolCallOutcome } from '@tollgate/core/provider-call';
export { realtimeMeter } from './realtime-meter.js';
export type { MeteredRealtimeResponse, RealtimeOutcome, RealtimeResponseAsk } from './realtime-meter.js';
export { METERING_TRACER_NAME } from './call-span.js';
export type { UsageSink } from './sink.js';
export { openUsageSpool } from './usage-spool.js';
export type { SpoolReplay, UsageSpool } from './usage-spool.js';
export { jsonlSink } from './jsonl-sink.js';
export {
  keepUsagePartitions,
  migrateUsageLedger,
  partitionUsageLedger,
  postgresSpendSource,
} from './postgres-ledger.js';
export { MIN_RETENTION_MS } from './usage-partitions.js';
export { aggregateUsage, USAGE_GROUPINGS } from './usage-aggregate.js';
export { auditMigrationSql, auditTableName, postgresAuditStore } from './postgres-audit.js';
export type { LedgerLocation, Queryable } from './postgres-ledger.js';
export type { UsageAggregate, UsageGrouping } from './usage-aggregate.js';
export { postgresCreditJournal } from './credit-journal.js';
export { recentUsage, usageByProvider, usageOverTime } from './ledger-queries.js';
export { dataDirLayout, serveLedger } from './ledger-socket.js';
export { costPerOutcome, OUTCOME_GROUPINGS, recordOutcome } from './outcomes.js';
export type { OutcomeCost, OutcomeGrouping, OutcomeReport, RecordedOutcome } from './outcomes.js';
export type { ProviderUsage, RecordCursor, UsageFilter, UsagePoint } from './ledger-queries.js';
export { openLedger } from './open-ledger.js';
export type { LedgerSource, OpenLedger } from './open-ledger.js';
