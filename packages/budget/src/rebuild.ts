// Rebuilding budget spend from a usage ledger when the store lost it (Redis restarted without persistence, a wiped key).
import { periodWindow, TollgateError } from '@tollgate/core';
import type { Identity } from '@tollgate/core';
import { isCalendarPeriod } from '@tollgate/core/options';
import { besideRequests, ShardedMap, withTimeout } from '@tollgate/core/store-contracts';
import type { TimeSlice } from '@tollgate/core/store-contracts';
import type { LedgerScope } from '@tollgate/core/store-contracts';
import { inForceAt } from './budget-limits.js';
import { CALLER_FIELDS, fieldsOnly, IDENTITY_FIELDS, ledgerScopesAt } from './budget-plan.js';
import type { CallerField, ResolvedBudget } from './budget-plan.js';
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
   * with `only`, the callers it names at least. With `fields`, callers alike in those fields may be summed into one row
   * (its other fields null, so a source may read sums kept without them: usage rollups); without, every field counts.
   */
  spentByCaller(
    since: number,
    until: number,
    finishedBefore?: number,
    finishedFrom?: number,
    only?: CallerFilter,
    fields?: readonly CallerField[],
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
    fields?: readonly CallerField[],
  ): Promise<RecordSpend[]>;
}

/**
 * How long a usage record may take to reach the usage ledger after its call finished (the sinks' batches and retries,
 * the processes' clocks apart): a rebuild counts every record that finished this long before it read as read, and
 * names those that finished since one by one (its cut).
 */
const RECORD_DELIVERY_MS = 60_000;

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
  ...CALLER_FIELDS.flatMap((field) => IDENTITY_FIELDS[field] ?? []),
  'keyBudget',
]);

/** Lets a `budgets` function read what a usage record keeps of its caller, and refuses the rest (see identityOf). */
const KEPT_ONLY = fieldsOnly(
  KEPT_FIELDS,
  (field) =>
    new TollgateError(
      'ERR_TG_BUDGET_NOT_REBUILDABLE',
      `the budgets function read identity.${field}, which the usage ledger does not keep: spend of its budgets ` +
        `cannot be rebuilt after the store lost it; decide budgets by ${[...KEPT_FIELDS].join(', ')}`,
    ),
);

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

/** What a `budgets` function that cannot be rebuilt is refused with. */
const UNREBUILDABLE: ReadonlySet<string> = new Set(['ERR_TG_BUDGET_NOT_REBUILDABLE', 'ERR_TG_BUDGET_UNDECLARED_FIELD']);

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
    // A field the ledger does not keep, or one the function did not declare (budgetsDecideBy): not rebuildable.
    if (error instanceof TollgateError && UNREBUILDABLE.has(error.code)) throw error;
  }
}

/**
 * A caller's key by `fields` (every field without): callers alike in them are one caller, charged to the same budgets
 * (`BudgetPlan.callerFields`), whether the source summed them into one row or not.
 */
function callerKeyOf(fields: readonly CallerField[] = CALLER_FIELDS): (caller: CallerSpend) => string {
  return (caller) => JSON.stringify(fields.map((field) => caller[field] ?? null));
}

/** Scopes a block of `FoundScopes` holds. */
const SCOPE_BLOCK = 4096;
/** A block's numbers per scope: limit, expiresAt, since, resetAt. */
const NUMBERS = 4;

/** `SCOPE_BLOCK` scopes' columns, made at their full length. */
interface ScopeBlock {
  keys: string[];
  slots: (string | undefined)[];
  numbers: Float64Array;
  /** The first and the last caller charged (-1: none). */
  callers: Int32Array;
  /** Whose callers alone charge its budget (`ownerOf`): the kind's code (OWNER_KINDS' index + 1; 0: none), the id. */
  ownerKinds: Uint8Array;
  ownerIds: (string | undefined)[];
}

/** Whose callers alone charge a budget: a tenant's (its own or one it is bound to) or a key's. */
export interface BudgetOwner {
  kind: 'tenant' | 'key';
  id: string;
}

const OWNER_KINDS = ['tenant', 'key'] as const;

/**
 * The owner of `budget`, so long as the plan's budgets follow their callers (`BudgetPlan.followsCallers`); undefined for
 * a budget of no one tenant or key (any caller may charge it): the global budget, a feature's, a user's without a
 * tenant, a session's.
 */
