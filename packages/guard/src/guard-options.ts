// createGuard's options (the proxy config's `guard` and `alerts`), resolved once into a configuration where every field is set.
import { parseDuration, renderApiError, TollgateError, type ErrorRenderer, type TollgateStores } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { SubscriberLike } from '@tollgate/redis';
import { resolveAbuseOptions, type AbuseOptions, type ResolvedAbuse } from './abuse-options.js';
import type { Alerts, AlertsOptions } from './alerts.js';
import {
  resolveSpendAnomalyOptions,
  type ResolvedSpendAnomaly,
  type SpendAnomalyOptions,
} from './spend-anomaly-options.js';

export interface RepeatedRequestsOptions {
  /**
   * Sends of one request (its body without volatile fields) a key may make per window; the next
   * is refused with 429 `repeated_request`.
   * @default 20
   */
  max?: number;
  /** @default 60 */
  windowSeconds?: number;
  /**
   * The store is down or slow: `failOpen` lets the request through uncounted (the guard is a
   * safety net, not a new way to fail), `failClosed` answers 503.
   * @default 'failOpen'
   */
  onStoreFailure?: 'failOpen' | 'failClosed';
}

export interface AuthFailuresOptions {
  /**
   * Failed authentications (answers 401) an address may cause per window; past it, the address
   * gets 429 `auth_failures_exceeded` for `block`.
   * @default 20
   */
  max?: number;
  /** @default 60 */
  windowSeconds?: number;
  /** How long an address stays blocked. Ms or `"5m"`. @default '5m' */
  block?: number | string;
  /**
   * Distinct credentials failing from one address per window that make it a credential-stuffing
   * attempt (an `auth_flood` event and a block) before `max` is reached.
   * @default 10
   */
  distinctKeys?: number;
}

export interface GuardOptions {
  /**
   * The stores the rest of the chain uses: `createRedisStores()` to share everything between
   * processes (the guard runs its own scripts through their `sendCommand`), memory ones for one.
   * @default in-memory stores of this process
   */
  stores?: TollgateStores;
  /**
   * On Redis: a client for pub/sub, not yet connected (`createClient({ url }).duplicate()`), so a
   * suspension or a block counts in every process within the pub/sub delivery time. Without one,
   * processes find changes at their next `syncInterval`.
   */
  subscriber?: SubscriberLike;
  /** Per key and tenant spend, tokens, requests and addresses per bucket against moving baselines; `false` turns it off. */
  spendAnomaly?: SpendAnomalyOptions | false;
  /** The same request repeated by one key; `false` turns it off. */
  repeatedRequests?: RepeatedRequestsOptions | false;
  /** Failed authentications per client address; `false` turns it off. */
  authFailures?: AuthFailuresOptions | false;
  /**
   * Behavioural abuse detection: an isolation forest of the deployment's own traffic scores each key, address and
   * tenant, and throttles or blocks those past its thresholds (see the README). Off unless given.
   */
  abuse?: AbuseOptions | false;
  /** Where events go: an `Alerts` from `createAlerts()`, or its options. @default a JSON line on stderr per event */
  alerts?: Alerts | AlertsOptions;
  /**
   * How often each process compares its copy of the mitigations with the store's (a backstop for
   * lost pub/sub messages, and the only way without a subscriber). Ms or `"1s"`.
   * @default '1s'
   */
  syncInterval?: number | string;
  /** Renders the 403, 429 and 503 answers. @default core renderApiError */
  renderError?: ErrorRenderer;
  /** Told of each store failure. @default a `store_down` alert (once per period) */
  onStoreError?: (error: unknown) => void;
  /**
   * Epoch ms for the guard's store: which bucket usage counts in, and the times it stamps on
   * mitigations (each process's copy still checks them against Date.now). For tests and replays on
   * a fake clock, as the stores' own `clock` options.
   * @default Date.now in memory, Redis TIME on Redis
   */
  clock?: () => number;
}

export interface ResolvedRepeatedRequests {
  max: number;
  windowMs: number;
  failOpen: boolean;
}

export interface ResolvedAuthFailures {
  max: number;
  windowMs: number;
  blockMs: number;
  distinctKeys: number;
}

