// Rebuilding budget spend from a usage ledger when the store lost it (Redis restarted without persistence, a wiped key).
import { periodWindow, TollgateError } from '@tollgate/core';
import type { Identity } from '@tollgate/core';
import { isCalendarPeriod } from '@tollgate/core/options';
import { BESIDE_REQUESTS, TimeSlice, withTimeout } from '@tollgate/core/store-contracts';
import type { LedgerScope } from '@tollgate/core/store-contracts';
import { inForceAt } from './budget-limits.js';
import { ledgerScopesAt } from './budget-plan.js';
import type { ResolvedBudget } from './budget-plan.js';
import type { BudgetBook } from './budget-status.js';
import { restoreCredits } from './credit-journal.js';
import type { ScopeCredit } from './credit-journal.js';

/** What the usage ledger recorded for one caller: the records of one key, end user, tenant, feature, model, session, team. */
export interface CallerSpend {
  keyId: string | null;
  userId: string | null;
  tenantId: string | null;
  feature: string | null;
  /** The model as billed: a model's budget within the tenant is charged by it. */
  model: string | null;
  /** The request's tags (a `budgets` function may decide by them); absent or null: none. */
  tags?: readonly string[] | null;
  /** The agent session the calls belong to (a session budget is charged by it); absent or null: none. */
  session?: string | null;
  /** The team of the tenant the calls were charged to (team and member budgets); absent or null: none. */
  team?: string | null;
  spentNanoUsd: number;
}

/** One record with spend, as a rebuild reads the most recent ones: one by one, so it can say which it read. */
export interface RecordSpend extends CallerSpend {
  /** The record's id (the usage ledger's key). */
  id: string;
  /** When its call started (the record's timestamp, epoch ms): the period it counts in. */
  startedAt: number;
  /** When its call finished (timestamp + latency, epoch ms): a reset forgets the calls that finished before it. */
  finishedAt: number;
}

/** Where spend is recorded durably (`postgresSpendSource` from @tollgate/metering is one). */
/**
 * The callers a read may keep to: those of one of `tenantIds` or with one of `keyIds` (a drift sample of a few
 * scopes). A source may answer more callers than that, never fewer.
 */
export interface CallerFilter {
  tenantIds: readonly string[];
  keyIds: readonly string[];
}

export interface SpendSource {
  /**
   * Nano-USD recorded per caller with records started in [since, until) (epoch ms; callers with nothing recorded may
   * be left out); with `finishedBefore`, only the records whose call finished before it (timestamp + latency); with
   * `finishedFrom`, only those whose call finished at or after it (a scope's last reset: what it forgot is left out);
   * with `only`, the callers it names at least.
   */
  spentByCaller(
    since: number,
    until: number,
    finishedBefore?: number,
    finishedFrom?: number,
    only?: CallerFilter,
  ): Promise<CallerSpend[]>;
  /**
   * The records with spend started in [since, until) whose call finished at or after `finishedFrom`, in one read
   * (with `only`, those of the callers it names at least).
   * A source that has it lets a rebuild record what it read (a cut), so a settle of a reservation the store lost does
   * not charge a call the rebuild already counted (see the budget README, "After Redis loses its data").
   */
  recordsFinishedSince?(
    since: number,
    until: number,
    finishedFrom: number,
    only?: CallerFilter,
  ): Promise<RecordSpend[]>;
}

/**
 * How long a usage record may take to reach the usage ledger after its call finished (the sinks' batches and retries,
 * the processes' clocks apart): a rebuild counts every record that finished this long before it read as read, and
 * names those that finished since one by one (its cut).
 */
const RECORD_DELIVERY_MS = 60_000;

/** A rebuild of many scopes gives the event loop a turn after about this many ms of its own work. */
const REBUILD_SLICE_MS = 4;

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

/**
 * When spend for the scope's window started counting: its calendar period's start, or its rolling window's; not before
 * the budget's `validFrom` (nothing was reserved against it before).
 */
function sinceOf(budget: ResolvedBudget, expiresAt: number, now: number): number {
  const start = isCalendarPeriod(budget.period)
    ? periodWindow(budget.period, now, budget.timezone).start
    : expiresAt - budget.windowMs;
  return Math.max(start, budget.validFrom);
}