export function ownerOf(budget: ResolvedBudget): BudgetOwner | undefined {
  if (budget.tenantId !== null) return { kind: 'tenant', id: budget.tenantId };
  if (budget.scope === 'tenant' && budget.id !== null) return { kind: 'tenant', id: budget.id };
  if (budget.scope === 'key' && budget.id !== null) return { kind: 'key', id: budget.id };
  return undefined;
}

/** The callers a read of scopes with these owners may keep to; undefined (every caller) when one has none. */
export function callerFilterOf(owners: Iterable<BudgetOwner | undefined>): CallerFilter | undefined {
  const tenantIds = new Set<string>();
  const keyIds = new Set<string>();
  for (const owner of owners) {
    if (owner === undefined) return undefined;
    (owner.kind === 'tenant' ? tenantIds : keyIds).add(owner.id);
  }
  return { tenantIds: [...tenantIds], keyIds: [...keyIds] };
}

/** The scopes one read of the usage ledger found, by index: what the drift sampler walks (`ledgerScopeList`). */
export interface LedgerScopeList {
  readonly size: number;
  key(at: number): string;
  /** Scope `at` as a ledger is given it (made for the call). */
  scope(at: number): LedgerScope;
  owner(at: number): BudgetOwner | undefined;
}

/**
 * The ledger scopes a read found, by index, in blocks of columns: what the usage ledger holds for one is the sum over
 * the callers charged to it. At 100,000 scopes a rebuild keeps no object per scope, nor the budget each came from (a
 * budget bound to one tenant dies young): what survives while it works is what the collections meanwhile copy. And no
 * column grows by copying: ten arrays of 114,000 grown at once held the loop 47 ms (bench/guard-stall.ts
 * `--background`).
 */
class FoundScopes implements LedgerScopeList {
  readonly #index = new ShardedMap<number>();
  readonly #blocks: ScopeBlock[] = [];
  #size = 0;
  /** The callers charged after the first, by scope index (a scope of two budgets' callers, or a shared one). */
  readonly #more = new Map<number, number[]>();
  /** The budget of each scope `keepBudget` names (a drift reading's), by index. */
  readonly #budgets = new Map<number, ResolvedBudget>();

  constructor(readonly keepBudget: (key: string) => boolean) {}

  get size(): number {
    return this.#size;
  }

  /** The scope's index, added (with its budget's `since`, and its last reset from `resets`) when new. */
  add(scope: LedgerScope, budget: ResolvedBudget, now: number, resets: ReadonlyMap<string, number>): number {
    const known = this.#index.get(scope.key);
    if (known !== undefined) return known;
    const at = this.#size++;
    this.#index.set(scope.key, at);
    if (at % SCOPE_BLOCK === 0)
      this.#blocks.push({
        keys: new Array<string>(SCOPE_BLOCK),
        slots: new Array<string | undefined>(SCOPE_BLOCK),
        numbers: new Float64Array(SCOPE_BLOCK * NUMBERS),
        callers: new Int32Array(SCOPE_BLOCK * 2).fill(-1),
        ownerKinds: new Uint8Array(SCOPE_BLOCK),
        ownerIds: new Array<string | undefined>(SCOPE_BLOCK),
      });
    const [block, row] = this.#at(at);
    block.keys[row] = scope.key;
    block.slots[row] = scope.slot;
    const numbers = row * NUMBERS;
    block.numbers[numbers] = scope.limit;
    block.numbers[numbers + 1] = scope.expiresAt;
    block.numbers[numbers + 2] = sinceOf(budget, scope.expiresAt, now);
    block.numbers[numbers + 3] = resets.get(scope.key) ?? Number.NaN;
    const owner = ownerOf(budget);
    if (owner) {
      block.ownerKinds[row] = OWNER_KINDS.indexOf(owner.kind) + 1;
      block.ownerIds[row] = owner.id;
    }
    if (this.keepBudget(scope.key)) this.#budgets.set(at, budget);
    return at;
  }

  #at(at: number): [ScopeBlock, number] {
    return [this.#blocks[Math.floor(at / SCOPE_BLOCK)]!, at % SCOPE_BLOCK];
  }

  /** Charges `caller` to scope `at`: callers are asked one after another, so one already charged is its last. */
  charge(at: number, caller: number): void {
    const [{ callers }, row] = this.#at(at);
    if (callers[row * 2 + 1] === caller) return;
    if (callers[row * 2] === -1) callers[row * 2] = caller;
    else {
      const more = this.#more.get(at);
      if (more) more.push(caller);
      else this.#more.set(at, [caller]);
    }
    callers[row * 2 + 1] = caller;
  }

  /** The sum of `spent` over the callers charged to scope `at` (0 when none is). */
  sumOf(at: number, spent: Float64Array): number {
    const [{ callers }, row] = this.#at(at);
    const first = callers[row * 2]!;
    if (first === -1) return 0;
    let sum = spent[first]!;
    for (const caller of this.#more.get(at) ?? NO_CALLERS) sum += spent[caller]!;
    return sum;
  }

  charged(at: number): boolean {
    const [{ callers }, row] = this.#at(at);
    return callers[row * 2] !== -1;
  }

  key(at: number): string {
    const [block, row] = this.#at(at);
    return block.keys[row]!;
  }

  /** When its spend started counting: its period's start or its rolling window's, not before `validFrom`. */
  since(at: number): number {
    const [block, row] = this.#at(at);
    return block.numbers[row * NUMBERS + 2]!;
  }

  /** Its last reset (the credit journal's): only calls that finished from it on count. */
  resetAt(at: number): number | undefined {
    const [block, row] = this.#at(at);
    const resetAt = block.numbers[row * NUMBERS + 3]!;
    return Number.isNaN(resetAt) ? undefined : resetAt;
  }

  /** Scope `at` as a ledger is given it (made for the call: a rebuild keeps its columns, not these). */
  scope(at: number): LedgerScope {
    const [block, row] = this.#at(at);
    const { numbers } = block;
    const scope: LedgerScope = {
      key: block.keys[row]!,
      limit: numbers[row * NUMBERS]!,
      expiresAt: numbers[row * NUMBERS + 1]!,
    };
    const slot = block.slots[row];
    if (slot !== undefined) scope.slot = slot;
    return scope;
  }

  owner(at: number): BudgetOwner | undefined {
    const [block, row] = this.#at(at);
    const kind = block.ownerKinds[row]!;
    return kind === 0 ? undefined : { kind: OWNER_KINDS[kind - 1]!, id: block.ownerIds[row]! };
  }

  budget(at: number): ResolvedBudget | undefined {
    return this.#budgets.get(at);
  }
}

