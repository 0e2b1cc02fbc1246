// Soft limits: notice a budget crossing its threshold and tell someone exactly once per period, across processes.
import { randomUUID } from 'node:crypto';
import { nanoToUsd, withTimeout } from '@tollgate/core';
import type { ReservationLedger, ScopeUsage } from '@tollgate/core';
import { softLimitThreshold } from './budget-plan.js';
import type { BudgetWindow } from './budget-plan.js';
import type { SoftLimitEvent } from './types.js';
import type { WebhookSender } from './webhook.js';

export interface SoftLimitMonitorOptions {
  ledger: ReservationLedger;
  storeTimeoutMs: number;
  onSoftLimit: ((event: SoftLimitEvent) => void | Promise<void>) | undefined;
  log: ((event: SoftLimitEvent) => void) | undefined;
  webhook: WebhookSender | undefined;
}

/** How long a process trusts its own memory that a marker is taken, before asking the ledger again. */
const MEMO_MS = 60_000;
const MARKER_TTL_MS = 60_000;

/**
 * Fires `budget.soft_limit`. Dedupe across processes uses the ledger itself: the marker is a
 * scope with limit 1 in the same period; the one process whose reserve of 1 succeeds (the
 * reserve is atomic) settles it to spent and delivers the event; every other one is refused.
 */
export class SoftLimitMonitor {
  readonly #options: SoftLimitMonitorOptions;
  readonly #taken = new Map<string, number>();
  readonly #pending = new Set<Promise<unknown>>();

  constructor(options: SoftLimitMonitorOptions) {
    this.#options = options;
  }

  /**
   * Looks at the budgets a request was charged to and fires for each one newly past its soft
   * limit. `balances` (what the settle reported) spares a ledger read; scopes missing from it are read.
   */
  async check(windows: readonly BudgetWindow[], now: number, balances?: readonly ScopeUsage[]): Promise<void> {
    const watched = windows.filter((w) => softLimitThreshold(w.budget) !== undefined && w.budget.limitNano > 0 && !this.#isTaken(w.softLimitMarker.key, now));
    if (watched.length === 0) return;
    const { ledger, storeTimeoutMs } = this.#options;
    const reported = new Map(balances?.map((b) => [b.key, b.spent] as const));
    const unknown = watched.filter((w) => !reported.has(w.head.key)).map((w) => w.head);
    if (unknown.length > 0) {
      const usage = await withTimeout(ledger.usage(unknown), storeTimeoutMs, 'ledger.usage');
      for (const u of usage) reported.set(u.key, u.spent);
    }
    await Promise.all(
      watched.map(async (window) => {
        const spent = reported.get(window.head.key) ?? 0;
        if (spent <= 0 || spent < softLimitThreshold(window.budget)!) return;
        if (await this.#takeMarker(window, now)) this.#emit(window, spent, now);
      }),
    );
  }

  /** True when this process knows the marker is taken (so it does not ask the ledger every request). */
  #isTaken(key: string, now: number): boolean {
    const until = this.#taken.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#taken.delete(key);
    return false;
  }

  async #takeMarker(window: BudgetWindow, now: number): Promise<boolean> {
    const { ledger, storeTimeoutMs } = this.#options;
    const marker = window.softLimitMarker;
    const id = `${marker.key}:${randomUUID()}`;
    const result = await withTimeout(ledger.reserve({ id, amount: 1, scopes: [marker], ttlMs: MARKER_TTL_MS }), storeTimeoutMs, 'ledger.reserve');
    if (this.#taken.size > 10_000) this.#taken.clear();
    this.#taken.set(marker.key, Math.min(marker.expiresAt, now + MEMO_MS));
    if (!result.ok) return false;
    // Spent, not reserved: the marker must outlive this reservation's TTL for the whole period.
    await withTimeout(ledger.settle(id, 1), storeTimeoutMs, 'ledger.settle');
    return true;
  }

  /** Forget what this process knows about a marker (after an operator reset or top-up). */
  forget(markerKey: string): void {
    this.#taken.delete(markerKey);
  }

  #emit(window: BudgetWindow, spent: number, now: number): void {
    const { budget, head } = window;
    const event: SoftLimitEvent = {
      type: 'budget.soft_limit',
      eventId: randomUUID(),
      timestamp: new Date(now).toISOString(),
      scope: budget.scope,
      id: budget.id,
      period: budget.period,
      key: head.key,
      softLimit: budget.softLimit!,
      limitNanoUsd: budget.limitNano,
      spentNanoUsd: spent,
      limitUsd: nanoToUsd(budget.limitNano),
      spentUsd: nanoToUsd(spent),
      resetAt: new Date(head.expiresAt).toISOString(),
    };
    const { onSoftLimit, log, webhook } = this.#options;
    if (log) this.#guard(() => log(event));
    webhook?.send(event);
    if (onSoftLimit) this.#guard(() => onSoftLimit(event));
  }

  /** Runs user code so that neither a throw nor a rejection reaches the request. */
  #guard(run: () => unknown): void {
    let result: unknown;
    try {
      result = run();
    } catch (error) {
      warn(error);
      return;
    }
    if (result instanceof Promise) {
      const settled = result.catch(warn);
      this.#pending.add(settled);
      void settled.finally(() => this.#pending.delete(settled));
    }
  }

  async flush(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
    await this.#options.webhook?.flush();
  }
}

function warn(error: unknown): void {
  process.emitWarning(`tollgate budget: a soft-limit listener failed: ${error instanceof Error ? error.message : String(error)}`);
}
