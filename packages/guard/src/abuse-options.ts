// The guard's abuse options (the proxy config's `guard.abuse`), resolved once into a configuration, every field set.
import { parseDuration, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';

/** What the abuse model scores: API keys, client addresses (after `trust proxy`, IPv6 by /56), tenants. */
export type AbuseSubjectKind = 'key' | 'address' | 'tenant';

export interface AbuseOptions {
  /** @default ['key', 'address'] */
  subjects?: AbuseSubjectKind[];
  /** The sliding window each subject's features are computed over. Ms or `"5m"`. @default '5m' */
  window?: number | string;
  train?: {
    /** How often the model is trained anew on the recent windows. @default '10m' */
    every?: number | string;
    /** How far back the windows it is trained on go. @default '24h' */
    history?: number | string;
    /** Distinct subjects the training windows must hold before the model scores (and acts on) anyone. @default 50 */
    minSubjects?: number;
  };
  /** Scores (0-1) at and above which a subject is throttled, then blocked. @default { throttle: 0.65, block: 0.75 } */
  thresholds?: { throttle?: number; block?: number };
  /** A throttled subject's limits (and its rate) are cut by `factor` for `for`. @default { factor: 0.1, for: '15m' } */
  throttle?: { factor?: number; for?: number | string };
  /** A blocked subject gets 403 `abuse_blocked` for `for`. @default { for: '15m' } */
  block?: { for?: number | string };
  /** Record and alert what would be done, and serve everything. @default false */
  shadow?: boolean;
}

export interface ResolvedAbuse {
  subjects: ReadonlySet<AbuseSubjectKind>;
  windowMs: number;
  /** A window is read as this many buckets (the last one still filling): it slides by a bucket. */
  bucketMs: number;
  trainEveryMs: number;
  historyMs: number;
  minSubjects: number;
  throttleAt: number;
  blockAt: number;
  throttleFactor: number;
  throttleMs: number;
  blockMs: number;
  shadow: boolean;
}

/** Buckets per window: the window slides by a fifth of itself. */
export const BUCKETS_PER_WINDOW = 5;
const CODE = 'ERR_TG_GUARD_INVALID_OPTION';
const KINDS: readonly AbuseSubjectKind[] = ['key', 'address', 'tenant'];

function duration(value: number | string, what: string): number {
  try {
    return parseDuration(value, what);
  } catch (error) {
    throw new TollgateError(CODE, (error as Error).message.replace(/ \(ERR_.*$/, ''), { cause: error });
  }
}

function score(value: unknown, what: string): number {
  if (typeof value === 'number' && value > 0 && value < 1) return value;
  throw new TollgateError(CODE, `${what} must be a number between 0 and 1; got ${JSON.stringify(value)}`);
}

function part<T extends object>(value: T | undefined, name: string, known: readonly string[]): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null) throw new TollgateError(CODE, `abuse.${name} must be an object`);
  assertKnownOptions(value, known, 'ERR_TG_GUARD_UNKNOWN_OPTION', `createGuard: abuse.${name}`);
  return value;
}

export function resolveAbuseOptions(options: AbuseOptions): ResolvedAbuse {
  if (typeof options !== 'object' || options === null)
    throw new TollgateError(CODE, 'abuse must be an options object or false');
  assertKnownOptions(
    options,
    ['subjects', 'window', 'train', 'thresholds', 'throttle', 'block', 'shadow'],
    'ERR_TG_GUARD_UNKNOWN_OPTION',
    'createGuard: abuse',
  );
  const subjects = options.subjects ?? ['key', 'address'];
  if (!Array.isArray(subjects) || subjects.length === 0 || subjects.some((kind) => !KINDS.includes(kind)))
    throw new TollgateError(
      CODE,
      `abuse.subjects must be a non-empty list of ${KINDS.map((k) => `"${k}"`).join(', ')}`,
    );
  const train = part(options.train, 'train', ['every', 'history', 'minSubjects']);
  const thresholds = part(options.thresholds, 'thresholds', ['throttle', 'block']);
  const throttle = part(options.throttle, 'throttle', ['factor', 'for']);
  const block = part(options.block, 'block', ['for']);
  const windowMs = duration(options.window ?? '5m', 'abuse.window');
  if (windowMs < 5_000) throw new TollgateError(CODE, `abuse.window must be at least 5s; got ${windowMs} ms`);
  const minSubjects = train.minSubjects ?? 50;
  if (!Number.isSafeInteger(minSubjects) || minSubjects < 2)
    throw new TollgateError(CODE, `abuse.train.minSubjects must be an integer of at least 2; got ${minSubjects}`);
  const throttleAt = score(thresholds.throttle ?? 0.65, 'abuse.thresholds.throttle');
  const blockAt = score(thresholds.block ?? 0.75, 'abuse.thresholds.block');
  if (blockAt < throttleAt)
    throw new TollgateError(CODE, `abuse.thresholds.block (${blockAt}) must not be below throttle (${throttleAt})`);
  if (options.shadow !== undefined && typeof options.shadow !== 'boolean')
    throw new TollgateError(CODE, 'abuse.shadow must be true or false');
  const trainEveryMs = duration(train.every ?? '10m', 'abuse.train.every');
  const historyMs = duration(train.history ?? '24h', 'abuse.train.history');
  if (historyMs < trainEveryMs) throw new TollgateError(CODE, 'abuse.train.history must be at least abuse.train.every');
  return {
    subjects: new Set(subjects),
    windowMs,
    bucketMs: Math.ceil(windowMs / BUCKETS_PER_WINDOW),
    trainEveryMs,
    historyMs,
    minSubjects,
    throttleAt,
    blockAt,
    throttleFactor: score(throttle.factor ?? 0.1, 'abuse.throttle.factor'),
    throttleMs: duration(throttle.for ?? '15m', 'abuse.throttle.for'),
    blockMs: duration(block.for ?? '15m', 'abuse.block.for'),
    shadow: options.shadow ?? false,
  };
}