/**
 * The identity fields a usage record keeps: all a rebuild can hand a `budgets` function. A key's own budget
 * (`keyBudget`) is found again by its key id (`keyBudgets`), so the plan may read it.
 */
const KEPT_FIELDS: ReadonlySet<string> = new Set([
  'keyId',
  'tenantId',
  'userId',
  'feature',
  'tags',
  'sessionId',
  'team',
  'keyBudget',
]);

/** Lets a `budgets` function read what a usage record keeps of its caller, and refuses the rest (see identityOf). */
const KEPT_ONLY: ProxyHandler<Identity> = {
  get(target, field, receiver) {
    // Symbols, `then` (an async function's result is checked for it) and what every object has (toJSON, toString)
    // read nothing of a caller.
    if (typeof field === 'symbol' || field === 'then' || field === 'toJSON' || field in Object.prototype)
      return Reflect.get(target, field, receiver) as unknown;
    if (KEPT_FIELDS.has(field)) return Reflect.get(target, field, receiver) as unknown;
    throw new TollgateError(
      'ERR_TG_BUDGET_NOT_REBUILDABLE',
      `the budgets function read identity.${field}, which the usage ledger does not keep: spend of its budgets ` +
        `cannot be rebuilt after the store lost it; decide budgets by ${[...KEPT_FIELDS].join(', ')}`,
    );
  },
};

/**
 * The identity a usage record's caller had, as far as the record tells: a `budgets` function that reads any other
 * field (a tier, scopes, a claim an identity hook added) would be told something the caller may not have had, and
 * its budgets left unrebuilt or rebuilt wrong: the rebuild refuses instead (ERR_TG_BUDGET_NOT_REBUILDABLE).
 */
function identityOf(caller: CallerSpend): Identity {
  const identity = { keyId: caller.keyId ?? '' } as Identity;
  // Not enumerable: a function may spread or serialize the identity it is given without reading them.
  Object.defineProperties(identity, { scopes: { value: [] }, authMethod: { value: 'api_key' } });
  if (caller.userId !== null) identity.userId = caller.userId;
  if (caller.tenantId !== null) identity.tenantId = caller.tenantId;
  if (caller.feature !== null) identity.feature = caller.feature;
  if (caller.tags) identity.tags = [...caller.tags];
  if (caller.session !== undefined && caller.session !== null) identity.sessionId = caller.session;
  if (caller.team !== undefined && caller.team !== null) identity.team = caller.team;
  return new Proxy(identity, KEPT_ONLY);
}

/**
 * Asks the plan once for a caller with nothing recorded, before any spend: a `budgets` function that reads a field the
 * usage ledger does not keep is refused at the first rebuild (at start), even with nothing in the ledger yet. Other
 * failures of a function given an identity with no fields are not its to report.
 */
async function probeBudgets(book: BudgetBook): Promise<void> {
  const nobody = { keyId: null, userId: null, tenantId: null, feature: null, model: null, spentNanoUsd: 0 };
  try {
    await book.plan.forCall(identityOf(nobody), undefined);
  } catch (error) {
    if (error instanceof TollgateError && error.code === 'ERR_TG_BUDGET_NOT_REBUILDABLE') throw error;
  }
}

function callerKey(caller: CallerSpend): string {
  const { keyId, userId, tenantId, feature, model, tags, session, team } = caller;
  return JSON.stringify([keyId, userId, tenantId, feature, model, tags ?? null, session ?? null, team ?? null]);
}

/** One ledger scope to rebuild: what the usage ledger holds for it is the sum over the callers charged to it. */
interface ScopeToRebuild {
  scope: LedgerScope;
  /** The budget the scope is a period (or rolling window) of. */
  budget: ResolvedBudget;
  since: number;
  /** The scope's last reset (the credit journal's): only calls that finished from it on count. */
  resetAt: number | undefined;
  /** The callers charged to it, by their index in `Callers.list`. */
  callers: number[];
}

/**
 * The distinct callers of a read (a caller's sums and its recent records are one caller), each known by its index:
 * at 100,000 callers and scopes a rebuild holds arrays of numbers, not a Set of strings per scope, so the collections
 * that run while it works have little to copy (bench/guard-stall.ts `--background`).
 */
