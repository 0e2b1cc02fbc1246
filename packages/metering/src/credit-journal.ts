// Budget top-ups kept in the SQL usage ledger's database (PostgreSQL or PGlite): the durable record of credit.
import { creditTableName, migrateOnce, migrateUsageLedger } from './postgres-ledger.js';
import type { LedgerLocation, Queryable } from './postgres-ledger.js';

/** A budget scope of one period, as @tollgate/budget's `CreditScope`. */
interface CreditScopeRow {
  key: string;
  slot?: string;
  expiresAt: number;
}

/** One operator action on credit, as @tollgate/budget's `CreditOperation`. */
interface CreditOperationRow {
  id: string;
  kind: 'top-up' | 'carried' | 'reset';
  at: number;
  entries: readonly (CreditScopeRow & { nanoUsd: number })[];
}

/** What @tollgate/budget's `creditJournal` option takes (the shape of its `CreditJournal`). */
interface LedgerCreditJournal {
  record(operation: CreditOperationRow): Promise<void>;
  withdraw(id: string): Promise<void>;
  credits(
    now: number,
    keys?: readonly string[],
  ): Promise<(CreditScopeRow & { creditNanoUsd: number; resetAt?: number })[]>;
}

interface CreditRow {
  scope_key: string;
  slot: string | null;
  period_end: Date | string;
  credit: string;
  reset_at: Date | string | null;
}

/**
 * Budget top-ups (and resets) recorded in the usage ledger's database, in `<table>_credits` (made by the ledger's
 * migration, which runs here before the first write): `budgetGuard({ creditJournal: postgresCreditJournal(pool) })`.
 * A scope's credit is the sum of its rows after its last reset, for periods not over yet, and its `resetAt` that
 * reset's time; an action written again under its id is stored once.
 */
export function postgresCreditJournal(db: Queryable, location: LedgerLocation = {}): LedgerCreditJournal {
  const table = creditTableName(location);
  const migrate = migrateOnce(() => migrateUsageLedger(db, location));
  return {
    async record({ id, kind, at, entries }) {
      if (entries.length === 0) return;
      await migrate();
      const values: unknown[] = [];
      const rows = entries.map((entry) => {
        values.push(id, entry.key, entry.slot ?? null, kind, entry.nanoUsd);
        values.push(new Date(entry.expiresAt).toISOString(), new Date(at).toISOString());
        const n = values.length;
        return `($${n - 6}, $${n - 5}, $${n - 4}, $${n - 3}, $${n - 2}, $${n - 1}, $${n})`;
      });
      await db.query(
        `INSERT INTO ${table} (id, scope_key, slot, kind, amount_nano_usd, period_end, ts) VALUES ${rows.join(', ')}
         ON CONFLICT (id, scope_key) DO NOTHING`,
        values,
      );
    },
    async withdraw(id) {
      await migrate();
      await db.query(`DELETE FROM ${table} WHERE id = $1 AND kind = 'top-up'`, [id]);
    },
    async credits(now, keys) {
      const values: unknown[] = [new Date(now).toISOString()];
      if (keys) values.push([...keys]);
      const result = await db
        .query<CreditRow>(
          `SELECT scope_key, max(slot) AS slot, period_end,
                  coalesce(sum(amount_nano_usd) FILTER (WHERE last_reset IS NULL OR seq > last_reset), 0) AS credit,
                  max(ts) FILTER (WHERE seq = last_reset) AS reset_at
             FROM (SELECT *,
                          max(seq) FILTER (WHERE kind = 'reset') OVER (PARTITION BY scope_key, period_end) AS last_reset
                     FROM ${table} WHERE period_end > $1${keys ? ' AND scope_key = ANY($2)' : ''}) AS journaled
            GROUP BY scope_key, period_end`,
          values,
        )
        .catch((error: unknown) => {
          // A journal not created yet (no top-up was ever recorded) holds nothing.
          if ((error as { code?: unknown }).code === '42P01') return { rows: [] as CreditRow[] };
          throw error;
        });
      return result.rows.map((row) => ({
        key: row.scope_key,
        ...(row.slot === null ? {} : { slot: row.slot }),
        expiresAt: new Date(row.period_end).getTime(),
        creditNanoUsd: Number(row.credit),
        ...(row.reset_at === null ? {} : { resetAt: new Date(row.reset_at).getTime() }),
      }));
    },
  };
}
