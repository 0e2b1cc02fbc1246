// The spend-anomaly options (the proxy config's `guard.spendAnomaly`), resolved once into the detector's settings.
import { parseDuration, TollgateError, usdToNano } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { DetectorParams } from './baseline.js';
import type { AnomalyAction } from './types.js';

export interface SpendAnomalyOptions {
  /**
   * Length of one bucket in seconds: spend, tokens, requests and client addresses are summed per
   * bucket, and each bucket is judged against the baselines. Small values (1-2 s) work, for tests.
   * @default 60
   */
  bucketSeconds?: number;
  /**
   * A bucket this many standard deviations above both baselines (the last half hour's and the
   * last day's) is an anomaly.
   * @default 4
   */
  zScore?: number;
  /**
   * Closed buckets of history (idle ones count) a key or tenant needs before any of its buckets can
   * be an anomaly; from then on, one bucket whose score reaches `zScore` is one (for spend and
   * tokens, twice and three times that: see `EVIDENCE_FACTORS`).
   * @default 10
   */
  minBuckets?: number;
  /**
   * A bucket must spend at least this (USD) to be an anomaly: no alarms over cents.
   * @default 0.05
   */
  minSpendUsd?: number;
  /**
   * What an anomaly does: `alert` tells a person; `throttle` also scales the subject's request and
   * token limits down (`throttleScale`) for `cooldown`; `suspend` also refuses the key (or every
   * key of the tenant) with 403 `key_suspended` until an operator lifts it.
   * @default 'alert'
   */
  action?: AnomalyAction;
  /**
   * How long a throttle lasts, and how long a key or tenant stays quiet after an anomaly (one
   * alert per runaway, not one per bucket). Ms or `"15m"`.
   * @default '15m'
   */
  cooldown?: number | string;
  /**
   * `throttle`: the factor applied to the subject's limits (0 < x < 1).
   * @default 0.1
   */
  throttleScale?: number;
  /**
   * Watch API keys, tenants, or both.
   * @default ['key', 'tenant']
   */
  watch?: ('key' | 'tenant')[];
  /**
   * How far back the fast baseline looks (its EWMA spans about this much time).
   * @default '30m'
   */
  fastWindow?: number | string;
  /**
   * How far back the slow baseline looks: long enough to remember the day through a quiet night.
   * @default '1d'
   */
  slowWindow?: number | string;
  /**
   * How often each process sends the usage it summed to the shared store. Ms or `"1s"`; 0: only
   * on `guard.flush()`.
   * @default a quarter of a bucket, at most 1 s
   */
  flushInterval?: number | string;
}

export interface ResolvedSpendAnomaly {
  bucketMs: number;
  bucketSeconds: number;
  action: AnomalyAction;
  cooldownMs: number;
  throttleScale: number;
  watchKeys: boolean;
  watchTenants: boolean;
  flushIntervalMs: number;
  detector: DetectorParams;
}

const OPTION_NAMES = [
  'bucketSeconds',
  'zScore',
  'minBuckets',
  'minSpendUsd',
  'action',
  'cooldown',
  'throttleScale',
  'watch',
  'fastWindow',
  'slowWindow',
  'flushInterval',
] as const;
const ACTIONS: readonly AnomalyAction[] = ['alert', 'throttle', 'suspend'];
const CODE = 'ERR_TG_GUARD_INVALID_OPTION';

// The detector's constants, tuned with bench/guard-detection.ts on the traffic of its TUNING_SEEDS and
// reported on its HELD_OUT_SEEDS (see bench/README.md for the traffic and the guard's README for why
// each piece is there). Bucket totals are judged as square roots.
/** The level of a key wanders: its standard deviation is taken as at least this share of its mean (spend, tokens, requests, addresses). */
const RELATIVE_FLOORS = [0.6, 0.6, 0.5, 0.5] as const;
/** Noise of one request: 0.5 on the square-root scale (Poisson), in a typical request's spend and tokens for those. */
const ABSOLUTE_FLOORS = [0.5, 0.5, 0.5, 0.5] as const;
/**
 * Spend carries the spread of request sizes (one long prompt in a quiet minute): it needs twice the
 * evidence. Tokens follow spend and spread wider still (a tenant mixes models): three times.
 */
const EVIDENCE_FACTORS = [2, 3, 1, 1] as const;
/** A bucket with fewer requests is a cost, never a runaway. */
const MIN_REQUESTS = 3;
/** The CUSUM forgives this share of zScore per bucket and takes at most this share from one bucket. */
const DRIFT_SHARE = 0.375;
const STEP_CAP_SHARE = 0.75;
/** A trusted baseline takes a bucket at most this many standard deviations above its mean. */
const CLIP_Z = 4;
/**
 * Closed buckets judged against the baselines before joining them, once those hold minBuckets: a
 * runaway's first five never dilute its yardstick. It never lengthens the warm-up (baseline.ts).
 */
