// The blocks policy of a budget: a block per scope (a key's, a tenant's, the global one), one reservation in the store
// granted to requests in-process; a request whose scopes have no block is reserved in the store, as without blocks.
import { LeaseExhaustedError } from './lease-outage.js';
import { assertReserveNumbers, assertSettledRecords, assertStoreAmount } from '../store-input.js';
import { promised } from '../maybe-promise.js';
import type { MaybePromise } from '../maybe-promise.js';
import type {
  LedgerScope,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  ScopeBalance,
  ScopeUsage,
  SettledRecord,
  SettleResult,
} from '../stores.js';
import { LEAST_REQUESTS_PER_BLOCK, type BlockDemand, type BlockSends, DirectUntil } from './block-demand.js';
import type { LedgerPolicy } from './wrap-stores.js';

/** A block of one budget scope: one reservation of `amount` in the store, granted to requests in-process. */
interface LedgerBlock {
  id: string;
  signature: string;
  /** The scope as its opener named it: what a successor opened by the sweep reserves. */
  scope: LedgerScope;
  /** The amount of the last request granted from it: what its successor is sized by. */
  units: number;
  amount: number;
  /** Held by live grants plus spent by settled ones. */
  used: number;
  /** What settled grants spent: what the block settles at. */
  spent: number;
  /** The usage records of that spend, passed on with the block's settle (see SettledRecord). */
  records: SettledRecord[];
  live: number;
  retired: boolean;
  bornAt: number;
  /** The longest request ttl the block's reservation outlives. */
  ttlMs: number;
  /** The scope as the block's reserve left it (the whole block counted as reserved). */
  balance: ScopeBalance;
}

/** A request's grant: the same amount from the block of each of its scopes, or for some of them, held in the store. */
interface Grant {
  /** By request scope: its block, or undefined where the scope was reserved in the store (under the request's id). */
  blocks: (LedgerBlock | undefined)[];
  /** Some scopes are held in the store: the settle goes there too. */
  direct: boolean;
  amount: number;
  expiresAt: number;
}

const signatures = new WeakMap<LedgerScope, string>();

/**
 * What makes two reserves' scope one block: its key, limit and slot. Not `expiresAt`: a scope's
 * key names its period, and some callers give a time from now (the block keeps its opener's).
 * budgetGuard hands the same scope objects to every request of a period: each one's is made once.
 */
function signatureOf(scope: LedgerScope): string {
  let text = signatures.get(scope);
  if (text === undefined) {
    text = `${scope.key}\u0000${scope.limit}\u0000${scope.slot ?? ''}`;
    signatures.set(scope, text);
  }
  return text;
}

/** Each scope's balance in request order: its block's, or the store's for a scope reserved there. */
function balancesOf(
  parts: readonly (LedgerBlock | undefined)[],
  scopes: readonly LedgerScope[],
  stored: readonly ScopeUsage[] | undefined,
): ScopeBalance[] {
  const balances = new Array<ScopeBalance>(parts.length);
  let j = 0;
  for (let i = 0; i < parts.length; i++) {
    const block = parts[i];
    if (block) {
      balances[i] = block.balance;
      continue;
    }
    const scope = scopes[i]!;
    const usage = stored?.[j++];
    balances[i] = {
      key: scope.key,
      limit: scope.limit,
      spent: usage?.spent ?? 0,
      reserved: usage?.reserved ?? 0,
      credit: usage?.credit ?? 0,
    };
  }
  return balances;
}

/** Takes `amount` from each block (undone with `sign` -1): the in-process part of a grant. */
function take(
  blocks: readonly (LedgerBlock | undefined)[],
  amount: number,
  sign: 1 | -1,
  settle: (block: LedgerBlock) => void,
): void {
  for (const block of blocks) {
    if (!block) continue;
    block.used += sign * amount;
    block.live += sign;
    if (sign > 0) block.units = amount;
    if (sign < 0 && block.retired && block.live === 0) settle(block);
  }
}

let blockCount = 0;

export class LedgerBlocks implements LedgerPolicy {
  readonly #blocks = new Map<string, LedgerBlock>();
  readonly #taking = new Map<string, Promise<unknown>>();
  readonly #direct = new DirectUntil();
  readonly #grants = new Map<string, Grant>();
  /** Counts retireAll calls: a block reserved across one is given back as it lands. */
  #generation = 0;
  /** Blocks hand out and open only before this (see BlockState.trustLedgerUntil); no bound until one is set. */
  #trustedUntil = Infinity;
  readonly #idPrefix = `block:${process.pid.toString(36)}:${Math.random().toString(36).slice(2, 10)}:`;
  /** A retired block's settle, made once for `take`. */
  readonly #settleBlock = (block: LedgerBlock): void => this.#settle(block);