const NO_CALLERS: readonly number[] = Object.freeze([]);

/**
 * The distinct callers of a read (a caller's sums and its recent records are one caller), each known by its index:
 * at 100,000 callers and scopes a rebuild holds arrays of numbers, not a Set of strings per scope, so the collections
 * that run while it works have little to copy (bench/guard-stall.ts `--background`).
 */
interface Callers {
  /** One record of each caller: what the plan is asked about (its spend is read per scope, by index). */
  list: CallerSpend[];
  index: ShardedMap<number>;
  /** The caller of each record read one by one (`recent`, in its order; undefined: none with spend), found once. */
  ofRecent: (number | undefined)[];
}

/** The callers with spend among the sums and the recent records, each once (walked in slices, no array of both made). */
async function distinctCallers(
  summed: readonly CallerSpend[],
  recent: readonly RecordSpend[],
  callerKey: (caller: CallerSpend) => string,
  slice: TimeSlice,
): Promise<Callers> {
  const list: CallerSpend[] = [];
  const index = new ShardedMap<number>();
  for (const rows of [summed, recent])
    for (const row of rows) {
      if (!(row.spentNanoUsd > 0)) continue;
      const key = callerKey(row);
      if (!index.has(key)) {
        index.set(key, list.length);
        list.push(row);
      }
      await slice.pause();
    }
  const ofRecent: (number | undefined)[] = [];
  for (const row of recent) {
    ofRecent.push(index.get(callerKey(row)));
    await slice.pause();
  }
  return { list, index, ofRecent };
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
  keepBudget: (key: string) => boolean,
) {
  const found = new FoundScopes(keepBudget);
  /** Every slot the scopes are in: the shared one (undefined) first, then each other once (`slotSeen`). */
  const slots: (string | undefined)[] = [undefined];
  const slotSeen = new ShardedMap<true>();
  /**
   * The slots the scopes of each caller with a record since the cut are in (by caller index): its records' ids go to
   * those of the rebuild's cut. The callers with only sums (most of them) need none.
   */
  const slotsOf = new Map<number, (string | undefined)[]>();
  for (const caller of callers.ofRecent) if (caller !== undefined) slotsOf.set(caller, []);
  const add = (budget: ResolvedBudget, caller: number | undefined) => {
    // A budget out of force is charged nothing: its counter has nothing to hold.
    if (!inForceAt(budget, now)) return;
    if (!slotSeen.has(budget.slot)) {
      slotSeen.set(budget.slot, true);
      slots.push(budget.slot);
    }
    const own = caller === undefined ? undefined : slotsOf.get(caller);
    if (own && !own.includes(budget.slot)) own.push(budget.slot);
    for (const scope of ledgerScopesAt(budget, now)) {
      const at = found.add(scope, budget, now, resets);
      if (caller !== undefined) found.charge(at, caller);
    }
  };
  // Budgets with a fixed id are checked even without spend: their slots are rebuilt as well.
  for (const budget of await book.plan.configuredWithKeys()) add(budget, undefined);
  for (let caller = 0; caller < callers.list.length; caller++) {
    const spender = callers.list[caller]!;
    for (const budget of await book.plan.forCall(identityOf(spender), spender.model ?? undefined)) add(budget, caller);
    await slice.pause();
  }
  return { found, slots, slotSeen, slotsOf };
}

