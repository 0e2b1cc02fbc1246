// Overshoot accounting: what a model's provider billed past the input bound, learned from settles and reserved from then on.
import { formatUsd } from '@tollgate/core';
import type { UsageEstimate, UsageRecord } from '@tollgate/core';
import type { BudgetHold, ReservedInput } from './budget-hold.js';

/** A margin learned from bills above the bound is never raised past this (the context window caps it anyway). */
const MAX_MARGIN = 16;

export class InputMargins {
  /**
   * Per model (family id): how far past the input bound its provider has billed, learned from
   * settles above their reservation. 1 (absent) while the bound has held.
   */
  readonly #margins = new Map<string, number>();
  readonly #warned = new Set<string>();

  /** Input tokens to reserve: the estimate's provable bound, times what this model's bills have taught. */
  reservedInput(estimate: UsageEstimate, model: string): ReservedInput {
    const bound = Math.max(estimate.inputTokens, estimate.inputTokensBound ?? estimate.inputTokens);
    return { bound, reserved: Math.ceil(bound * (this.#margins.get(model) ?? 1)) };
  }

  /**
   * A settle above its reservation: the provider billed past the bound (content the request did not
   * show, an upstream that ignored the cap). Noted on the record and, for input, learned: this
   * model's later reservations carry the margin.
   */
  noteOvershoot(hold: BudgetHold, record: UsageRecord, actual: number): void {
    const overshoot = actual - hold.granted - (hold.extended ?? 0);
    record.overshootNanoUsd = overshoot;
    const billedInput = record.inputTokens;
    if (billedInput > hold.inputBound && hold.inputBound > 0) {
      const margin = Math.min(MAX_MARGIN, Math.max(this.#margins.get(hold.model) ?? 1, billedInput / hold.inputBound));
      this.#margins.set(hold.model, margin);
    }
    if (!this.#warned.has(hold.model)) {
      this.#warned.add(hold.model);
      process.emitWarning(
        `tollgate budget: request ${record.requestId} (${record.model}) was billed ${formatUsd(actual)}, ${formatUsd(overshoot)} above its reservation ` +
          `(${record.inputTokens} input tokens billed against a bound of ${hold.inputBound}); later reservations for ${hold.model} carry a ${(this.#margins.get(hold.model) ?? 1).toFixed(2)}x margin on input`,
        { code: 'TOLLGATE_BUDGET_OVERSHOOT' },
      );
    }
  }
}
