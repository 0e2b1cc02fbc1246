// Rebuilding budget spend from a usage ledger when the store lost it (Redis restarted without persistence, a wiped key).
import { periodWindow, TollgateError } from '@tollgate/core';
import type { Identity } from '@tollgate/core';
import { isCalendarPeriod } from '@tollgate/core/options';
import { withTimeout } from '@tollgate/core/store-contracts';
import type { LedgerScope } from '@tollgate/core/store-contracts';
import { budgetWindow } from './budget-plan.js';
import type { ResolvedBudget } from './budget-plan.js';
import type { BudgetBook } from './budget-status.js';
import { restoreCredits } from './credit-journal.js';
import type { ScopeCredit } from './credit-journal.js';

/** What the usage ledger recorded for one caller: the records of one key, end user, tenant, feature and model. */
export interface CallerSpend {
  keyId: string | null;
  userId: string | null;
  tenantId: string | null;
  feature: string | null;
  /** The model as billed: a model's budget within the tenant is charged by it. */
  model: string | null;
  spentNanoUsd: number;
}

/** One record with spend, as a rebuild reads the most recent ones: one by one, so it can say which it read. */
export interface RecordSpend extends CallerSpend {
  /** The record's id (the usage ledger's key). */
  id: string;
  /** When its call started (the record's timestamp, epoch ms): the period it counts in. */
  startedAt: number;
}

/** Where spend is recorded durably (`postgresSpendSource` from @tollgate/metering is one). */
export interface SpendSource {
  /**
   * Nano-USD recorded per caller with records started in [since, until) (epoch ms; callers with nothing recorded may
   * be left out); with `finishedBefore`, only the records whose call finished before it (timestamp + latency).
   */
  spentByCaller(since: number, until: number, finishedBefore?: number): Promise<CallerSpend[]>;
  /**
   * The records with spend started in [since, until) whose call finished at or after `finishedFrom`, in one read.
   * A source that has it lets a rebuild record what it read (a cut), so a settle of a reservation the store lost does
   * not charge a call the rebuild already counted (see the budget README, "After Redis loses its data").
   */
  recordsFinishedSince?(since: number, until: number, finishedFrom: number): Promise<RecordSpend[]>;
}

/**
 * How long a usage record may take to reach the usage ledger after its call finished (the sinks' batches and retries,
 * the processes' clocks apart): a rebuild counts every record that finished this long before it read as read, and
 * names those that finished since one by one (its cut).
 */
export const RECORD_DELIVERY_MS = 60_000;

export interface RebuildReport {
  /** Ledger scopes asked about. */
  checked: number;
  /** Scopes whose spend was below the usage ledger's, raised to it. */
  restored: { key: string; spentNanoUsd: number }[];
  /** Scopes whose credit was below the credit journal's (the guard's `creditJournal`), raised to it. */
  credited: { key: string; creditNanoUsd: number }[];
  /** The ledger slots of every scope the rebuild covered (for a store's rebuild gate). */
  slots: (string | undefined)[];
}

/** When spend for the scope's window started counting: its calendar period's start, or its rolling window's. */
function sinceOf(budget: ResolvedBudget, expiresAt: number, now: number): number {
  if (isCalendarPeriod(budget.period)) return periodWindow(budget.period, now, budget.timezone).start;
  return expiresAt - budget.windowMs;
}

/** The identity a usage record's caller had, as far as the record tells (a `budgets` function sees these fields). */
function identityOf(caller: CallerSpend): Identity {
  const identity: Identity = { keyId: caller.keyId ?? '', scopes: [], authMethod: 'api_key' };
  if (caller.userId !== null) identity.userId = caller.userId;
  if (caller.tenantId !== null) identity.tenantId = caller.tenantId;
  if (caller.feature !== null) identity.feature = caller.feature;
  return identity;
}

function callerKey(caller: CallerSpend): string {
  return JSON.stringify([caller.keyId, caller.userId, caller.tenantId, caller.feature, caller.model]);
}

/** One ledger scope to rebuild: what the usage ledger holds for it is the sum over the callers charged to it. */
interface ScopeToRebuild {
  scope: LedgerScope;
  since: number;
  callers: Set<string>;
}

/**
 * Every ledger scope the recorded calls were charged to, found the way a reserve finds them: each caller with spend
 * since the oldest period start is asked of the plan's `forCall` (its own budgets and its model's), so end users'
 * budgets (`tenantUsers`), model budgets, wildcards and budgets from code are all covered, every period of each.
 */
async function scopesOfCallers(book: BudgetBook, callers: readonly CallerSpend[], now: number) {
  const scopes = new Map<string, ScopeToRebuild>();
  const slots = new Set<string | undefined>([undefined]);
  /** The slots each caller's scopes are in: a record's id goes to those of the rebuild's cut. */
  const slotsOf = new Map<string, Set<string | undefined>>();
  const add = (budget: ResolvedBudget, caller: string | undefined) => {
    slots.add(budget.slot);
    if (caller !== undefined) {
      const own = slotsOf.get(caller) ?? new Set<string | undefined>();
      own.add(budget.slot);
      slotsOf.set(caller, own);
    }
    for (const scope of budgetWindow(budget, now).scopes) {
      let entry = scopes.get(scope.key);
      if (!entry) {
        entry = { scope, since: sinceOf(budget, scope.expiresAt, now), callers: new Set() };
        scopes.set(scope.key, entry);
      }
      if (caller !== undefined) entry.callers.add(caller);
    }
  };
  // Budgets with a fixed id are checked even without spend: their slots are rebuilt as well.
  for (const budget of book.plan.configured()) add(budget, undefined);
  for (const caller of callers) {
    for (const budget of await book.plan.forCall(identityOf(caller), caller.model ?? undefined))
      add(budget, callerKey(caller));
  }
  return { scopes: [...scopes.values()], slots: [...slots], slotsOf };
}