/** A slot's cut with no record read one by one (most of them: one list shared). */
const NO_IDS: readonly string[] = Object.freeze([]);

/**
 * The ids of the records read one by one, per slot their callers' scopes are in: the rebuild's cut. Every slot the
 * rebuild covers gets the cut, those without a recent record too: a lost settle there of a call that finished before it
 * was read with the sums (found by the model-based test: the slot had no cut, the call counted twice). Handed as the
 * slots are walked: at 100,000 slots, no map of them all.
 */
async function cutIds(
  recent: readonly RecordSpend[],
  callers: Callers,
  slotsOf: ReadonlyMap<number, readonly (string | undefined)[]>,
  slots: readonly (string | undefined)[],
  slice: TimeSlice,
): Promise<Iterable<[string | undefined, readonly string[]]>> {
  const lists = new Map<string | undefined, string[]>();
  for (let i = 0; i < recent.length; i++) {
    const caller = callers.ofRecent[i];
    for (const slot of (caller === undefined ? undefined : slotsOf.get(caller)) ?? NO_SLOTS) {
      const list = lists.get(slot) ?? [];
      list.push(recent[i]!.id);
      lists.set(slot, list);
    }
    await slice.pause();
  }
  return (function* () {
    for (const slot of slots) yield [slot, lists.get(slot) ?? NO_IDS];
  })();
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
  const slice = besideRequests();
  const read = await readUsageLedger(book, source, slice, undefined, () => false);
  const { found, slots, slotsOf, recent, cut } = read;
  await ledger.rebuildGate?.recordCut?.(cut, await cutIds(recent, read.callers, slotsOf, slots, slice));
  const report: RebuildReport = { checked: 0, restored: [], credited: [], slots };
  for (let at = 0; at < found.size; at++) {
    report.checked++;
    await slice.pause();
    const spent = await read.spentOf(at);
    if (spent <= 0) continue;
    const scope = found.scope(at);
    if (await withTimeout(ledger.restoreSpent(scope, spent, scope.expiresAt), book.storeTimeoutMs, 'restoreSpent'))
      report.restored.push({ key: scope.key, spentNanoUsd: spent });
  }
  if (book.credits) await restoreCreditsInto(report, book, read.journaled, read.slotSeen);
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
 * against (spend-drift.ts), for the scopes `keys` names (those the read finds).
 */
export async function ledgerSpendOfScopes(
  book: BudgetBook,
  source: SpendSource,
  keys: ReadonlySet<string>,
  only?: CallerFilter,
): Promise<Map<string, LedgerScopeSpend>> {
  const slice = besideRequests();
  const read = await readUsageLedger(book, source, slice, only, (key) => keys.has(key));
  const spends = new Map<string, LedgerScopeSpend>();
  for (let at = 0; at < read.found.size; at++) {
    const budget = read.found.budget(at);
    if (!budget) continue;
    spends.set(read.found.key(at), { scope: read.found.scope(at), budget, spentNanoUsd: await read.spentOf(at) });
    await slice.pause();
  }
  return spends;
}

/**
 * Every scope the usage ledger's callers (with spend in the longest period a budget counts) are charged to, and those
 * of the budgets with fixed ids, in the order the read found them: no spend summed, no budget kept (each scope's owner
 * is, for a reading kept to its callers). Read in slices, like a rebuild.
 */
export async function ledgerScopeList(book: BudgetBook, source: SpendSource): Promise<LedgerScopeList> {
  const slice = besideRequests();
  return (await readUsageLedger(book, source, slice, undefined, () => false)).found;
}

/**
 * One read of the usage ledger: the credit journal's resets first (a scope's last reset says from when its spend
 * counts), then the records, summed before the cut and one by one since (see rebuildSpend), and every ledger scope
 * their callers were charged to, with what the ledger holds for each.
 */
async function readUsageLedger(
  book: BudgetBook,
  source: SpendSource,
  slice: TimeSlice,
  only: CallerFilter | undefined,
  keepBudget: (key: string) => boolean,
) {
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
  // Only what decides a caller's budgets is kept apart: a month of 10,000,000 records is then summed from rollups, and
  // the last minute's records read with those fields only (a drift sample's read every 30 s).
  const fields = book.plan.callerFields();
  const recent = source.recordsFinishedSince
    ? await source.recordsFinishedSince(earliest, until, cut, only, fields)
    : [];
  const callerKey = callerKeyOf(fields);
  const summed = await source.spentByCaller(earliest, until, cut, undefined, only, fields);
  const callers = await distinctCallers(summed, recent, callerKey, slice);
  const { found, slots, slotSeen, slotsOf } = await scopesOfCallers(book, callers, resets, now, slice, keepBudget);
  const spentSince = spentSinceReader(source, { earliest, until, cut, summed, recent, only, fields }, callers, slice);
  /** What the ledger holds for scope `at`: the sum over the callers charged to it. */
  const spentOf = async (at: number) => {
    if (!found.charged(at)) return 0;
    return found.sumOf(at, await spentSince(found.since(at), found.resetAt(at)));
  };
  return { found, slots, slotSeen, slotsOf, callers, recent, cut, journaled, spentOf };
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
  /** The caller fields kept apart (every one: undefined). */
  fields: readonly CallerField[] | undefined;
}

/**
 * Spend per caller (by index in `callers`) started from `since` and (after a reset) finished from `resetAt`: the ledger
 * asked once per such pair (a handful: the periods in use, a rolling budget's buckets, the resets), the records since
 * the cut added.
 */
function spentSinceReader(source: SpendSource, read: RebuildRead, callers: Callers, slice: TimeSlice) {
  const { earliest, until, cut, summed, recent } = read;
  const callerKey = callerKeyOf(read.fields);
  const withRecent = async (since: number, resetAt: number | undefined, rows: readonly CallerSpend[]) => {
    // A caller not among `callers` (nothing spent since the oldest start) is charged to no scope: left out.
    const spent = new Float64Array(callers.list.length);
    for (const row of rows) {
      const caller = callers.index.get(callerKey(row));
      // Added: a source may answer callers alike in the fields kept in rows of their own.
      if (caller !== undefined) spent[caller] = spent[caller]! + row.spentNanoUsd;
      await slice.pause();
    }
    for (let i = 0; i < recent.length; i++) {
      const row = recent[i]!;
      if (row.startedAt < since || (resetAt !== undefined && row.finishedAt < resetAt)) continue;
      const caller = callers.ofRecent[i];
      if (caller !== undefined) spent[caller] = spent[caller]! + row.spentNanoUsd;
      await slice.pause();
    }
    return spent;
  };
  // Each start asked once, when first asked: a read that sums nothing (`ledgerScopeList`) walks no sums.
  const asked = new Map<string, Promise<Float64Array>>();
  return (since: number, resetAt: number | undefined) => {
    const key = resetAt === undefined ? `${since}` : `${since}/${resetAt}`;
    let answer = asked.get(key);
    if (!answer) {
      const rows =
        since === earliest && resetAt === undefined
          ? Promise.resolve(summed)
          : source.spentByCaller(since, until, cut, resetAt, read.only, read.fields);
      answer = rows.then((found) => withRecent(since, resetAt, found));
      asked.set(key, answer);
    }
    return answer;
  };
}

/** The journal's credits raised in the store, their slots (those the rebuild did not cover: not in `covered`) with the rest. */
async function restoreCreditsInto(
  report: RebuildReport,
  book: BudgetBook,
  credits: readonly ScopeCredit[],
  covered: ShardedMap<true>,
) {
  for (const credit of credits)
    if (credit.slot !== undefined && !covered.has(credit.slot)) {
      covered.set(credit.slot, true);
      report.slots.push(credit.slot);
    }
  for (const credit of await restoreCredits(book, credits))
    report.credited.push({ key: credit.key, creditNanoUsd: credit.creditNanoUsd });
}
