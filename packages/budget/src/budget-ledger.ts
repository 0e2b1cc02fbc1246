// The guard's calls to its ledger: at once where the ledger answers so, else under a deadline; an outage warned of once.
import { randomUUID } from 'node:crypto';
import { ledgerCalls, whenReady, withTimeout } from '@tollgate/core/store-contracts';
import type { TollgateContext } from '@tollgate/core';
import type {
  LedgerCallOptions,
  LedgerCalls,
  MaybePromise,
  ReservationLedger,
  ReserveResult,
  SettledRecord,
} from '@tollgate/core/store-contracts';
import type { ResolvedBudgetOptions } from './budget-options.js';

const nothing = (): void => undefined;

export class BudgetLedgerCalls {
  readonly ledger: ReservationLedger;
  /** The ledger's answers: at once where it holds them (in process memory, from a block), else its promises (given a deadline). */
  readonly answers: LedgerCalls;
  /** Scope balances in settle answers serve downgrades and soft limits only: without either, not built. */
  readonly settleCalls: LedgerCallOptions;
  /** A reserve's balances also say what the request's budgets have left after it (`ReservationNote.remaining`). */
  readonly reserveCalls: LedgerCallOptions = { balances: true };
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
    this.answers = ledgerCalls(ledger);
    this.settleCalls = { balances: plan.mayDowngrade || plan.maySoftLimit };
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
  releaseLateGrant(reserving: MaybePromise<ReserveResult> | undefined, id: string): void {
    if (reserving instanceof Promise)
      void reserving.then((late) => (late.ok ? this.ledger.release(id) : undefined)).catch(() => undefined);
  }

  /** Lets a reservation go (a settle of 0); a failure is reported, never thrown. */
  release(id: string): MaybePromise<void> {
    return this.settleAside(id, 0);
  }

  /** Settles a reservation nobody waits on (a hold's extension, a release): a failure is reported, never thrown. */
  settleAside(id: string, actual: number, records?: readonly SettledRecord[]): MaybePromise<void> {
    const settling =
      actual === 0
        ? this.answers.release(id, this.settleCalls)
        : this.answers.settle(id, actual, records, this.settleCalls);
    const bounded = withTimeout(settling, this.timeoutMs, actual === 0 ? 'ledger.release' : 'ledger.settle');
    return whenReady(bounded, nothing, this.#report);
  }
}
