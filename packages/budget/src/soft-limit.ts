// Soft limits: notice a budget crossing its threshold and tell someone exactly once per period, across processes.
import { randomUUID } from 'node:crypto';
import { nanoToUsd } from '@tollgate/core';
import { withTimeout } from '@tollgate/core/kit';
import type { ReservationLedger, ScopeUsage } from '@tollgate/core/kit';
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

/** A budget found past its soft limit, with the spend that put it there. */
interface Crossing {
  window: BudgetWindow;
  spent: number;
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
   * When nothing is past a soft limit and nothing has to be read (the usual settle), it answers at once.
   */
  check(windows: readonly BudgetWindow[], now: number, balances?: readonly ScopeUsage[]): Promise<void> | undefined {
    let unread: BudgetWindow[] | undefined;
    let crossed: Crossing[] | undefined;
    for (const window of windows) {
      if (
        softLimitThreshold(window.budget) === undefined ||
        window.budget.limitNano <= 0 ||
        this.#isTaken(window.softLimitMarker.key, now)
      )
        continue;
      const spent = balances && spentOf(balances, window.head.key);
      if (spent === undefined) {
        (unread ??= []).push(window);
      } else if (isPastSoftLimit(window, spent)) {
        (crossed ??= []).push({ window, spent });
      }
    }
    if (!unread && !crossed) return undefined;
    return this.#fire(unread ?? [], crossed ?? [], now);
  }

  /** Reads the spend of `unread` windows, then takes the marker of each window past its soft limit and fires for it. */
  async #fire(unread: BudgetWindow[], crossed: Crossing[], now: number): Promise<void> {
    if (unread.length > 0) {
      const { ledger, storeTimeoutMs } = this.#options;
      const usage = await withTimeout(ledger.usage(unread.map((w) => w.head)), storeTimeoutMs, 'ledger.usage');
      for (const window of unread) {
        const spent = spentOf(usage, window.head.key) ?? 0;
        if (isPastSoftLimit(window, spent)) crossed.push({ window, spent });
      }
    }
    await Promise.all(
      crossed.map(async ({ window, spent }) => {
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
    const result = await withTimeout(
      ledger.reserve({ id, amount: 1, scopes: [marker], ttlMs: MARKER_TTL_MS }),
      storeTimeoutMs,
      'ledger.reserve',
    );
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

/** The spend reported for `key`, if reported. */
function spentOf(balances: readonly ScopeUsage[], key: string): number | undefined {
  for (const balance of balances) if (balance.key === key) return balance.spent;
  return undefined;
}

function isPastSoftLimit(window: BudgetWindow, spent: number): boolean {
  return spent > 0 && spent >= softLimitThreshold(window.budget)!;
}

function warn(error: unknown): void {
  process.emitWarning(
    `tollgate budget: a soft-limit listener failed: ${error instanceof Error ? error.message : String(error)}`,
  );
}
