// Reserves whose reply was lost: kept until their receipts are read, then what each held is given back (settled at 0).
import type { LuaScript } from './lua.js';
import * as scripts from './scripts.js';
import { RETRY_MAX_MS } from './settle-batches.js';
import type { Held, InDoubt } from './settle-batches.js';

/**
 * Receipt fields per ledger, reused in turn: a lost reply is looked up long before this many
 * reserves of the same process landed after it (one round trip once Redis answers again).
 */
export const RECEIPTS = 4_096;
const MAX_IN_DOUBT = 10_000;

type RunScript = (script: LuaScript, keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown>;

/** The reserves of one ledger whose reply never came, and the backoff of their receipts' lookup. */
export class LostReserves {
  #inDoubt: InDoubt[] = [];
  /** Receipt lookups that failed in a row, and when the next one may run (their backoff). */
  #failures = 0;
  #notBefore = 0;

  constructor(
    private readonly receiptsKey: string,
    private readonly run: RunScript,
  ) {}

  /** Reserves not looked up yet. */
  get size(): number {
    return this.#inDoubt.length;
  }

  /** When the receipts may be read again (Date.now() ms). */
  get notBefore(): number {
    return this.#notBefore;
  }

  add(reserve: InDoubt): void {
    // A bound on what a long outage of a live connection can pile up: the oldest are left to be charged at expiry.
    if (this.#inDoubt.length >= MAX_IN_DOUBT) {
      const [dropped] = this.#inDoubt.splice(0, 1);
      process.emitWarning(
        `tollgate: more than ${MAX_IN_DOUBT} budget reservations whose reply was lost wait to be looked up; ${dropped!.id} is not, and if it held budget, that is charged when it expires`,
        { code: 'TOLLGATE_RESERVE_IN_DOUBT' },
      );
    }
    this.#inDoubt.push(reserve);
  }

  /**
   * Reads the receipts of the reserves whose reply never came and hands what each one holds to `giveBack` (settled at
   * 0 with the next batch). After a failed lookup the next one waits its backoff; settles meanwhile go out as usual.
   */
  async lookUp(giveBack: (held: Held) => void): Promise<void> {
    if (Date.now() < this.#notBefore) return;
    while (this.#inDoubt.length > 0) {
      const asked = this.#inDoubt.slice(0, 256);
      let receipts: unknown[];
      try {
        receipts = (await this.run(
          scripts.reserveReceipts,
          [this.receiptsKey],
          asked.map(({ seq }) => seq % RECEIPTS),
        )) as unknown[];
      } catch {
        this.#notBefore = Date.now() + Math.min(RETRY_MAX_MS, 50 * 2 ** this.#failures++);
        return;
      }
      this.#failures = 0;
      this.#inDoubt.splice(0, asked.length);
      asked.forEach(({ seq, id, scopes, periodEnds }, i) => {
        const receipt = receipts[i];
        const tag = `${seq},${id},`;
        if (typeof receipt === 'string' && receipt.startsWith(tag)) {
          const [bucket, granted, ...births] = receipt.slice(tag.length).split(',');
          giveBack({ amount: Number(granted), bucket: bucket!, scopes, births, periodEnds });
        } else if (typeof receipt === 'string' && Number(receipt.slice(0, receipt.indexOf(','))) > seq) {
          // Its field was reused: whatever it held is charged when its bucket expires, as for a process that died.
          process.emitWarning(
            `tollgate: the outcome of budget reservation ${id}, whose reply was lost, is no longer known; if it held budget, that is charged when it expires`,
            { code: 'TOLLGATE_RESERVE_IN_DOUBT' },
          );
        }
      });
    }
  }

  /** At close: those not looked up are forgotten, said once; what they hold is charged when they expire. */
  forget(): void {
    if (this.#inDoubt.length === 0) return;
    process.emitWarning(
      `tollgate: the ledger closed before it could look up ${this.#inDoubt.length} reservation(s) whose reply was lost; what they hold is charged when they expire`,
      { code: 'TOLLGATE_RESERVE_IN_DOUBT' },
    );
    this.#inDoubt = [];
  }
}