  constructor(
    readonly inner: ReservationLedger,
    readonly demand: BlockDemand,
    readonly sends: BlockSends,
  ) {}

  get open(): number {
    return this.#blocks.size;
  }

  reserve(request: ReserveRequest): MaybePromise<ReserveResult> {
    assertReserveNumbers(request);
    const held = this.#grants.get(request.id);
    // A second reserve of a live id holds nothing more, as in the store.
    if (held) return { ok: true, id: request.id, amount: held.amount };
    if (request.scopes.length === 0) return this.inner.reserve(request);
    const blocks = this.#blocksFor(request, this.demand.options.clock());
    return blocks ? this.#grantFrom(blocks, request) : this.#reserveInBlocks(request);
  }

  settle(
    id: string,
    actual: number,
    records?: readonly SettledRecord[],
    _options?: unknown,
  ): MaybePromise<SettleResult> {
    const grant = this.#grants.get(id);
    if (!grant) return this.inner.settle(id, actual, records);
    // Checked before any part of the grant is let go (a NaN would poison its blocks' spend): a settle refused at the
    // door can be made again.
    assertStoreAmount('ledger.settle', 'actualAmount', actual);
    assertSettledRecords('ledger.settle', records);
    // A grant with a part in the store settles there too.
    if (grant.direct) return this.#settleMixed(id, grant, actual, records);
    return this.#settleGrant(id, grant, actual, records);
  }

  release(id: string): MaybePromise<SettleResult> {
    const grant = this.#grants.get(id);
    if (!grant) return this.inner.release(id);
    return grant.direct ? this.#settleMixed(id, grant, 0) : this.#settleGrant(id, grant, 0);
  }

  /**
   * Due blocks (past their age, or paced early: BlockDemand.dueNow) retire and settle; a grant never settled by its ttl
   * is charged its amount, as the store would.
   */
  sweep(now: number): void {
    for (const block of this.demand.dueNow(this.#blocks, now)) this.#renew(block, now);
    // The store charges its own part of an expired grant, as any reservation nobody settled.
    this.#grants.forEach((grant, id) => {
      if (grant.expiresAt <= now) this.#settleBlocks(id, grant, grant.amount);
    });
    this.#direct.sweep(now);
  }

  /** See BlockState.trustLedgerUntil. */
  trustUntil(at: number): void {
    this.#trustedUntil = at;
  }

  retireAll(): void {
    // A block whose reserve is still under way is given back when it lands (see #open).
    this.#generation++;
    for (const block of [...this.#blocks.values()]) this.#retire(block);
  }

  /**
   * A due block retires, and while its scope is still asked for (the block handed out something within the last
   * sweeps, and the scope is hot) its successor is reserved at once, sized to the demand now: the reserves of one
   * sweep start in one turn, so they go to the store in one call, where the next request of each scope would otherwise
   * open it in a call of its own, and wait for it. Requests that come meanwhile wait for that reserve (#open).
   */
  #renew(block: LedgerBlock, now: number): void {
    this.#retire(block);
    const { signature, scope } = block;
    // Not for a scope whose period ended: its requests name the next period's scope now.
    if (!this.demand.inUse(block, now) || scope.expiresAt <= now) return;
    const recent = this.demand.recentOf(signature, now);
    const size = recent > 0 ? this.#blockSize(scope, signature, block.units, recent, recent, now) : undefined;
    // A reserve that fails leaves the scope without a block: its next request opens one, as at a cold start.
    if (size !== undefined) this.sends.send(this.#open(scope, signature, block.ttlMs, size).catch(() => undefined));
  }

  /**
   * The size of a block of `scope` for requests of `units`, `recent` of them seen within `maxAgeMs` and `expected` to
   * come; undefined where the scope is counted per request: not hot yet, a limit too small for a block of two such
   * requests, or lately too near it (DirectUntil).
   */
  #blockSize(
    scope: LedgerScope,
    signature: string,
    units: number,
    recent: number,
    expected: number,
    now: number,
  ): number | undefined {
    const cap = this.demand.capOf(scope.limit);
    if (!(units > 0) || cap < units * LEAST_REQUESTS_PER_BLOCK || this.#direct.holds(signature, now)) return undefined;
    if (now >= this.#trustedUntil) return undefined;
    return this.demand.hot(recent) ? this.demand.sizeOf(cap, units, expected) : undefined;
  }

  #settle(block: LedgerBlock): void {
    // The inner ledger delivers it (retried, spooled at close); a block whose settle is lost is charged in full at expiry.
    this.sends.send(this.inner.settle(block.id, block.spent, block.records));
  }

  #retire(block: LedgerBlock): void {
    if (block.retired) return;
    block.retired = true;
    if (this.#blocks.get(block.signature) === block) this.#blocks.delete(block.signature);
    if (block.live === 0) this.#settle(block);
  }

  #fits(block: LedgerBlock | undefined, request: ReserveRequest, now: number): block is LedgerBlock {
    return (
      block !== undefined &&
      !block.retired &&
      now - block.bornAt < this.demand.options.maxAgeMs &&
      now < this.#trustedUntil &&
      request.ttlMs <= block.ttlMs &&
      block.amount - block.used >= request.amount
    );
  }

  /** The open block of every scope of `request` when each has room for it now; undefined otherwise. */
  #blocksFor(request: ReserveRequest, now: number): LedgerBlock[] | undefined {
    const { scopes } = request;
    const found = new Array<LedgerBlock>(scopes.length);
    for (let i = 0; i < scopes.length; i++) {
      const block = this.#blocks.get(signatureOf(scopes[i]!));
      if (!this.#fits(block, request, now)) return undefined;
      found[i] = block;
    }
    for (const block of found) this.demand.note(block.signature, now);
    return found;
  }

  #grantFrom(blocks: LedgerBlock[], request: ReserveRequest): ReserveResult {
    const balances = new Array<ScopeBalance>(blocks.length);
    for (let i = 0; i < blocks.length; i++) {
      const block = blocks[i]!;
      block.used += request.amount;
      block.live += 1;
      block.units = request.amount;
      balances[i] = block.balance;
    }
    const expiresAt = this.demand.options.clock() + request.ttlMs;
    this.#grants.set(request.id, { blocks, direct: false, amount: request.amount, expiresAt });
    return { ok: true, id: request.id, amount: request.amount, scopes: balances };
  }

