// Blocks of the global budget held by one process on a Redis Cluster: reserved in the global slot a block at a time, handed out to
// requests in-process, settled as one. The global slot's shard then sees one reserve and one settle per block, not per request.
import { randomUUID } from 'node:crypto';
import type { LedgerScope, ReserveRequest, ReserveResult, ScopeBalance } from '@tollgate/core';
import type { RedisReservationLedger } from './reservation-ledger.js';

export interface GlobalBlockOptions {
  /** A block's size as a share of the smallest global limit it covers (never less than the request that opens it). @default 0.001 */
  share?: number;
  /** A block hands out for at most this long, then what it did not hand out goes back with its settle. @default 1000 */
  maxAgeMs?: number;
}

interface Block {
  id: string;
  ledger: RedisReservationLedger;
  /** What the block holds in the global slot. */
  amount: number;
  /** Held by live requests plus spent by finished ones. */
  used: number;
  /** Spent by finished requests: what the block settles at. */
  spent: number;
  live: number;
  retired: boolean;
  bornAt: number;
  /** The global scopes as the block's reserve left them (its whole amount counted as reserved). */
  balances: ScopeBalance[];
}

/** A request's share of a block: what its settle gives back to the block. */
export interface BlockGrant {
  block: Block;
  amount: number;
}

export type BlockTake = { ok: true; grant: BlockGrant; balances: ScopeBalance[] } | { ok: false; refusal: Extract<ReserveResult, { ok: false }> };

/** What makes two requests' global scopes the same block: their keys, limits and periods. */
function signature(scopes: readonly LedgerScope[]): string {
  let text = '';
  for (const scope of scopes) text += `${scope.key}\u0000${scope.limit}\u0000${scope.expiresAt}\u0001`;
  return text;
}

/**
 * One open block per set of global scopes. A request takes what it needs from the open block; a
 * block too small for it, or older than `maxAgeMs`, is retired and a new one reserved (with the
 * request's amount as its least, so near the limit a block is only what still fits). A retired
 * block settles at what its requests spent once the last of them has settled, exactly once, as
 * any settle. The global budget is never overshot: every grant comes out of a reservation the
 * global slot made; what a process holds unused in a block waits at most `maxAgeMs` to go back.
 */
export class GlobalBlocks {
  readonly #share: number;
  readonly #maxAgeMs: number;
  readonly #open = new Map<string, Block>();
  readonly #opening = new Map<string, Promise<unknown>>();
  readonly #timer: NodeJS.Timeout;

  constructor(options: GlobalBlockOptions = {}) {
    this.#share = options.share ?? 0.001;
    this.#maxAgeMs = options.maxAgeMs ?? 1_000;
    if (!(this.#share > 0 && this.#share <= 1)) throw new TypeError(`globalBlocks.share must be in (0, 1]; got ${String(options.share)}`);
    if (!(this.#maxAgeMs > 0)) throw new TypeError(`globalBlocks.maxAgeMs must be a positive number of ms; got ${String(options.maxAgeMs)}`);
    // Blocks nobody takes from go back by themselves.
    this.#timer = setInterval(() => this.#retireOld(), this.#maxAgeMs);
    this.#timer.unref();
  }

  async take(ledger: RedisReservationLedger, scopes: LedgerScope[], request: ReserveRequest, amount: number, least: number): Promise<BlockTake> {
    const key = signature(scopes);
    for (;;) {
      const block = this.#open.get(key);
      if (block && !block.retired && block.ledger === ledger) {
        const free = block.amount - block.used;
        if (Date.now() - block.bornAt < this.#maxAgeMs && free >= least) {
          const granted = Math.min(amount, free);
          block.used += granted;
          block.live += 1;
          return { ok: true, grant: { block, amount: granted }, balances: block.balances };
        }
        this.#retire(block);
      }
      // One block reserved at a time per scopes: the requests of a burst wait for it, then take from it.
      const opening = this.#opening.get(key);
      if (opening) {
        await opening;
        continue;
      }
      const size = Math.max(amount, Math.min(...scopes.map((scope) => Math.floor(scope.limit * this.#share))));
      const id = `gblock:${randomUUID()}`;
      const reserving = ledger.reserve({ id, amount: size, minAmount: least, scopes, ttlMs: request.ttlMs + this.#maxAgeMs });
      this.#opening.set(key, reserving.catch(() => undefined));
      let result: ReserveResult;
      try {
        result = await reserving;
      } finally {
        this.#opening.delete(key);
      }
      if (!result.ok) return { ok: false, refusal: result };
      const fresh: Block = { id, ledger, amount: result.amount, used: 0, spent: 0, live: 0, retired: false, bornAt: Date.now(), balances: result.scopes ?? [] };
      this.#open.set(key, fresh);
    }
  }

  /** A request's settle: its spend joins the block's, and a retired block with nothing live settles. */
  settle(grant: BlockGrant, actual: number): void {
    const { block } = grant;
    block.live -= 1;
    block.spent += actual;
    block.used += actual - grant.amount;
    if (block.retired && block.live === 0) this.#settleBlock(block);
  }

  #retire(block: Block): void {
    if (block.retired) return;
    block.retired = true;
    for (const [key, open] of this.#open) if (open === block) this.#open.delete(key);
    if (block.live === 0) this.#settleBlock(block);
  }

  #settleBlock(block: Block): void {
    // The ledger delivers it (retried, spooled at close); a block whose settle is lost is charged in full at expiry, as any reservation.
    void block.ledger.settle(block.id, block.spent).catch(() => undefined);
  }

  #retireOld(): void {
    const now = Date.now();
    for (const block of [...this.#open.values()]) if (now - block.bornAt >= this.#maxAgeMs) this.#retire(block);
  }

  /** Blocks handing out now (for tests and reports). */
  get open(): number {
    return this.#open.size;
  }

  /** Retires every block: those with no live request settle now (before the ledgers close), the rest when their last request does. */
  close(): void {
    clearInterval(this.#timer);
    for (const block of [...this.#open.values()]) this.#retire(block);
  }
}
