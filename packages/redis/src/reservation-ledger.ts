// Reservation ledger on Redis: all-or-nothing reserve across scopes in one script; settles summed in-process and sent in numbered batches, each landing exactly once.
import { randomUUID } from 'node:crypto';
import {
  assertReserveNumbers,
  assertSettledRecords,
  assertSpendCorrection,
  assertStoreAmount,
  assertStoreIncrease,
  assertStoreNumber,
  scopeKeyOf,
} from '@tollgate/core/store-contracts';
import type {
  LedgerScope,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  ScopeRef,
  ScopeUsage,
  SettledRecord,
  SettleResult,
  SpendCorrection,
  HeldAmount,
} from '@tollgate/core/store-contracts';
import type { Connection } from './connection.js';
import { SpendNotRebuiltError } from '@tollgate/core/store-contracts';
import { DEFAULT_TAG } from './hash-slot.js';
import type { LuaScript } from './lua.js';
import type { RedisRebuildGate } from './rebuild-gate.js';
import * as scripts from './scripts.js';
import { LostReserves, RECEIPTS } from './lost-reserves.js';
import { batchArgs, claimSpool, dropSpoolFiles, RETRY_MAX_MS, spoolBatches, sumSettles } from './settle-batches.js';
import type { Batch, Held, InDoubt, PendingSettle } from './settle-batches.js';

/** A budget scope and its birth: Redis's time in µs when its hash was written from nothing, as a decimal string. */
export interface ScopeBirth {
  key: string;
  birth: string;
}

/** Scopes whose births this process remembers: enough for every scope of a busy deployment. */
const MAX_BIRTHS = 10_000;

/** Scopes' usage from a script's reply: (spent, reserved) per scope, then credit per scope. */
function usageOfReply(keys: readonly string[], reply: readonly unknown[]): ScopeUsage[] {
  const n = keys.length;
  return keys.map((key, i) => ({
    key,
    spent: Number(reply[2 * i]),
    reserved: Number(reply[2 * i + 1]),
    credit: Number(reply[2 * n + i] ?? 0),
  }));
}

/**
 * Each budget scope's birth (see scripts.ts) as this process last saw it. A scope found with
 * another birth was written again from nothing: Redis lost it (restarted without persistence,
 * failed over to an empty replica, the key was deleted) while this process went on. Listeners
 * hear of it at the first reserve that finds it, so spend can be rebuilt from a usage ledger at
 * once, not at the next periodic check. Shared by the ledgers of one stores (every slot's).
 */
export class ScopeBirths {
  readonly #births = new Map<string, string>();
  readonly #listeners = new Set<(scopes: ScopeBirth[]) => void>();