interface Callers {
  /** One record of each caller: what the plan is asked about (its spend is read per scope, by index). */
  list: CallerSpend[];
  index: Map<string, number>;
}

async function distinctCallers(rows: readonly CallerSpend[], slice: TimeSlice): Promise<Callers> {
  const list: CallerSpend[] = [];
  const index = new Map<string, number>();
  for (const row of rows) {
    const key = callerKey(row);
    if (!index.has(key)) {
      index.set(key, list.length);
      list.push(row);
    }
    await slice.pause();
  }
  return { list, index };
}

const NO_SLOTS: readonly (string | undefined)[] = Object.freeze([]);

/**
 * Every ledger scope the recorded calls were charged to, found the way a reserve finds them: each caller with spend
 * since the oldest period start is asked of the plan's `forCall` (its own budgets and its model's), so end users'
 * budgets (`tenantUsers`), model budgets, wildcards and budgets from code are all covered, every period of each.
 */
async function scopesOfCallers(
  book: BudgetBook,
  callers: Callers,
  resets: ReadonlyMap<string, number>,
  now: number,
  slice: TimeSlice,
) {
  const scopes = new Map<string, ScopeToRebuild>();
  const slots = new Set<string | undefined>([undefined]);
  /** The slots each caller's scopes are in (by caller index): a record's id goes to those of the rebuild's cut. */
  const slotsOf: (readonly (string | undefined)[])[] = [];
  const add = (budget: ResolvedBudget, caller: number | undefined) => {
    // A budget out of force is charged nothing: its counter has nothing to hold.
    if (!inForceAt(budget, now)) return;
    slots.add(budget.slot);
    if (caller !== undefined) {
      const own = slotsOf[caller] ?? NO_SLOTS;
      if (!own.includes(budget.slot)) slotsOf[caller] = [...own, budget.slot];
    }
    for (const scope of ledgerScopesAt(budget, now)) {
      let entry = scopes.get(scope.key);
      if (!entry) {
        const since = sinceOf(budget, scope.expiresAt, now);
        entry = { scope, budget, since, resetAt: resets.get(scope.key), callers: [] };
        scopes.set(scope.key, entry);
      }
      // Callers are asked one after another: one already charged to this scope is its last (two budgets, one scope).
      if (caller !== undefined && entry.callers[entry.callers.length - 1] !== caller) entry.callers.push(caller);
    }
  };
  // Budgets with a fixed id are checked even without spend: their slots are rebuilt as well.
  for (const budget of await book.plan.configuredWithKeys()) add(budget, undefined);
  for (let caller = 0; caller < callers.list.length; caller++) {
    const spender = callers.list[caller]!;
    for (const budget of await book.plan.forCall(identityOf(spender), spender.model ?? undefined)) add(budget, caller);
    await slice.pause();
  }
  return { scopes: [...scopes.values()], slots: [...slots], slotsOf };
}

/** A slot's cut with no record read one by one (most of them: one list shared). */
const NO_IDS: readonly string[] = Object.freeze([]);

/**
 * The ids of the records read one by one, per slot their callers' scopes are in: the rebuild's cut. Every slot the
 * rebuild covers gets the cut, those without a recent record too: a lost settle there of a call that finished before it
 * was read with the sums (found by the model-based test: the slot had no cut, the call counted twice).
 */
async function cutIds(
  recent: readonly RecordSpend[],
  callers: Callers,
  slotsOf: readonly (readonly (string | undefined)[] | undefined)[],
  slots: readonly (string | undefined)[],
  slice: TimeSlice,
): Promise<Map<string | undefined, readonly string[]>> {
  const lists = new Map<string | undefined, string[]>();
  for (const row of recent) {
    const caller = callers.index.get(callerKey(row));
    for (const slot of (caller === undefined ? undefined : slotsOf[caller]) ?? NO_SLOTS) {
      const list = lists.get(slot) ?? [];
      list.push(row.id);
      lists.set(slot, list);
    }
    await slice.pause();
  }
  const ids: Map<string | undefined, readonly string[]> = lists;
  for (const slot of slots) {
    if (!ids.has(slot)) ids.set(slot, NO_IDS);
    await slice.pause();
  }
  return ids;
}