const LAG_BUCKETS = 5;

function positive(value: unknown, what: string): number {
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value;
  throw new TollgateError(CODE, `spendAnomaly.${what} must be a positive number; got ${JSON.stringify(value)}`);
}

function duration(value: number | string, what: string): number {
  try {
    return parseDuration(value, `spendAnomaly.${what}`);
  } catch (error) {
    throw new TollgateError(CODE, (error as Error).message.replace(/ \(ERR_.*$/, ''), { cause: error });
  }
}

/** EWMA weight for a window of `windowMs` in buckets of `bucketMs` (at least two buckets). */
function alphaFor(windowMs: number, bucketMs: number): number {
  const buckets = Math.max(2, windowMs / bucketMs);
  return 2 / (buckets + 1);
}

export function resolveSpendAnomalyOptions(options: SpendAnomalyOptions = {}): ResolvedSpendAnomaly {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_GUARD_UNKNOWN_OPTION', 'createGuard: spendAnomaly');
  const bucketSeconds = positive(options.bucketSeconds ?? 60, 'bucketSeconds');
  const bucketMs = bucketSeconds * 1000;
  if (!Number.isSafeInteger(bucketMs))
    throw new TollgateError(CODE, `spendAnomaly.bucketSeconds must be a whole number of ms; got ${bucketSeconds}`);
  const zScore = positive(options.zScore ?? 4, 'zScore');
  const minBuckets = options.minBuckets ?? 10;
  if (!Number.isSafeInteger(minBuckets) || minBuckets < 1)
    throw new TollgateError(
      CODE,
      `spendAnomaly.minBuckets must be a positive integer; got ${JSON.stringify(minBuckets)}`,
    );
  const minSpendUsd = options.minSpendUsd ?? 0.05;
  if (typeof minSpendUsd !== 'number' || !Number.isFinite(minSpendUsd) || minSpendUsd < 0) {
    throw new TollgateError(
      CODE,
      `spendAnomaly.minSpendUsd must be a number of USD at or above 0; got ${JSON.stringify(minSpendUsd)}`,
    );
  }
  const action = options.action ?? 'alert';
  if (!ACTIONS.includes(action))
    throw new TollgateError(
      CODE,
      `spendAnomaly.action must be one of ${ACTIONS.join(', ')}; got ${JSON.stringify(action)}`,
    );
  const cooldownMs = duration(options.cooldown ?? '15m', 'cooldown');
  const throttleScale = options.throttleScale ?? 0.1;
  if (typeof throttleScale !== 'number' || !(throttleScale > 0 && throttleScale < 1)) {
    throw new TollgateError(
      CODE,
      `spendAnomaly.throttleScale must be a number between 0 and 1; got ${JSON.stringify(throttleScale)}`,
    );
  }
  const watch = options.watch ?? ['key', 'tenant'];
  if (!Array.isArray(watch) || watch.length === 0 || watch.some((w) => w !== 'key' && w !== 'tenant')) {
    throw new TollgateError(
      CODE,
      `spendAnomaly.watch must be a non-empty list of "key" and "tenant"; got ${JSON.stringify(watch)}`,
    );
  }
  const fastMs = duration(options.fastWindow ?? '30m', 'fastWindow');
  const slowMs = duration(options.slowWindow ?? '1d', 'slowWindow');
  if (slowMs < fastMs) throw new TollgateError(CODE, 'spendAnomaly.slowWindow must be at least as long as fastWindow');
  const flushIntervalMs =
    options.flushInterval === 0
      ? 0
      : options.flushInterval === undefined
        ? Math.min(1000, bucketMs / 4)
        : duration(options.flushInterval, 'flushInterval');
  return {
    bucketMs,
    bucketSeconds,
    action,
    cooldownMs,
    throttleScale,
    watchKeys: watch.includes('key'),
    watchTenants: watch.includes('tenant'),
    flushIntervalMs,
    detector: {
      zScore,
      minBuckets,
      minSpend: usdToNano(minSpendUsd),
      quietBuckets: Math.max(1, Math.ceil(cooldownMs / bucketMs)),
      fastAlpha: alphaFor(fastMs, bucketMs),
      slowAlpha: alphaFor(slowMs, bucketMs),
      relativeFloors: RELATIVE_FLOORS,
      absoluteFloors: ABSOLUTE_FLOORS,
      minRequests: MIN_REQUESTS,
      evidenceFactors: EVIDENCE_FACTORS,
      drift: DRIFT_SHARE * zScore,
      stepCap: STEP_CAP_SHARE * zScore,
      clipZ: CLIP_Z,
      lagBuckets: LAG_BUCKETS,
    },
  };
}
