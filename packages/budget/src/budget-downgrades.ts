// Downgrades past a soft limit, judged by the spend this process learned from its own reserve and settle answers.
import type { Request } from 'express';
import { modelFamilies } from '@tollgate/core/costs';
import { withTimeout } from '@tollgate/core/store-contracts';
import type { Pricing, UsageEstimate } from '@tollgate/core';
import type { ReservationLedger, ScopeUsage } from '@tollgate/core/store-contracts';
import { softLimitThreshold } from './budget-plan.js';
import type { BudgetWindow } from './budget-plan.js';
import { KnownSpend } from './known-spend.js';

/** The downgrade target of `model` (dated ids match their family), if any. */
function downgradeOf(model: string, map: ReadonlyMap<string, string>): string | undefined {
  for (const family of modelFamilies(model)) {
    const target = map.get(family);
    if (target !== undefined && target !== model) return target;
  }
  return undefined;
}

export class BudgetDowngrades {
  /** Forgotten after an operator's top-up, reset or rebuild: the next answers are the truth again. */
  readonly known = new KnownSpend();
  /** Until a reserve comes back without balances (a ledger that does not report them), no read before reserving. */
  ledgerReportsBalances = true;
  readonly #ledger: ReservationLedger;
  readonly #pricing: Pricing;
  readonly #storeTimeoutMs: number;

  constructor(ledger: ReservationLedger, pricing: Pricing, storeTimeoutMs: number) {
    this.#ledger = ledger;
    this.#pricing = pricing;
    this.#storeTimeoutMs = storeTimeoutMs;
  }

  /** Learns the balances a granted reserve reported; one without them means the ledger does not report them. */
  learnFromReserve(balances: ScopeUsage[] | undefined): void {
    if (balances) this.known.learn(balances);
    else this.ledgerReportsBalances = false;
  }

  /**
   * Swaps the model for its downgrade when a budget that has one is past its soft limit, judged
   * by the spend this process learned from earlier reserve and settle results (no read before
   * the reserve). Only a ledger that does not report balances is read first: then a promise.
   */
  apply(req: Request, estimate: UsageEstimate, windows: BudgetWindow[]): Promise<void> | undefined {
    const candidates = windows.filter(
      (w) =>
        w.budget.downgrade &&
        softLimitThreshold(w.budget) !== undefined &&
        downgradeOf(estimate.model, w.budget.downgrade) !== undefined,
    );
    if (candidates.length === 0) return undefined;
    if (this.ledgerReportsBalances) {
      this.#downgradeIfPast(req, estimate, candidates);
      return undefined;
    }
    return withTimeout(this.#ledger.usage(candidates.map((w) => w.head)), this.#storeTimeoutMs, 'ledger.usage').then(
      (usage) => {
        this.known.learn(usage);
        this.#downgradeIfPast(req, estimate, candidates);
      },
    );
  }

  #downgradeIfPast(req: Request, estimate: UsageEstimate, candidates: BudgetWindow[]): void {
    const past = candidates.find((w) => {
      const spent = this.known.spentOf(w.head.key) ?? 0;
      return spent > 0 && spent >= softLimitThreshold(w.budget)!;
    });
    if (!past) return;
    const target = downgradeOf(estimate.model, past.budget.downgrade!)!;
    const price = this.#pricing.forRequest(req.tollgate).find(target);
    if (!price) {
      process.emitWarning(`tollgate budget: cannot downgrade ${estimate.model} to ${target}: ${target} has no price`);
      return;
    }
    const ctx = req.tollgate;
    ctx.requestedModel ??= estimate.model;
    ctx.switchModel(target, price);
  }
}
