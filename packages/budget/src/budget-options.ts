// budgetGuard's options: checked and given their defaults once, into the configuration the guard is built from.
import {
  TollgateError,
  createPricing,
  parseDuration,
  renderApiError,
  type ErrorRenderer,
  type Pricing,
} from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { ReservationLedger } from '@tollgate/core/store-contracts';
import { BudgetPlan } from './budget-plan.js';
import type { BudgetPlanOptions } from './budget-plan.js';
import type { CreditJournal } from './credit-journal.js';
import type { Request, Response } from 'express';
import type { BudgetEvent, BudgetThresholdEvent } from './types.js';
import { createWebhookSender } from './webhook.js';
import type { WebhookOptions, WebhookSender } from './webhook.js';

export interface BudgetGuardOptions extends BudgetPlanOptions {
  /**
   * Where reservations and spend live. Share one (e.g. `createRedisStores(...).ledger`) between
   * processes that share budgets.
   * @default an in-memory ledger of this guard alone
   */
  ledger?: ReservationLedger;
  /**
   * Where top-ups (and resets) are recorded durably, so a store that loses its data (Redis flushed or failed over, a
   * memory store restarted) gets its credit back at the rebuild: `postgresCreditJournal(db)` from @tollgate/metering
   * keeps it beside the SQL usage ledger. A top-up is journaled before the store is credited; needs a ledger with
   * `restoreCredit` (memory, Redis).
   * @default none: the store is the only record of credit
   */
  creditJournal?: CreditJournal;
  /**
   * Prices used to clamp the output cap and to re-price a downgraded model. Use the same table
   * as metering, or clamps will not match the estimate.
   * @default createPricing()
   */
  pricing?: Pricing;
  /**
   * The smallest answer worth running: when a budget cannot pay for the input plus this many
   * output tokens, the request is refused; otherwise the output cap is clamped to what it affords.
   * @default 16
   */
  minOutputTokens?: number;
  /**
   * How long an unsettled reservation holds budget (a crashed process releases it after this).
   * Make it longer than your longest stream.
   * @default '10m'
   */
  reservationTtl?: number | string;
  /**
   * Time limit of each ledger call.
   * @default '2s'
   */
  timeoutMs?: number | string;
  /**
   * When the ledger fails or times out: `'failClosed'` answers 503, `'failOpen'` lets the request
   * through unbudgeted.
   * @default 'failClosed'
   */
  onStoreFailure?: 'failClosed' | 'failOpen';
  /**
   * Called with every budget event: `budget.threshold` once per soft-limit threshold and period,
   * `budget.exhausted` once per period when a budget runs out.
   */
  onEvent?: (event: BudgetEvent) => void | Promise<void>;
  /** Called with the `budget.threshold` events only (the name from before `onEvent`). */
  onSoftLimit?: (event: BudgetThresholdEvent) => void | Promise<void>;
  /** POST each budget event as JSON to this URL, retried with exponential backoff. */
  webhook?: string | WebhookOptions;
  /**
   * Log each budget event: `true` writes one JSON line to stderr, a function gets the event.
   * @default true when none of `onEvent`, `onSoftLimit`, `webhook` is set, else false
   */
  log?: boolean | ((event: BudgetEvent) => void);
  /**
   * A model budget refused the request and no `modelDowngrades` entry applies: move the request to
   * another model (a model group's next target: `req.tollgate.switchModel`) and return true to have
   * it reserved again at that model's price and budgets, or false to refuse it.
   * @default undefined (refused)
   */
  onModelBudgetSpent?: (req: Request, res: Response, model: string) => boolean;
  /**
   * Clock for period boundaries, in epoch ms.
   * @default Date.now
   */
  now?: () => number;
  /**
   * Renders refusals (429 `insufficient_quota`, 503 when the ledger is down).
   * @default renderApiError from @tollgate/core
   */
  renderError?: ErrorRenderer;
}

const OPTION_NAMES = [
  'ledger',
  'creditJournal',
  'pricing',
  'keys',
  'keyBudgets',
  'allKeyBudgets',
  'users',
  'tenantUsers',
  'tenants',
  'features',
  'modelBudgets',
  'modelDowngrades',
  'sessionBudgets',
  'teamBudgets',
  'global',
  'timezone',
  'budgets',
  'budgetsDecideBy',
  'softLimit',
  'downgrade',
  'minOutputTokens',
  'reservationTtl',
  'timeoutMs',
  'onStoreFailure',
  'onEvent',
  'onSoftLimit',
  'onModelBudgetSpent',
  'webhook',
  'log',
  'now',
  'renderError',
] as const satisfies readonly (keyof BudgetGuardOptions)[];