  /**
   * A request whose scopes are not all served by open blocks: blocks open for the hot scopes that
   * have none, and the scopes still without one are reserved in the store (one reserve of just
   * those), all-or-nothing with what the blocks granted. A global scope every tenant shares is
   * then served from its block while each thin tenant's scope is reserved per request.
   */
  async #reserveInBlocks(request: ReserveRequest): Promise<ReserveResult> {
    const { scopes } = request;
    const { clock } = this.demand.options;
    // Scopes named twice or nothing to hold: counted in the store as a whole. A grant that may be clamped (`minAmount`)
    // is served from blocks only whole: a block with room for the whole amount means the scope had it; where none has,
    // the store clamps it, as without blocks.
    if (!(request.amount > 0) || new Set(scopes.map((scope) => scope.key)).size !== scopes.length) {
      return this.inner.reserve(request);
    }
    const recent = scopes.map((scope) => this.demand.note(signatureOf(scope), clock()));
    for (let attempt = 0; ; attempt++) {
      const now = clock();
      const parts = new Array<LedgerBlock | undefined>(scopes.length);
      const opening: Promise<void>[] = [];
      let direct = 0;
      for (let i = 0; i < scopes.length; i++) {
        const scope = scopes[i]!;
        const signature = signatureOf(scope);
        const block = this.#blocks.get(signature);
        if (this.#fits(block, request, now)) {
          parts[i] = block;
          continue;
        }
        direct++;
        const size =
          attempt === 0
            ? this.#blockSize(
                scope,
                signature,
                request.amount,
                recent[i]!,
                this.demand.expected(signature, now, recent[i]!),
                now,
              )
            : undefined;
        if (size !== undefined) opening.push(this.#open(scope, signature, request.ttlMs, size));
      }
      if (opening.length > 0) {
        await Promise.all(opening);
        continue;
      }
      if (direct === scopes.length) return this.inner.reserve(request);
      return this.#reserveRest(request, parts, direct > 0);
    }
  }

  /** A grant from the blocks in `parts`, the scopes without one reserved in the store (all-or-nothing with them). */
  async #reserveRest(
    request: ReserveRequest,
    parts: (LedgerBlock | undefined)[],
    direct: boolean,
  ): Promise<ReserveResult> {
    take(parts, request.amount, 1, this.#settleBlock);
    let stored: ReserveResult | undefined;
    if (direct) {
      const rest = request.scopes.filter((_, i) => parts[i] === undefined);
      try {
        stored = await this.inner.reserve({ ...request, scopes: rest });
      } catch (error) {
        take(parts, request.amount, -1, this.#settleBlock);
        throw error;
      }
      if (!stored.ok) {
        take(parts, request.amount, -1, this.#settleBlock);
        return stored;
      }
    }
    // The store may have clamped its part (`minAmount`): the blocks' parts hold the same, no more.
    const granted = stored?.ok ? stored.amount : request.amount;
    if (granted < request.amount) for (const block of parts) if (block) block.used -= request.amount - granted;
    const expiresAt = this.demand.options.clock() + request.ttlMs;
    this.#grants.set(request.id, { blocks: parts, direct, amount: granted, expiresAt });
    return {
      ok: true,
      id: request.id,
      amount: granted,
      scopes: balancesOf(parts, request.scopes, stored?.ok ? stored.scopes : undefined),
    };
  }

  /**
   * Opens a block of one scope for requests of up to `ttlMs`, or marks it counted per request for a while when it cannot
   * (too near its limit, a lease's slice too small).
   */
  async #open(scope: LedgerScope, signature: string, ttlMs: number, size: number): Promise<void> {
    const taking = this.#taking.get(signature);
    if (taking) {
      await taking;
      return;
    }
    const { clock, maxAgeMs } = this.demand.options;
    const generation = this.#generation;
    const id = `${this.#idPrefix}${(++blockCount).toString(36)}`;
    // Held in the store past the latest its last grant can end (an age of maxAgeMs, then a grant's ttl) by two sweeps:
    // the one that sees it due and settles it, and one more for a late timer and the reserve's round trip. Shorter, the
    // store charged a live block whole until its late settle gave the rest back, refusing others meanwhile.
    const held = ttlMs + maxAgeMs + 2 * this.demand.sweepMs;
    const take = promised(() => this.inner.reserve({ id, amount: size, scopes: [scope], ttlMs: held }));
    this.#taking.set(
      signature,
      take.catch(() => undefined),
    );
    let taken: ReserveResult | undefined;
    try {
      taken = await take;
    } catch (error) {
      // A lease's slice (the store is out) too small for a block refuses it as a limit would.
      if (!(error instanceof LeaseExhaustedError)) throw error;
    } finally {
      this.#taking.delete(signature);
    }
    if (!taken?.ok) {
      // Too near its limit or the end of a slice for a block: requests naming this scope are reserved per request for a while.
      this.#direct.set(signature, clock() + maxAgeMs);
      return;
    }
    this.#direct.delete(signature);
    const balance = taken.scopes?.[0] ?? {
      key: scope.key,
      limit: scope.limit,
      spent: 0,
      reserved: taken.amount,
      credit: 0,
    };
    const opened: LedgerBlock = {
      id,
      signature,
      scope,
      units: 0,
      amount: taken.amount,
      used: 0,
      spent: 0,
      records: [],
      live: 0,
      retired: false,
      bornAt: clock(),
      ttlMs,
      balance,
    };
    if (generation !== this.#generation) {
      // Every block was given back while this one was reserved (retireAll, a close): it goes back too, unused.
      this.#retire(opened);
      return;
    }
    const before = this.#blocks.get(signature);
    if (before) this.#retire(before);
    this.#blocks.set(signature, opened);
  }

  /** The in-process part of a settle (every block part); the store's part, if any, is the caller's to send. */
  #settleBlocks(id: string, grant: Grant, actual: number, records?: readonly SettledRecord[]): void {
    this.#grants.delete(id);
    for (const block of grant.blocks) {
      if (!block) continue;
      block.live -= 1;
      block.spent += actual;
      if (records) for (const record of records) block.records.push(record);
      block.used += actual - grant.amount;
      if (block.retired && block.live === 0) this.#settle(block);
    }
  }

  #settleGrant(id: string, grant: Grant, actual: number, records?: readonly SettledRecord[]): SettleResult {
    this.#settleBlocks(id, grant, actual, records);
    const balances: ScopeBalance[] = [];
    for (const block of grant.blocks) if (block) balances.push(block.balance);
    return { settled: true, reserved: grant.amount, scopes: balances };
  }

  /** A grant with a part in the store: the blocks' part now, the store's settled there (its balances reported). */
  async #settleMixed(
    id: string,
    grant: Grant,
    actual: number,
    records?: readonly SettledRecord[],
  ): Promise<SettleResult> {
    this.#settleBlocks(id, grant, actual, records);
    const stored = await this.inner.settle(id, actual, records);
    const balances: ScopeUsage[] = [];
    let j = 0;
    for (const block of grant.blocks) {
      if (block) balances.push(block.balance);
      else if (stored.scopes?.[j]) balances.push(stored.scopes[j++]!);
    }
    return { settled: true, reserved: grant.amount, scopes: balances };
  }
}