  /** Notes the births a reserve read; tells the listeners of the scopes born again. */
  see(scopes: readonly string[], births: readonly string[]): void {
    let reborn: ScopeBirth[] | undefined;
    for (let i = 0; i < scopes.length; i++) {
      const key = scopes[i]!;
      const birth = births[i]!;
      const known = this.#births.get(key);
      if (known === birth) continue;
      if (known !== undefined && birth !== '') (reborn ??= []).push({ key, birth });
      this.#births.set(key, birth);
      if (this.#births.size > MAX_BIRTHS) this.#births.delete(this.#births.keys().next().value!);
    }
    if (!reborn) return;
    for (const listener of this.#listeners) {
      try {
        listener(reborn);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  /** Calls `listener` with the scopes found born again; returns the unsubscribe. */
  onLoss(listener: (scopes: ScopeBirth[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

export interface LedgerOptions {
  /** Where the births of scopes are kept (one per stores, shared by its ledgers). */
  births?: ScopeBirths;
  /** Settles are summed for this long before one batch goes out. @default 2 */
  settleDelayMs?: number;
  /**
   * A directory where settles that could not land before `close()` are written (one file per
   * ledger), and from which they are sent, exactly once, when the next ledger with the same
   * directory starts. Processes may share one.
   */
  spool?: string;
  /** Sends what earlier ledgers left in `spool` at start (a sharded ledger lets one of its slots do it). @default true */
  claimSpool?: boolean;
  /** The hash tag of every key of this ledger: its Cluster slot. @default '{ledger}' */
  slotTag?: string;
  /** The rebuilt marks of the stores' slots: once required, a reserve is refused in a slot without one. */
  gate?: RedisRebuildGate;
}

/**
 * A scope named twice would be charged twice and released once: each key once (in its first
 * place, with its last limit). A request names a few scopes, nearly always distinct: then they are used as given.
 */
function distinctScopes(scopes: LedgerScope[]): LedgerScope[] {
  if (scopes.length > 8) return scopesByKey(scopes);
  for (let i = 1; i < scopes.length; i++) {
    for (let j = 0; j < i; j++) if (scopes[i]!.key === scopes[j]!.key) return scopesByKey(scopes);
  }
  return scopes;
}

function scopesByKey(scopes: LedgerScope[]): LedgerScope[] {
  return [...new Map(scopes.map((scope) => [scope.key, scope] as const)).values()];
}

/** Bucket size for a TTL: a power of two near an eighth of it, so a scope holds about nine live buckets. */
function bucketSize(ttlMs: number): number {
  return 2 ** Math.floor(Math.log2(Math.max(16, ttlMs / 8)));
}

/** False for a failure that came before the command was sent (node-redis's client offline or closed). */
function mayHaveRun(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name !== 'ClientOfflineError' && name !== 'ClientClosedError';
}
/**
 * The ledger on Redis: one slot per ledger, settles batched and applied once, receipts for lost reserves
 * (docs/architecture.md, "The Redis ledger: reserves, batched settles, receipts").
 */
export class RedisReservationLedger implements ReservationLedger {
  readonly #base: string;
  readonly #held = new Map<string, Held>();
  #pending: PendingSettle[] = [];
  /** The batch on its way, with the settles waiting for it. */
  #sending: { batch: Batch; settles: PendingSettle[] } | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When #timer fires (Date.now() ms). */
  #timerDue = 0;
  #flushing: Promise<void> | undefined;
  /** Numbered batches of this ledger (a process's own sequence in Redis). */
  readonly #id = randomUUID();
  #seq = 0;
  /** Reserves sent: each one's receipt field and tag. */
  #reserves = 0;
  /** This ledger's ring of reserve receipts. */
  readonly #receiptsKey: string;
  readonly #lost: LostReserves;
  /** Spooled batches of earlier ledgers, sent before anything of this one. */
  #replay: Batch[] = [];
  /** The spool files this ledger took over, deleted once their batches landed. */
  #claimed: string[] = [];
  #closed = false;
  readonly #delayMs: number;
  readonly #spool: string | undefined;
  readonly #births: ScopeBirths | undefined;
  readonly #gate: RedisRebuildGate | undefined;
  readonly #tag: string;
  /** The slot's record of what the last rebuild after a loss read (RedisRebuildGate.recordCut). */
  readonly #cutKey: string;

  constructor(
    private readonly connection: Connection,
    prefix: string,
    options: LedgerOptions = {},
  ) {
    this.#tag = options.slotTag ?? DEFAULT_TAG;
    this.#base = `${prefix}${this.#tag}:`;
    this.#gate = options.gate;
    this.#receiptsKey = `${this.#base}receipts:${this.#id}`;
    this.#lost = new LostReserves(this.#receiptsKey, (script, keys, args) => this.#run(script, keys, args));
    this.#cutKey = `${this.#base}counted`;
    this.#delayMs = options.settleDelayMs ?? 2;
    this.#spool = options.spool;
    this.#births = options.births;
    if (this.#spool && options.claimSpool !== false) this.#claimSpool(this.#spool);
  }

  /** Takes over the spool files other ledgers left (see claimSpool); their batches go before anything of this one. */
  #claimSpool(directory: string): void {
    const { claimed, batches } = claimSpool(directory, this.#id);
    this.#claimed.push(...claimed);
    this.#replay.push(...batches);
    if (this.#replay.length > 0) this.#schedule(0);
    else this.#dropClaimed();
  }

  #dropClaimed(): void {
    dropSpoolFiles(this.#claimed);
    this.#claimed = [];
  }

  #run(script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return this.connection.run(script, keys, args, 'ledger');
  }

  #scopeKey(key: string): string {
    return `${this.#base}scope:${key}`;
  }

  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    // Lua reads "NaN" as a number: refused here, before it reaches a scope.
    assertReserveNumbers(request);
    const live = this.#held.get(request.id);
    if (live && Number(live.bucket) > Date.now()) return { ok: true, id: request.id, amount: live.amount };
    const scopes = distinctScopes(request.scopes);
    const amount = Math.max(0, request.amount);
    const least = Math.min(amount, Math.max(0, request.minAmount ?? amount));
    const ttlMs = Math.max(1, Math.ceil(request.ttlMs));
    const keys = new Array<string>(scopes.length + 1);
    const args = new Array<number | string>(6 + 2 * scopes.length);
    args[0] = amount;
    args[1] = least;
    args[2] = ttlMs;
    args[3] = bucketSize(ttlMs);
    for (let i = 0; i < scopes.length; i++) {
      const scope = scopes[i]!;
      keys[i] = this.#scopeKey(scope.key);
      args[4 + 2 * i] = scope.limit;
      args[5 + 2 * i] = Math.ceil(scope.expiresAt);
    }
    const seq = this.#reserves++;
    keys[scopes.length] = this.#receiptsKey;
    args[4 + 2 * scopes.length] = seq % RECEIPTS;
    args[5 + 2 * scopes.length] = `${seq},${request.id}`;
    if (this.#gate?.required) {
      keys.push(this.#gate.markOf(this.#tag));
      args.push('gate');
    }
    let reply: unknown[];
    try {
      reply = (await this.#run(scripts.reserve, keys, args)) as unknown[];
      // A slot never marked (new on a cluster) is marked at once and asked again; one Redis lost is rebuilt first.
      if (reply[0] === -1 && (await this.#gate!.refused(this.#tag)))
        reply = (await this.#run(scripts.reserve, keys, args)) as unknown[];
    } catch (error) {
      // It may have run before the failure: its receipt, if any, tells (one that held nothing left none).
      if (mayHaveRun(error))
        this.#doubt({
          seq,
          id: request.id,
          scopes: scopes.map((scope) => scope.key),
          periodEnds: scopes.map((scope) => Math.ceil(scope.expiresAt)),
        });
      throw error;
    }
    if (reply[0] === -1) throw new SpendNotRebuiltError(this.#tag);
    if (reply[0] !== 1) {
      const refused = scopes[Number(reply[1]) - 1] as LedgerScope;
      return {
        ok: false,
        scope: refused.key,
        limit: refused.limit,
        remaining: Number(reply[2]),
        resetAt: refused.expiresAt,
      };
    }
    const granted = Number(reply[1]);
    // An id reserved again after it expired is a new reservation; the old one was charged.
    const n = scopes.length;
    const scopeKeys = scopes.map((scope) => scope.key);
    const births = scopes.map((_, i) => String(reply[3 + 2 * n + i] ?? ''));
    this.#held.set(request.id, {
      amount: granted,
      bucket: String(reply[2]),
      scopes: scopeKeys,
      births,
      periodEnds: scopes.map((scope) => Math.ceil(scope.expiresAt)),
    });
    this.#births?.see(scopeKeys, births);
    return {
      ok: true,
      id: request.id,
      amount: granted,
      scopes: scopes.map((scope, i) => ({
        key: scope.key,
        limit: scope.limit,
        spent: Number(reply[3 + 2 * i]),
        reserved: Number(reply[4 + 2 * i]),
        credit: Number(reply[3 + 3 * n + i] ?? 0),
      })),
    };
  }

  async settle(id: string, actualAmount: number, records?: readonly SettledRecord[]): Promise<SettleResult> {
    assertStoreAmount('ledger.settle', 'actualAmount', actualAmount);
    assertSettledRecords('ledger.settle', records);
    const held = this.#held.get(id);
    if (!held) return { settled: false, reserved: 0 };
    this.#held.delete(id);
    const scopes = await new Promise<ScopeUsage[]>((resolve, reject) => {
      this.#pending.push({ held, actual: Math.max(0, actualAmount), records, resolve, reject });
      this.#schedule(this.#delayMs);
    });
    return { settled: true, reserved: held.amount, scopes };
  }

  release(id: string): Promise<SettleResult> {
    return this.settle(id, 0);
  }

  /**
   * Lowers a live reservation to `amount`: the rest goes back uncharged with the next batch (a
   * sharded reserve that another slot granted less). Resolves with its scopes once that landed.
   */
  shrink(id: string, amount: number): Promise<ScopeUsage[]> {
    const held = this.#held.get(id);
    if (!held || amount >= held.amount) return Promise.resolve([]);
    const givenBack = { ...held, amount: held.amount - amount };
    held.amount = amount;
    return new Promise<ScopeUsage[]>((resolve, reject) => {
      this.#pending.push({ held: givenBack, actual: 0, resolve, reject });
      this.#schedule(this.#delayMs);
    });
  }

  /** When a live reservation's bucket expires (Redis time, ms), or undefined when this ledger holds no such id. */
  heldUntil(id: string): number | undefined {
    const held = this.#held.get(id);
    return held ? Number(held.bucket) : undefined;
  }

  /** A flush in `delayMs` (or sooner, when one is due sooner already); the flush under way reschedules itself. */
  #schedule(delayMs: number): void {
    if (this.#flushing) return;
    const due = Date.now() + delayMs;
    if (this.#timer) {
      if (due >= this.#timerDue) return;
      clearTimeout(this.#timer);
    }
    this.#timerDue = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#flush();
    }, delayMs);
  }

  /** Sends spooled batches, then one batch of everything pending; reschedules while more is pending. */
  #flush(): Promise<void> {
    if (this.#flushing) return this.#flushing;
    const run = async () => {
      while (this.#replay.length > 0) {
        await this.#sendUntilLanded(this.#replay[0]!);
        this.#replay.shift();
        if (this.#replay.length === 0) this.#dropClaimed();
      }
      const pending = this.#pending;
      if (pending.length > 0) {
        this.#pending = [];
        let made: { batch: Batch; scopeKeys: string[] };
        try {
          made = this.#batchOf(pending);
        } catch (error) {
          // #batchOf reads every record without throwing, but iterating a caller's array can still throw (a Proxy):
          // then these settles fail rather than wait forever, and their reservations are charged in full at expiry.
          for (const settle of pending) settle.reject(error);
          return;
        }
        const { batch, scopeKeys } = made;
        this.#sending = { batch, settles: pending };
        const balances = await this.#sendUntilLanded(batch);
        this.#sending = undefined;
        const byKey = new Map<string, ScopeUsage>();
        scopeKeys.forEach((key, i) => byKey.set(key, balances[i] ?? { key, spent: 0, reserved: 0, credit: 0 }));
        for (const settle of pending) settle.resolve(settle.held.scopes.map((key) => byKey.get(key)!));
      }
      // After the settles: a lookup that keeps failing never holds them up.
      if (this.#lost.size > 0) await this.#lookUpInDoubt();
    };
    const flushing = run().finally(() => {
      this.#flushing = undefined;
      if (this.#closed) return;
      if (this.#pending.length > 0) this.#schedule(this.#delayMs);
      else if (this.#lost.size > 0) this.#schedule(this.#lookupDelay());
    });
    this.#flushing = flushing;
    return flushing;
  }

  /** The pending settles summed per scope and bucket (see sumSettles), as the next numbered batch. */
  #batchOf(pending: PendingSettle[]): { batch: Batch; scopeKeys: string[] } {
    const summed = sumSettles(pending);
    const { scopeKeys } = summed;
    const seq = ++this.#seq;
    const gated = this.#gate?.required === true;
    const args = batchArgs(seq, gated, summed);
    const keys = [...scopeKeys.map((key) => this.#scopeKey(key)), this.#sequenceKey(this.#id), this.#cutKey];
    if (gated) keys.push(this.#gate!.markOf(this.#tag));
    return { batch: { ledger: this.#id, seq, scopes: scopeKeys.length, keys, args }, scopeKeys };
  }

  #doubt(reserve: InDoubt): void {
    this.#lost.add(reserve);
    this.#schedule(this.#lookupDelay());
  }

  /** Ms until the receipts may be read again: the settle delay, or what is left of a failed lookup's backoff. */
  #lookupDelay(): number {
    return Math.max(this.#delayMs, this.#lost.notBefore - Date.now());
  }

  /** What the lost reserves held, given back (settled at 0) with the next batch. */
  #lookUpInDoubt(): Promise<void> {
    const settle = () => undefined;
    return this.#lost.lookUp((held) => this.#pending.push({ held, actual: 0, resolve: settle, reject: settle }));
  }

  #sequenceKey(ledger: string): string {
    return `${this.#base}seq:${ledger}`;
  }

  /** Sends a batch again and again (same number: it lands once) until Redis answers, or the ledger closes. */
  async #sendUntilLanded(batch: Batch): Promise<ScopeUsage[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        const reply = (await this.#run(scripts.settleBatch, batch.keys, batch.args)) as unknown[];
        // After the tag's closing brace (the prefix has none): a replayed batch may carry another slot's tag.
        const scopeKeys = batch.keys
          .slice(0, batch.scopes ?? batch.keys.length - 1)
          .map((key) => key.slice(key.indexOf('}') + ':scope:'.length + 1));
        // Already applied by an attempt whose reply was lost: its balances are read instead.
        if (reply[0] !== 1) return await this.usage(scopeKeys);
        return usageOfReply(scopeKeys, reply.slice(1));
      } catch (error) {
        if (this.#closed) throw error;
        if (attempt === 0)
          process.emitWarning(
            `tollgate: a budget settle batch could not land (${error instanceof Error ? error.message : String(error)}); retrying until it does`,
            { code: 'TOLLGATE_SETTLE_RETRY' },
          );
        await new Promise((resolve) => setTimeout(resolve, Math.min(RETRY_MAX_MS, 50 * 2 ** attempt)));
      }
    }
  }

  async usage(scopes: readonly ScopeRef[]): Promise<ScopeUsage[]> {
    if (scopes.length === 0) return [];
    const keys = scopes.map(scopeKeyOf);
    const reply = (await this.#run(
      scripts.ledgerUsage,
      keys.map((key) => this.#scopeKey(key)),
      [],
    )) as unknown[];
    return usageOfReply(keys, reply);
  }

  async holds(scope: ScopeRef): Promise<HeldAmount[]> {
    const reply = (await this.#run(scripts.ledgerHolds, [this.#scopeKey(scopeKeyOf(scope))], [])) as string[];
    const held: HeldAmount[] = [];
    for (let i = 0; i < reply.length; i += 2) held.push({ expiresAt: Number(reply[i]), amount: Number(reply[i + 1]) });
    return held.filter((hold) => hold.amount > 0);
  }

  async adjustSpent(scope: ScopeRef, delta: number, expiresAt: number): Promise<void> {
    assertStoreIncrease('ledger.adjustSpent', 'delta', delta);
    assertStoreNumber('ledger.adjustSpent', 'expiresAt', expiresAt);
    await this.#run(scripts.addToScope, [this.#scopeKey(scopeKeyOf(scope))], ['s', delta, Math.ceil(expiresAt)]);
  }

  async addCredit(scope: ScopeRef, amount: number, expiresAt: number): Promise<void> {
    assertStoreIncrease('ledger.addCredit', 'amount', amount);
    assertStoreNumber('ledger.addCredit', 'expiresAt', expiresAt);
    await this.#run(scripts.addToScope, [this.#scopeKey(scopeKeyOf(scope))], ['cr', amount, Math.ceil(expiresAt)]);
  }

  async restoreCredit(scope: ScopeRef, credit: number, expiresAt: number): Promise<boolean> {
    assertStoreAmount('ledger.restoreCredit', 'credit', credit);
    assertStoreNumber('ledger.restoreCredit', 'expiresAt', expiresAt);
    const args = ['cr', credit, Math.ceil(expiresAt), 'raise'];
    return (await this.#run(scripts.addToScope, [this.#scopeKey(scopeKeyOf(scope))], args)) === 1;
  }

  /** The stores' rebuilt marks (see RedisRebuildGate). */
  get rebuildGate(): RedisRebuildGate | undefined {
    return this.#gate;
  }

  async restoreSpent(scope: ScopeRef, spent: number, expiresAt: number): Promise<boolean> {
    assertStoreAmount('ledger.restoreSpent', 'spent', spent);
    assertStoreNumber('ledger.restoreSpent', 'expiresAt', expiresAt);
    const keys = [this.#scopeKey(scopeKeyOf(scope))];
    // Gated: in a slot not marked rebuilt, what lost settles charged meanwhile is weighed against the rebuild's cut.
    if (this.#gate?.required) keys.push(this.#cutKey, this.#gate.markOf(this.#tag));
    return (await this.#run(scripts.restoreSpent, keys, [spent, Math.ceil(expiresAt)])) === 1;
  }

  async correctSpent(scope: ScopeRef, from: number, to: number, expiresAt: number): Promise<SpendCorrection> {
    assertSpendCorrection(from, to, expiresAt);
    const keys = [this.#scopeKey(scopeKeyOf(scope))];
    const reply = (await this.#run(scripts.correctSpent, keys, [from, to, Math.ceil(expiresAt)])) as [string, string];
    return { before: Number(reply[0]), after: Number(reply[1]) };
  }

  async resetScope(scope: ScopeRef): Promise<void> {
    await this.#run(scripts.resetScope, [this.#scopeKey(scopeKeyOf(scope))], []);
  }

  /** Settles not sent yet (for shutdown reports and tests). */
  get pendingSettles(): number {
    return this.#pending.length + this.#replay.length;
  }

  /** Reserves whose reply never came, not looked up yet. */
  get reservesInDoubt(): number {
    return this.#lost.size;
  }

  /** Holds no reservation and has nothing to send: dropping it loses nothing (a sharded ledger drops idle slots' ledgers). */
  get idle(): boolean {
    return (
      this.#held.size === 0 &&
      this.#pending.length === 0 &&
      this.#replay.length === 0 &&
      this.#lost.size === 0 &&
      !this.#timer &&
      !this.#flushing
    );
  }

  /**
   * Sends what is pending, once, within `deadlineMs`; what cannot land goes to the spool file
   * (or, without one, is reported: those reservations are charged their amount when they expire).
   */
  async close(deadlineMs = 2_000): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const landed = await Promise.race([
      (async () => {
        while (
          !this.#closed &&
          (this.#flushing || this.#pending.length > 0 || this.#replay.length > 0 || this.#lost.size > 0)
        ) {
          await this.#flush();
          // Only receipts left to read, their lookup not due yet: wait for it rather than spin.
          const wait = this.#lost.notBefore - Date.now();
          if (wait > 0 && this.#pending.length === 0 && this.#replay.length === 0)
            await new Promise((resolve) => setTimeout(resolve, wait).unref());
        }
        return true;
      })().catch(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), deadlineMs).unref()),
    ]);
    this.#closed = true;
    this.#lost.forget();
    if (landed) return;
    const left = [...this.#replay];
    // The batch on its way may still land: spooled with its number, it is applied once either way.
    const sending = this.#sending;
    if (sending) left.push(sending.batch);
    const pending = this.#pending;
    this.#pending = [];
    if (pending.length > 0) left.push(this.#batchOf(pending).batch);
    const error = new Error('the ledger closed before its settles landed');
    for (const settle of [...(sending?.settles ?? []), ...pending]) settle.reject(error);
    if (left.length === 0) return;
    if (this.#spool) {
      spoolBatches(this.#spool, this.#id, left);
      // Batches of claimed files that did not land are in `left` too: their files are written again under this ledger's name.
      this.#dropClaimed();
      return;
    }
    process.emitWarning(
      `tollgate: ${left.length} budget settle batch(es) could not land before close and no spool is set; their reservations are charged in full when they expire`,
      { code: 'TOLLGATE_SETTLE_LOST' },
    );
  }
}
