// Reservation ledger on Redis Cluster: each scope on its own slot's shard; a reserve over several slots stays all-or-nothing.
import { assertReserveNumbers, assertStoreAmount, GLOBAL_SLOT, scopeKeyOf } from '@tollgate/core/store-contracts';
import type {
  LedgerScope,
  RebuildGate,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  ScopeBalance,
  ScopeRef,
  ScopeUsage,
  SettledRecord,
  SettleResult,
  SpendCorrection,
  HeldAmount,
} from '@tollgate/core/store-contracts';
import type { Connection } from './connection.js';
import { DEFAULT_TAG, slotTag } from './hash-slot.js';
import { RedisReservationLedger, type LedgerOptions } from './reservation-ledger.js';

/** A reserve's scopes that share one slot, with the ledger of that slot. */
interface SlotGroup {
  ledger: RedisReservationLedger;
  scopes: LedgerScope[];
}

/** A live reservation: its part in each slot's ledger (all under the reservation's id), and the scopes in request order. */
interface Hold {
  amount: number;
  parts: RedisReservationLedger[];
  keys: string[];
}

type Refusal = Extract<ReserveResult, { ok: false }>;

const GLOBAL_TAG = slotTag(GLOBAL_SLOT);
/** Slots' ledgers kept (about 1.5 kB each) before idle ones are dropped, least recently used first. */
const MAX_LEDGERS = 10_000;
/** Ledgers looked at per drop, so a process whose every slot is busy does not scan them all each time. */
const DROP_SCAN = 100;

/**
 * One RedisReservationLedger per slot (its keys under the slot's hash tag, its own numbered settle
 * batches and sequence key in that slot), and a reserve that spans slots done in two steps: every
 * slot but the global one at once, then the global one. A refusal anywhere gives back what the
 * other slots granted (a settle at zero, which lands exactly once like any settle); with
 * `minAmount`, parts granted more than the smallest grant are shrunk to it. The global slot, which
 * every reserve touches, is only asked once the caller's own slots said yes.
 *
 * What is not atomic any more: between the two steps, the first slots hold the amount while the
 * global one has not answered. A process that dies there leaves those parts to expire, and an
 * expired reservation is charged (see README "Redis Cluster").
 */
export class ShardedReservationLedger implements ReservationLedger {
  /** By slot tag, least recently used first. */
  readonly #ledgers = new Map<string, RedisReservationLedger>();
  /** Calls under way per ledger: one a reserve may still give a reservation to is never dropped. */
  readonly #calls = new Map<RedisReservationLedger, number>();
  readonly #holds = new Map<string, Hold>();
  readonly #connection: Connection;
  readonly #prefix: string;
  readonly #options: LedgerOptions;