interface GuardConfig {
  spendAnomaly: ResolvedSpendAnomaly | undefined;
  repeatedRequests: ResolvedRepeatedRequests | undefined;
  authFailures: ResolvedAuthFailures | undefined;
  abuse: ResolvedAbuse | undefined;
  syncIntervalMs: number;
  renderError: ErrorRenderer;
}

const OPTION_NAMES = [
  'stores',
  'subscriber',
  'spendAnomaly',
  'repeatedRequests',
  'authFailures',
  'abuse',
  'alerts',
  'syncInterval',
  'renderError',
  'onStoreError',
  'clock',
] as const;
const CODE = 'ERR_TG_GUARD_INVALID_OPTION';

function positiveInteger(value: unknown, what: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  throw new TollgateError(CODE, `${what} must be a positive integer; got ${JSON.stringify(value)}`);
}

function duration(value: number | string, what: string): number {
  try {
    return parseDuration(value, what);
  } catch (error) {
    throw new TollgateError(CODE, (error as Error).message.replace(/ \(ERR_.*$/, ''), { cause: error });
  }
}

function section<T extends object>(
  value: T | false | undefined,
  name: string,
  known: readonly string[],
): T | undefined {
  if (value === false) return undefined;
  if (value === undefined) return {} as T;
  if (typeof value !== 'object' || value === null)
    throw new TollgateError(CODE, `${name} must be an options object or false`);
  assertKnownOptions(value, known, 'ERR_TG_GUARD_UNKNOWN_OPTION', `createGuard: ${name}`);
  return value;
}

export function resolveGuardOptions(options: GuardOptions): GuardConfig {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_GUARD_UNKNOWN_OPTION', 'createGuard');
  const spend = options.spendAnomaly === false ? undefined : resolveSpendAnomalyOptions(options.spendAnomaly ?? {});
  const repeated = section(options.repeatedRequests, 'repeatedRequests', ['max', 'windowSeconds', 'onStoreFailure']);
  const failures = section(options.authFailures, 'authFailures', ['max', 'windowSeconds', 'block', 'distinctKeys']);
  let repeatedRequests: ResolvedRepeatedRequests | undefined;
  if (repeated) {
    const policy = repeated.onStoreFailure ?? 'failOpen';
    if (policy !== 'failOpen' && policy !== 'failClosed')
      throw new TollgateError(
        CODE,
        `repeatedRequests.onStoreFailure must be "failOpen" or "failClosed"; got ${JSON.stringify(policy)}`,
      );
    repeatedRequests = {
      max: positiveInteger(repeated.max ?? 20, 'repeatedRequests.max'),
      windowMs: positiveInteger(repeated.windowSeconds ?? 60, 'repeatedRequests.windowSeconds') * 1000,
      failOpen: policy === 'failOpen',
    };
  }
  let authFailures: ResolvedAuthFailures | undefined;
  if (failures) {
    const max = positiveInteger(failures.max ?? 20, 'authFailures.max');
    authFailures = {
      max,
      windowMs: positiveInteger(failures.windowSeconds ?? 60, 'authFailures.windowSeconds') * 1000,
      blockMs: duration(failures.block ?? '5m', 'authFailures.block'),
      distinctKeys: positiveInteger(failures.distinctKeys ?? Math.min(10, max), 'authFailures.distinctKeys'),
    };
  }
  if (options.renderError !== undefined && typeof options.renderError !== 'function')
    throw new TollgateError(CODE, 'renderError must be a function');
  if (options.onStoreError !== undefined && typeof options.onStoreError !== 'function')
    throw new TollgateError(CODE, 'onStoreError must be a function');
  if (options.clock !== undefined && typeof options.clock !== 'function') {
    throw new TollgateError(CODE, 'clock must be a function');
  }
  return {
    spendAnomaly: spend,
    repeatedRequests,
    authFailures,
    abuse: options.abuse === undefined || options.abuse === false ? undefined : resolveAbuseOptions(options.abuse),
    syncIntervalMs: duration(options.syncInterval ?? '1s', 'syncInterval'),
    renderError: options.renderError ?? renderApiError,
  };
}
