// @tollgate/core/audit: the audit trail of admin writes: its entry, its store contract, its middleware and listing.
export { auditTrail, noteAudit, setAuditActor, ADMIN_KEY_ACTOR } from './audit/audit-trail.js';
export type { AuditChange, AuditNote, AuditTrail, AuditTrailOptions } from './audit/audit-trail.js';
export { auditListing, auditCsv, readAuditQuery, AUDIT_CSV_COLUMNS } from './audit/audit-listing.js';
export { memoryAuditStore } from './audit/memory-audit-store.js';
export type { MemoryAuditStoreOptions } from './audit/memory-audit-store.js';
export { actionMatches, auditEntryOf, withoutSecrets } from './audit/entry.js';
export type {
  AuditActor,
  AuditAttempt,
  AuditConclusion,
  AuditEntry,
  AuditOutcome,
  AuditPage,
  AuditQuery,
  AuditRole,
  AuditStore,
} from './audit/entry.js';