/** The oldest instant any budget counts from: every calendar period is at most a quarter, a rolling window any length. */
function earliestStart(book: BudgetBook, now: number): number {
  let earliest = periodWindow('quarter', now, book.plan.timezone).start;
  for (const budget of book.plan.configured())
    for (const scope of ledgerScopesAt(budget, now))
      earliest = Math.min(earliest, sinceOf(budget, scope.expiresAt, now));
  return earliest;
}

/**
 * Raises every budget scope's spend to what `source` recorded for it, and (with the guard's credit journal) its top-up
 * credit to what the journal recorded, in the same pass; the credit is raised apart from the spend, never netted.
 * A scope the journal records a reset of counts the calls that finished from that reset on: a reset is history, not
 * undone by a restart or a loss. A store that lost its data while traffic went on holds only the spend since; one that
 * lost nothing is at or above the usage ledger (which lags by its batching) and is left alone. Live reservations are
 * not in a usage ledger; they settle as usual. Where the store has a rebuild gate, the caller marks `report.slots`
 * rebuilt once it trusts the ledger complete (see the budget README, "After Redis loses its data").
 */
export async function rebuildSpend(book: BudgetBook, source: SpendSource): Promise<RebuildReport> {
  const { ledger } = book;
  if (typeof ledger.restoreSpent !== 'function') {
    throw new TollgateError(
      'ERR_TG_BUDGET_NO_RESTORE',
      'this ledger cannot restore spend (it has no restoreSpent()); use the memory or Redis ledger',
    );
  }
  const slice = new TimeSlice(REBUILD_SLICE_MS, BESIDE_REQUESTS);
  const read = await readUsageLedger(book, source, slice);
  const { scopes, slots, slotsOf, recent, cut } = read;
  await ledger.rebuildGate?.recordCut?.(cut, await cutIds(recent, read.callers, slotsOf, slots, slice));
  const report: RebuildReport = { checked: 0, restored: [], credited: [], slots };
  for (const entry of scopes) {
    report.checked++;
    await slice.pause();
    const spent = await read.spentOf(entry);
    if (spent <= 0) continue;
    const { scope } = entry;
    if (await withTimeout(ledger.restoreSpent(scope, spent, scope.expiresAt), book.storeTimeoutMs, 'restoreSpent'))
      report.restored.push({ key: scope.key, spentNanoUsd: spent });
  }
  if (book.credits) await restoreCreditsInto(report, book, read.journaled);
  return report;
}

/** What the usage ledger holds for one ledger scope in its current period (nano-USD). */
interface LedgerScopeSpend {
  scope: LedgerScope;
  budget: ResolvedBudget;
  spentNanoUsd: number;
}

/**
 * What the usage ledger holds per ledger scope, read the way a rebuild reads it (every scope its calls were charged to
 * and every configured one, each from its period's start and its last reset): the figure a store's counter is checked
 * against (spend-drift.ts). With `keys`, only those scopes are summed.
 */
export async function ledgerSpendOfScopes(
  book: BudgetBook,
  source: SpendSource,
  keys?: ReadonlySet<string>,
  only?: CallerFilter,
): Promise<Map<string, LedgerScopeSpend>> {
  const slice = new TimeSlice(REBUILD_SLICE_MS, BESIDE_REQUESTS);
  const read = await readUsageLedger(book, source, slice, only);
  const found = new Map<string, LedgerScopeSpend>();
  for (const entry of read.scopes) {
    if (keys && !keys.has(entry.scope.key)) continue;
    found.set(entry.scope.key, { scope: entry.scope, budget: entry.budget, spentNanoUsd: await read.spentOf(entry) });
    await slice.pause();
  }
  return found;
}

/**
 * One read of the usage ledger: the credit journal's resets first (a scope's last reset says from when its spend
 * counts), then the records, summed before the cut and one by one since (see rebuildSpend), and every ledger scope
 * their callers were charged to, with what the ledger holds for each.
 */
