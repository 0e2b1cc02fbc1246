// The guard's calls to its ledger: at once where the ledger answers so, else under a deadline; an outage warned of once.
import { randomUUID } from 'node:crypto';
import { ledgerAtOnce, withTimeout } from '@tollgate/core/store-contracts';
import type { TollgateContext } from '@tollgate/core';
import type {
  AtOnceCallOptions,
  ReservationLedger,
  ReserveResult,
  SettledRecord,
} from '@tollgate/core/store-contracts';
import type { ResolvedBudgetOptions } from './budget-options.js';

export class BudgetLedgerCalls {
  readonly ledger: ReservationLedger;
  /** One call path: the ledger's answer at once where it can give one (in process memory, from a block it holds), else its promise with a deadline. */
  readonly atOnce: ReturnType<typeof ledgerAtOnce>;
  /** Scope balances in settle answers serve downgrades and soft limits only: without either, not built. */
  readonly atOnceCalls: AtOnceCallOptions;
  /** A reserve's balances also say what the request's budgets have left after it (`ReservationNote.remaining`). */
  readonly reserveCalls: AtOnceCallOptions = { balances: true };
  readonly timeoutMs: number;
  readonly #failOpen: boolean;
  #failing = false;
  /** Reservation ids are the request id, this guard's random id and a count: unique without a UUID per request. */
  readonly #idPrefix = `:budget:${randomUUID()}:`;
  #reservationCount = 0;
  /** `reportFailure`, made once for promise rejections. */
  readonly #report = (error: unknown): void => this.reportFailure(error);

  constructor(ledger: ReservationLedger, { plan, storeTimeoutMs, failOpen }: ResolvedBudgetOptions) {
    this.ledger = ledger;
    this.atOnce = ledgerAtOnce(ledger);
    this.atOnceCalls = { balances: plan.mayDowngrade || plan.maySoftLimit };
    this.timeoutMs = storeTimeoutMs;
    this.#failOpen = failOpen;
  }

  reservationId(ctx: TollgateContext): string {
    return `${ctx.requestId}${this.#idPrefix}${(++this.#reservationCount).toString(36)}`;
  }

  /** The ledger answered a reserve: a later failure is a new outage, warned of again. */
  answered(): void {
    this.#failing = false;
  }

  /** Warns once per outage: the first failure, until the ledger answers a reserve again. */
  reportFailure(error: unknown): void {
    if (this.#failing) return;
    this.#failing = true;
    process.emitWarning(
      `tollgate budget: the ledger failed (${error instanceof Error ? error.message : String(error)}); ${this.#failOpen ? 'letting requests through unbudgeted' : 'refusing requests with 503'} until it answers again`,
    );
  }

  /** A reserve that lands after its timeout must not hold budget until its TTL. */
  releaseLateGrant(reserving: Promise<ReserveResult> | undefined, id: string): void {
    void reserving?.then((late) => (late.ok ? this.ledger.release(id) : undefined)).catch(() => undefined);
  }

  /** Lets a reservation go (a settle of 0); a failure is reported, never thrown. */
  release(id: string): Promise<void> | undefined {
    return this.settleAside(id, 0);
  }

  /** Settles a reservation nobody waits on (a hold's extension, a release): a failure is reported, never thrown. */
  settleAside(id: string, actual: number, records?: readonly SettledRecord[]): Promise<void> | undefined {
    if (this.atOnce) {
      try {
        if (this.atOnce.settleAtOnce(id, actual, this.atOnceCalls, records)) return undefined;
      } catch (error) {
        this.reportFailure(error);
        return undefined;
      }
    }
    const settling = actual === 0 ? this.ledger.release(id) : this.ledger.settle(id, actual, records);
    return withTimeout(settling, this.timeoutMs, actual === 0 ? 'ledger.release' : 'ledger.settle').then(
      () => undefined,
      this.#report,
    );
  }
}
