// The audit trail in this process's memory: the fallback when there is no ledger database.
import { TollgateError } from '../errors.js';
import { actionMatches, auditEntryOf } from './entry.js';
import type { AuditAttempt, AuditConclusion, AuditPage, AuditQuery, AuditStore } from './entry.js';

export interface MemoryAuditStoreOptions {
  /** Entries kept; past it the oldest go (a process's memory is no archive). @default 10000 */
  maxEntries?: number;
}

/** An append-only audit store in memory: lost on restart, so the gateway uses the ledger's database when it has one. */
export function memoryAuditStore(options: MemoryAuditStoreOptions = {}): AuditStore {
  const maxEntries = options.maxEntries ?? 10_000;
  if (!Number.isInteger(maxEntries) || maxEntries < 1)
    throw new TollgateError('ERR_TG_CORE_INVALID_AUDIT', 'memoryAuditStore maxEntries must be a positive integer');
  let nextSeq = 1;
  const attempts: { seq: number; attempt: AuditAttempt }[] = [];
  const conclusions = new Map<string, AuditConclusion>();
  return {
    async attempt(attempt) {
      attempts.push({ seq: nextSeq++, attempt: structuredClone(attempt) });
      if (attempts.length > maxEntries) conclusions.delete(attempts.shift()!.attempt.id);
    },
    async conclude(conclusion) {
      // Append-only: an entry's outcome is written once.
      if (!conclusions.has(conclusion.id)) conclusions.set(conclusion.id, structuredClone(conclusion));
    },
    async list(query: AuditQuery): Promise<AuditPage> {
      const before = query.cursor === undefined ? Infinity : Number(query.cursor);
      const since = query.since === undefined ? -Infinity : Date.parse(query.since);
      const until = query.until === undefined ? Infinity : Date.parse(query.until);
      const page = [];
      for (let i = attempts.length - 1; i >= 0 && page.length <= query.limit; i--) {
        const { seq, attempt } = attempts[i]!;
        if (seq >= before) continue;
        const at = Date.parse(attempt.at);
        if (at < since || at >= until) continue;
        const entry = auditEntryOf(attempt, conclusions.get(attempt.id));
        if (query.actor !== undefined && entry.actor !== query.actor) continue;
        if (query.action !== undefined && !actionMatches(entry.action, query.action)) continue;
        if (query.target !== undefined && entry.target !== query.target) continue;
        page.push({ seq, entry: structuredClone(entry) });
      }
      const more = page.length > query.limit;
      const shown = page.slice(0, query.limit);
      return { entries: shown.map(({ entry }) => entry), nextCursor: more ? String(shown.at(-1)!.seq) : null };
    },
  };
}