async function readUsageLedger(book: BudgetBook, source: SpendSource, slice: TimeSlice, only?: CallerFilter) {
  await probeBudgets(book);
  // Tens of thousands of callers and scopes are walked in slices (`slice`, the caller's): the requests being served
  // meanwhile wait a slice.
  const now = book.now();
  const until = now + 1;
  const earliest = earliestStart(book, now);
  const journaled = book.credits ? await book.credits.credits(now) : [];
  const resets = new Map<string, number>();
  for (const credit of journaled) if (credit.resetAt !== undefined) resets.set(credit.key, credit.resetAt);
  // The cut: the records that finished before it summed (every one is in the ledger by now), those since read one by
  // one in a single read, so what the rebuild counts is exactly what its cut names. A source that cannot list records
  // is read whole, and its cut is the read itself: a lost settle of a call that finished before it is counted once (by
  // the ledger), never twice; a record that reaches that ledger later than its settle is under-counted instead.
  const cut = source.recordsFinishedSince ? now - RECORD_DELIVERY_MS : until;
  const recent = source.recordsFinishedSince ? await source.recordsFinishedSince(earliest, until, cut, only) : [];
  const summed = await source.spentByCaller(earliest, until, cut, undefined, only);
  const callers = await distinctCallers(
    [...summed, ...recent].filter((c) => c.spentNanoUsd > 0),
    slice,
  );
  const { scopes, slots, slotsOf } = await scopesOfCallers(book, callers, resets, now, slice);
  const spentSince = spentSinceReader(source, { earliest, until, cut, summed, recent, only }, callers, slice);
  /** What the ledger holds for one scope: the sum over the callers charged to it. */
  const spentOf = async ({ since, resetAt, callers: charged }: ScopeToRebuild) => {
    if (charged.length === 0) return 0;
    const recorded = await spentSince(since, resetAt);
    let spent = 0;
    for (const caller of charged) spent += recorded[caller]!;
    return spent;
  };
  return { scopes, slots, slotsOf, callers, recent, cut, journaled, spentOf };
}

/** What one rebuild read of the usage ledger: the sums before its cut from `earliest`, and the records since. */
interface RebuildRead {
  earliest: number;
  until: number;
  cut: number;
  summed: readonly CallerSpend[];
  recent: readonly RecordSpend[];
  /** The callers the read kept to (a drift sample's), or all. */
  only: CallerFilter | undefined;
}

/**
 * Spend per caller (by index in `callers`) started from `since` and (after a reset) finished from `resetAt`: the ledger
 * asked once per such pair (a handful: the periods in use, a rolling budget's buckets, the resets), the records since
 * the cut added.
 */
function spentSinceReader(source: SpendSource, read: RebuildRead, callers: Callers, slice: TimeSlice) {
  const { earliest, until, cut, summed, recent } = read;
  const withRecent = async (since: number, resetAt: number | undefined, rows: readonly CallerSpend[]) => {
    // A caller not among `callers` (nothing spent since the oldest start) is charged to no scope: left out.
    const spent = new Float64Array(callers.list.length);
    for (const row of rows) {
      const caller = callers.index.get(callerKey(row));
      if (caller !== undefined) spent[caller] = row.spentNanoUsd;
      await slice.pause();
    }
    for (const row of recent) {
      if (row.startedAt < since || (resetAt !== undefined && row.finishedAt < resetAt)) continue;
      const caller = callers.index.get(callerKey(row));
      if (caller !== undefined) spent[caller] = spent[caller]! + row.spentNanoUsd;
      await slice.pause();
    }
    return spent;
  };
  const asked = new Map<string, Promise<Float64Array>>([[`${earliest}`, withRecent(earliest, undefined, summed)]]);
  return (since: number, resetAt: number | undefined) => {
    const key = resetAt === undefined ? `${since}` : `${since}/${resetAt}`;
    let answer = asked.get(key);
    if (!answer) {
      const rows = source.spentByCaller(since, until, cut, resetAt, read.only);
      answer = rows.then((found) => withRecent(since, resetAt, found));
      asked.set(key, answer);
    }
    return answer;
  };
}

/** The journal's credits raised in the store, their slots rebuilt with the rest. */
async function restoreCreditsInto(report: RebuildReport, book: BudgetBook, credits: readonly ScopeCredit[]) {
  // A Set of the slots, not a search of the list per credit: a rebuild of 100,000 scopes covers as many.
  const covered = new Set(report.slots);
  for (const credit of credits)
    if (!covered.has(credit.slot)) {
      covered.add(credit.slot);
      report.slots.push(credit.slot);
    }
  for (const credit of await restoreCredits(book, credits))
    report.credited.push({ key: credit.key, creditNanoUsd: credit.creditNanoUsd });
}