/** The ids of the records read one by one, per slot their callers' scopes are in: the rebuild's cut. */
function cutIds(
  recent: readonly RecordSpend[],
  slotsOf: ReadonlyMap<string, ReadonlySet<string | undefined>>,
): Map<string | undefined, string[]> {
  const ids = new Map<string | undefined, string[]>();
  for (const row of recent) {
    for (const slot of slotsOf.get(callerKey(row)) ?? []) {
      const list = ids.get(slot) ?? [];
      list.push(row.id);
      ids.set(slot, list);
    }
  }
  return ids;
}

/** The oldest instant any budget counts from: every calendar period is at most a quarter, a rolling window any length. */
function earliestStart(book: BudgetBook, now: number): number {
  let earliest = periodWindow('quarter', now, book.plan.timezone).start;
  for (const budget of book.plan.configured())
    for (const scope of budgetWindow(budget, now).scopes)
      earliest = Math.min(earliest, sinceOf(budget, scope.expiresAt, now));
  return earliest;
}

/**
 * Raises every budget scope's spend to what `source` recorded for it, and (with the guard's credit journal) its top-up
 * credit to what the journal recorded, in the same pass; the credit is raised apart from the spend, never netted.
 * A store that lost its data while traffic went on holds only the spend since; one that lost nothing is at or above
 * the usage ledger (which lags by its batching) and is left alone. Live reservations are not in a usage ledger; they
 * settle as usual. Where the store has a rebuild gate, the caller marks `report.slots` rebuilt once it trusts the
 * ledger complete (see the budget README, "After Redis loses its data").
 */
export async function rebuildSpend(book: BudgetBook, source: SpendSource): Promise<RebuildReport> {
  const { ledger } = book;
  if (typeof ledger.restoreSpent !== 'function') {
    throw new TollgateError(
      'ERR_TG_BUDGET_NO_RESTORE',
      'this ledger cannot restore spend (it has no restoreSpent()); use the memory or Redis ledger',
    );
  }
  const now = book.now();
  const until = now + 1;
  const earliest = earliestStart(book, now);
  // The cut: the records that finished before it summed (every one is in the ledger by now), those since read one by
  // one in a single read, so what the rebuild counts is exactly what its cut names. A source that cannot list records
  // is read whole, and its cut is the read itself: a lost settle of a call that finished before it is counted once (by
  // the ledger), never twice; a record that reaches that ledger later than its settle is under-counted instead.
  const cut = source.recordsFinishedSince ? now - RECORD_DELIVERY_MS : until;
  const recent = source.recordsFinishedSince ? await source.recordsFinishedSince(earliest, until, cut) : [];
  const summed = await source.spentByCaller(earliest, until, cut);
  const callers = [...summed, ...recent].filter((c) => c.spentNanoUsd > 0);
  const { scopes, slots, slotsOf } = await scopesOfCallers(book, callers, now);
  // Every slot the rebuild covers gets the cut, those without a recent record too: a lost settle there of a call that
  // finished before it was read with the sums (found by the model-based test: the slot had no cut, the call counted twice).
  const ids = cutIds(recent, slotsOf);
  for (const slot of slots) if (!ids.has(slot)) ids.set(slot, []);
  await ledger.rebuildGate?.recordCut?.(cut, ids);
  const withRecent = (since: number, rows: readonly CallerSpend[]) => {
    const bySpender = new Map(rows.map((row) => [callerKey(row), row.spentNanoUsd] as const));
    for (const row of recent) {
      if (row.startedAt < since) continue;
      const key = callerKey(row);
      bySpender.set(key, (bySpender.get(key) ?? 0) + row.spentNanoUsd);
    }
    return bySpender;
  };
  // One question to the ledger per start of a window (a handful: the periods in use, a rolling budget's buckets).
  const bySince = new Map<number, Promise<Map<string, number>>>([
    [earliest, Promise.resolve(withRecent(earliest, summed))],
  ]);
  const spentSince = (since: number) => {
    let asked = bySince.get(since);
    if (!asked) {
      asked = source.spentByCaller(since, until, cut).then((rows) => withRecent(since, rows));
      bySince.set(since, asked);
    }
    return asked;
  };
  const report: RebuildReport = { checked: 0, restored: [], credited: [], slots };
  for (const { scope, since, callers: charged } of scopes) {
    report.checked++;
    if (charged.size === 0) continue;
    const recorded = await spentSince(since);
    let spent = 0;
    for (const caller of charged) spent += recorded.get(caller) ?? 0;
    if (spent <= 0) continue;
    if (await withTimeout(ledger.restoreSpent(scope, spent, scope.expiresAt), book.storeTimeoutMs, 'restoreSpent'))
      report.restored.push({ key: scope.key, spentNanoUsd: spent });
  }
  if (book.credits) await restoreCreditsInto(report, book, book.credits.credits(now));
  return report;
}

/** The journal's credits raised in the store, their slots rebuilt with the rest. */
async function restoreCreditsInto(report: RebuildReport, book: BudgetBook, journaled: Promise<ScopeCredit[]>) {
  const credits = await journaled;
  for (const credit of credits) if (!report.slots.includes(credit.slot)) report.slots.push(credit.slot);
  for (const credit of await restoreCredits(book, credits))
    report.credited.push({ key: credit.key, creditNanoUsd: credit.creditNanoUsd });
}