  constructor(connection: Connection, prefix: string, options: LedgerOptions = {}) {
    this.#connection = connection;
    this.#prefix = prefix;
    this.#options = options;
    // Settles spooled at an earlier close are sent at start by this one, whatever slots they were for.
    this.#ledgers.set(
      DEFAULT_TAG,
      new RedisReservationLedger(connection, prefix, { ...options, slotTag: DEFAULT_TAG }),
    );
  }

  #ledgerOf(slot: string | undefined): RedisReservationLedger {
    const tag = slotTag(slot);
    let ledger = this.#ledgers.get(tag);
    if (ledger) {
      this.#ledgers.delete(tag);
    } else {
      ledger = new RedisReservationLedger(this.#connection, this.#prefix, {
        ...this.#options,
        slotTag: tag,
        claimSpool: false,
      });
      if (this.#ledgers.size >= MAX_LEDGERS) this.#dropIdle();
    }
    this.#ledgers.set(tag, ledger);
    return ledger;
  }

  /**
   * Forgets the least recently used ledgers that hold nothing and send nothing. A slot used again
   * gets a new ledger, with a new id and so its own sequence key: numbers never go back. Only the
   * oldest are looked at, so a ledger just handed out (not yet counted in #calls) is never one.
   */
  #dropIdle(): void {
    let looked = 0;
    for (const [tag, ledger] of this.#ledgers) {
      if (++looked > DROP_SCAN || this.#ledgers.size < MAX_LEDGERS) return;
      if (tag !== DEFAULT_TAG && ledger.idle && !this.#calls.has(ledger)) this.#ledgers.delete(tag);
    }
  }

  /** Runs `call` with `ledgers` counted as in use, so that none is dropped meanwhile. */
  async #using<T>(ledgers: readonly RedisReservationLedger[], call: () => Promise<T>): Promise<T> {
    for (const ledger of ledgers) this.#calls.set(ledger, (this.#calls.get(ledger) ?? 0) + 1);
    try {
      return await call();
    } finally {
      for (const ledger of ledgers) {
        const left = this.#calls.get(ledger)! - 1;
        if (left === 0) this.#calls.delete(ledger);
        else this.#calls.set(ledger, left);
      }
    }
  }

  /** The scopes by slot, in the order their slots first appear. */
  #groups(scopes: readonly LedgerScope[]): Map<string, SlotGroup> {
    const groups = new Map<string, SlotGroup>();
    for (const scope of scopes) {
      const tag = slotTag(scope.slot);
      const group = groups.get(tag);
      if (group) group.scopes.push(scope);
      else groups.set(tag, { ledger: this.#ledgerOf(scope.slot), scopes: [scope] });
    }
    return groups;
  }

  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    assertReserveNumbers(request);
    const { id } = request;
    const live = this.#holds.get(id);
    // Live while any part is: a part's own ledger would answer a repeated id from memory.
    if (live && live.parts.some((ledger) => (ledger.heldUntil(id) ?? 0) > Date.now()))
      return { ok: true, id, amount: live.amount };
    // A scope named twice would be charged twice and released once.
    const scopes = [...new Map(request.scopes.map((scope) => [scope.key, scope] as const)).values()];
    const groups = this.#groups(scopes);
    const keys = scopes.map((scope) => scope.key);
    if (groups.size <= 1) {
      const ledger = groups.values().next().value?.ledger ?? this.#ledgerOf(undefined);
      const result = await this.#using([ledger], () => ledger.reserve({ ...request, scopes }));
      if (result.ok) this.#holds.set(id, { amount: result.amount, parts: [ledger], keys });
      return result;
    }
    return this.#using(
      [...groups.values()].map((group) => group.ledger),
      () => this.#reserveAcross(request, groups, keys),
    );
  }

  /** A reserve over several slots: the caller's own slots at once, then the global one; what refused gives back what granted. */
  async #reserveAcross(
    request: ReserveRequest,
    groups: Map<string, SlotGroup>,
    keys: string[],
  ): Promise<ReserveResult> {
    const { id } = request;
    const global = groups.get(GLOBAL_TAG);
    groups.delete(GLOBAL_TAG);
    const amount = Math.max(0, request.amount);
    const least = Math.min(amount, Math.max(0, request.minAmount ?? amount));
    const granted: { ledger: RedisReservationLedger; result: Extract<ReserveResult, { ok: true }> }[] = [];
    const giveBack = () => Promise.all(granted.map(({ ledger }) => ledger.release(id).catch(() => undefined)));

    // The caller's own slots (key, tenant, ...) at once; the global one only once they all said yes.
    const first = [...groups.values()];
    const answers = await Promise.allSettled(
      first.map((group) => group.ledger.reserve({ ...request, amount, minAmount: least, scopes: group.scopes })),
    );
    let failure: { reason: unknown } | undefined;
    let refusal: Refusal | undefined;
    answers.forEach((answer, i) => {
      if (answer.status === 'rejected') failure ??= { reason: answer.reason };
      else if (answer.value.ok) granted.push({ ledger: first[i]!.ledger, result: answer.value });
      else if (!refusal || keys.indexOf(answer.value.scope) < keys.indexOf(refusal.scope)) refusal = answer.value;
    });
    if (failure || refusal) {
      await giveBack();
      if (failure) throw failure.reason;
      return refusal!;
    }
    let grant = granted.length > 0 ? Math.min(...granted.map(({ result }) => result.amount)) : amount;
    if (global) {
      let result: ReserveResult;
      try {
        result = await global.ledger.reserve({
          ...request,
          amount: grant,
          minAmount: Math.min(least, grant),
          scopes: global.scopes,
        });
      } catch (error) {
        await giveBack();
        throw error;
      }
      if (!result.ok) {
        await giveBack();
        return result;
      }
      granted.push({ ledger: global.ledger, result });
      grant = result.amount;
    }

    const balances = new Map<string, ScopeBalance>();
    for (const { result } of granted) for (const balance of result.scopes ?? []) balances.set(balance.key, balance);
    // A part granted more than another slot afforded holds only the smaller grant.
    await Promise.all(
      granted
        .filter(({ result }) => result.amount > grant)
        .map(async ({ ledger }) => {
          for (const after of await ledger.shrink(id, grant)) {
            const balance = balances.get(after.key);
            if (balance) balances.set(after.key, { ...balance, ...after });
          }
        }),
    );
    this.#holds.set(id, { amount: grant, parts: granted.map(({ ledger }) => ledger), keys });
    const reported = keys.map((key) => balances.get(key));
    return {
      ok: true,
      id,
      amount: grant,
      ...(reported.every((balance) => balance !== undefined) ? { scopes: reported as ScopeBalance[] } : {}),
    };
  }

  async settle(id: string, actualAmount: number, records?: readonly SettledRecord[]): Promise<SettleResult> {
    assertStoreAmount('ledger.settle', 'actualAmount', actualAmount);
    const hold = this.#holds.get(id);
    if (!hold) return { settled: false, reserved: 0 };
    this.#holds.delete(id);
    const results = await this.#using(hold.parts, () =>
      Promise.all(hold.parts.map((ledger) => ledger.settle(id, actualAmount, records))),
    );
    const after = new Map<string, ScopeUsage>();
    for (const result of results) for (const scope of result.scopes ?? []) after.set(scope.key, scope);
    return {
      settled: true,
      reserved: hold.amount,
      scopes: hold.keys.map((key) => after.get(key) ?? { key, spent: 0, reserved: 0, credit: 0 }),
    };
  }

  release(id: string): Promise<SettleResult> {
    return this.settle(id, 0);
  }

  async usage(scopes: readonly ScopeRef[]): Promise<ScopeUsage[]> {
    const bySlot = new Map<string, { ledger: RedisReservationLedger; at: number[]; keys: string[] }>();
    scopes.forEach((scope, at) => {
      const slot = slotOf(scope);
      const tag = slotTag(slot);
      let group = bySlot.get(tag);
      if (!group) {
        group = { ledger: this.#ledgerOf(slot), at: [], keys: [] };
        bySlot.set(tag, group);
      }
      group.at.push(at);
      group.keys.push(scopeKeyOf(scope));
    });
    const usage: ScopeUsage[] = new Array<ScopeUsage>(scopes.length);
    const groups = [...bySlot.values()];
    await this.#using(
      groups.map((group) => group.ledger),
      () =>
        Promise.all(
          groups.map(async ({ ledger, at, keys }) => {
            (await ledger.usage(keys)).forEach((scope, i) => (usage[at[i]!] = scope));
          }),
        ),
    );
    return usage;
  }

  adjustSpent(scope: ScopeRef, delta: number, expiresAt: number): Promise<void> {
    const ledger = this.#ledgerOf(slotOf(scope));
    return this.#using([ledger], () => ledger.adjustSpent(scopeKeyOf(scope), delta, expiresAt));
  }

  /** The stores' rebuilt marks, one per slot (see RedisRebuildGate). */
  get rebuildGate(): RebuildGate | undefined {
    return this.#options.gate;
  }

  addCredit(scope: ScopeRef, amount: number, expiresAt: number): Promise<void> {
    const ledger = this.#ledgerOf(slotOf(scope));
    return this.#using([ledger], () => ledger.addCredit(scopeKeyOf(scope), amount, expiresAt));
  }

  restoreSpent(scope: ScopeRef, spent: number, expiresAt: number): Promise<boolean> {
    const ledger = this.#ledgerOf(slotOf(scope));
    return this.#using([ledger], () => ledger.restoreSpent(scopeKeyOf(scope), spent, expiresAt));
  }

  correctSpent(scope: ScopeRef, from: number, to: number, expiresAt: number): Promise<SpendCorrection> {
    const ledger = this.#ledgerOf(slotOf(scope));
    return this.#using([ledger], () => ledger.correctSpent(scopeKeyOf(scope), from, to, expiresAt));
  }

  holds(scope: ScopeRef): Promise<HeldAmount[]> {
    const ledger = this.#ledgerOf(slotOf(scope));
    return this.#using([ledger], () => ledger.holds(scopeKeyOf(scope)));
  }

  restoreCredit(scope: ScopeRef, credit: number, expiresAt: number): Promise<boolean> {
    const ledger = this.#ledgerOf(slotOf(scope));
    return this.#using([ledger], () => ledger.restoreCredit(scopeKeyOf(scope), credit, expiresAt));
  }

  resetScope(scope: ScopeRef): Promise<void> {
    const ledger = this.#ledgerOf(slotOf(scope));
    return this.#using([ledger], () => ledger.resetScope(scopeKeyOf(scope)));
  }

  /** Settles not sent yet, over every slot (for shutdown reports and tests). */
  get pendingSettles(): number {
    let pending = 0;
    for (const ledger of this.#ledgers.values()) pending += ledger.pendingSettles;
    return pending;
  }

  /** Closes every slot's ledger: each sends what is pending, or spools it (see RedisReservationLedger.close). */
  async close(deadlineMs = 2_000): Promise<void> {
    await Promise.all([...this.#ledgers.values()].map((ledger) => ledger.close(deadlineMs)));
  }
}

function slotOf(scope: ScopeRef): string | undefined {
  return typeof scope === 'string' ? undefined : scope.slot;
}
