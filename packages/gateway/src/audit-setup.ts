// The gateway's one audit trail: in the ledger's database when there is one, else in memory; each entry on the alert stream.
import { auditTrail, memoryAuditStore } from '@tollgate/core/audit';
import type { AuditActor, AuditChange, AuditEntry, AuditStore, AuditTrail } from '@tollgate/core/audit';
import type { PriceLoad } from '@tollgate/core/costs';
import { postgresAuditStore } from '@tollgate/metering';
import type { LedgerLocation, Queryable } from '@tollgate/metering';

/** Who changes what a config file holds: whoever wrote the file, which the gateway cannot tell. */
export const CONFIG_FILE_ACTOR: AuditActor = { actor: 'config file', role: 'admin', via: 'file-watch' };

interface AuditSetupParts {
  /** The store given by the caller (GatewayDeps.audit), which wins. */
  store?: AuditStore;
  /** The ledger's database: the audit table sits beside the usage table. */
  ledger: Queryable | undefined;
  location: LedgerLocation | undefined;
  /** The alert stream's `audit.event`, when the gateway has one. */
  onEntry: ((entry: AuditEntry) => void) | undefined;
  log: (line: string) => void;
}

/** The audit trail every admin write of this gateway goes through (docs/audit.md). */
export function createAuditTrail(parts: AuditSetupParts): AuditTrail {
  const store =
    parts.store ?? (parts.ledger ? postgresAuditStore(parts.ledger, parts.location ?? {}) : memoryAuditStore());
  return auditTrail({
    store,
    ...(parts.onEntry ? { onEntry: parts.onEntry } : {}),
    onConclusionError: (error, attempt) =>
      parts.log(
        `tollgate audit: the outcome of ${attempt.action} ${attempt.path} (${attempt.id}) was not written: ${
          error instanceof Error ? error.message : String(error)
        }`,
      ),
  });
}

/** Who changes the prices a price source holds: whoever published it (`prices.source`). */
const PRICE_SOURCE_ACTOR: AuditActor = { actor: 'price source', role: 'admin', via: 'price-refresh' };

/** Price changes an entry names; the rest are counted (`GET /admin/prices` lists them all). */
const RECORDED_PRICE_CHANGES = 200;

/** A load that changed the prices in use, as an audit entry: the versions before and after, what changed. */
export function priceLoadChange(load: PriceLoad): AuditChange {
  return {
    ...PRICE_SOURCE_ACTOR,
    action: 'prices.refresh',
    target: 'prices',
    source: load.source,
    outcome: 'done',
    before: { version: load.before },
    after: {
      version: load.after,
      changed: load.changes.length,
      changes: load.changes.slice(0, RECORDED_PRICE_CHANGES),
    },
  };
}