/** The options with every default filled in and every value checked. */
export interface ResolvedBudgetOptions {
  readonly plan: BudgetPlan;
  /** The ledger given; undefined when the guard keeps its own, in memory. */
  readonly ledger: ReservationLedger | undefined;
  readonly creditJournal: CreditJournal | undefined;
  readonly pricing: Pricing;
  readonly minOutputTokens: number;
  readonly reservationTtlMs: number;
  readonly storeTimeoutMs: number;
  readonly failOpen: boolean;
  readonly now: () => number;
  readonly renderError: ErrorRenderer;
  readonly onEvent: ((event: BudgetEvent) => void | Promise<void>) | undefined;
  readonly onSoftLimit: ((event: BudgetThresholdEvent) => void | Promise<void>) | undefined;
  readonly onModelBudgetSpent: ((req: Request, res: Response, model: string) => boolean) | undefined;
  /** Idle until the first budget event. */
  readonly webhook: WebhookSender | undefined;
  readonly log: ((event: BudgetEvent) => void) | undefined;
}

function optionError(message: string): TollgateError {
  return new TollgateError('ERR_TG_BUDGET_INVALID_OPTION', message);
}

function logOf(options: BudgetGuardOptions, webhook: WebhookSender | undefined): ResolvedBudgetOptions['log'] {
  const log =
    options.log ?? (options.onEvent === undefined && options.onSoftLimit === undefined && webhook === undefined);
  if (typeof log === 'function') return log;
  return log ? (event: BudgetEvent) => console.warn(JSON.stringify(event)) : undefined;
}

/** Checks every option and fills its default; throws the `ERR_TG_BUDGET_*` error of the first wrong one. Starts nothing. */
export function resolveBudgetOptions(options: BudgetGuardOptions): ResolvedBudgetOptions {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_BUDGET_UNKNOWN_OPTION', 'budgetGuard');
  const plan = new BudgetPlan(options satisfies BudgetPlanOptions);
  const pricing = options.pricing ?? createPricing();
  const minOutputTokens = options.minOutputTokens ?? 16;
  if (!Number.isSafeInteger(minOutputTokens) || minOutputTokens < 1)
    throw optionError(`minOutputTokens must be a positive integer; got ${JSON.stringify(options.minOutputTokens)}`);
  const reservationTtlMs = parseDuration(options.reservationTtl ?? '10m', 'reservationTtl');
  const storeTimeoutMs = parseDuration(options.timeoutMs ?? '2s', 'timeoutMs');
  for (const name of ['onEvent', 'onSoftLimit', 'onModelBudgetSpent'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function')
      throw optionError(`${name} must be a function`);
  }
  if (!['failClosed', 'failOpen'].includes(options.onStoreFailure ?? 'failClosed'))
    throw optionError(
      `onStoreFailure must be "failClosed" or "failOpen"; got ${JSON.stringify(options.onStoreFailure)}`,
    );
  const journal = options.creditJournal;
  if (
    journal !== undefined &&
    !(['record', 'withdraw', 'credits'] as const).every((name) => typeof journal[name] === 'function')
  )
    throw optionError('creditJournal must have record(), withdraw() and credits() (e.g. postgresCreditJournal(db))');
  if (journal !== undefined && options.ledger !== undefined && typeof options.ledger.restoreCredit !== 'function')
    throw optionError('creditJournal needs a ledger that can raise credit (restoreCredit): the memory or Redis one');
  const webhook = options.webhook === undefined ? undefined : createWebhookSender(options.webhook);
  for (const [from, to] of [...plan.downgrades(), ...plan.models.downgradePairs()]) {
    // Checked now, not at the first request past a soft limit.
    if (!pricing.find(to))
      throw new TollgateError(
        'ERR_TG_BUDGET_INVALID_BUDGET',
        `downgrade ${from} -> ${to}: ${to} has no price; add it to the pricing table`,
      );
  }
  return Object.freeze({
    plan,
    ledger: options.ledger,
    creditJournal: journal,
    pricing,
    minOutputTokens,
    reservationTtlMs,
    storeTimeoutMs,
    failOpen: options.onStoreFailure === 'failOpen',
    now: options.now ?? Date.now,
    renderError: options.renderError ?? renderApiError,
    onEvent: options.onEvent,
    onSoftLimit: options.onSoftLimit,
    onModelBudgetSpent: options.onModelBudgetSpent,
    webhook,
    log: logOf(options, webhook),
  });
}
