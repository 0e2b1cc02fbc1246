// The spend-anomaly math: each bucket's totals against two moving baselines (EWMA mean and variance) and a CUSUM.
// The Redis store runs the same steps in Lua (redis-scripts.ts); a test keeps the two in step.

/** What is counted per bucket, in this order everywhere (state arrays, Lua, reports). */
export const METRIC_NAMES = ['spend', 'tokens', 'requests', 'addresses'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];
export const METRIC_COUNT = METRIC_NAMES.length;
const SPEND = 0;
const REQUESTS = 2;
/** Spend and tokens are judged without the bucket's largest request: a runaway is many requests, one large request is a cost. */
export const TRIMMED_METRICS = 2;
/** Numbers kept per metric: fast mean, fast variance, slow mean, slow variance (of square roots), CUSUM. */
export const STATE_WIDTH = 5;

/** Beyond this many idle buckets in a row, the rest of a gap decays the baselines in one step. */
const EXACT_GAP_STEPS = 32;

/** The detector's settings, resolved once (spend-anomaly-options.ts says why each constant is what it is). */
export interface DetectorParams {
  /** A bucket this far above the baselines (z-score), or an excess whose CUSUM reaches it, is an anomaly. */
  readonly zScore: number;
  /** Closed buckets of history (`historyOf`) a subject needs before any of its buckets is judged. */
  readonly minBuckets: number;
  /** Spend a bucket must reach (nano-USD) before it can be an anomaly: no alarms over cents. */
  readonly minSpend: number;
  /** Requests a bucket must hold: one large request is a cost, not a runaway. */
  readonly minRequests: number;
  /** Buckets after an anomaly during which the entity reports no other. */
  readonly quietBuckets: number;
  /** Weight of a new bucket in the fast baseline (follows the last half hour or so). */
  readonly fastAlpha: number;
  /** Weight of a new bucket in the slow baseline (remembers the daytime level through a quiet night). */
  readonly slowAlpha: number;
  /** The standard deviation is taken as at least this fraction of the mean, per metric. */
  readonly relativeFloors: readonly number[];
  /**
   * The standard deviation is taken as at least this, per metric, in requests: Poisson noise on the
   * square-root scale is 0.5 of a request; for spend and tokens it is counted in what a typical
   * request of the subject costs (its running average, `EntityState.unit`).
   */
  readonly absoluteFloors: readonly number[];
  /** Per metric, the multiple of `zScore` a bucket's z-score or the CUSUM must reach. */
  readonly evidenceFactors: readonly number[];
  /** What the CUSUM forgives per bucket: scores above it add up while an excess lasts. */
  readonly drift: number;
  /** The most one bucket adds to the CUSUM: a lasting excess, not one wild bucket, is what it measures. */
  readonly stepCap: number;
  /** A trusted baseline takes a bucket at most this many standard deviations above its mean. */
  readonly clipZ: number;
  /**
   * Closed buckets judged against the baselines before they join them (a runaway's first buckets
   * never dilute its own yardstick), once the baselines hold `minBuckets`; before that, a bucket
   * joins them when it closes, so that `minBuckets` of history is `minBuckets` in the baselines.
   */
  readonly lagBuckets: number;
}

/**
 * One key's or tenant's picture. Totals are judged and remembered as square roots: counts and
 * spend are skewed, and a z-score of the raw totals calls a sparse key's busy minute a runaway.
 */
export interface EntityState {
  /** The bucket `current` counts (epoch ms / bucket length, floored). */
  bucket: number;
  /** Closed buckets in the baselines (idle ones included); the ones waiting in `recent` are history too. */
  seen: number;
  /** No anomaly is reported before this bucket (the quiet period after the last one). */
  quietUntil: number;
  /** Totals of the current bucket so far, per metric. */
  current: number[];
  /** The largest single request of the current bucket, in spend and in tokens. */
  largest: number[];
  /** What a typical request of the subject costs, in spend and in tokens (a running average over buckets). */
  unit: number[];
  /** Per metric (`STATE_WIDTH` numbers each, flat): fast mean, fast variance, slow mean, slow variance, CUSUM. */
  baseline: number[];
  /** Square roots of the newest closed buckets that have not joined the baselines yet, oldest first (`lagBuckets` × metrics). */
  recent: number[];
  /** How many buckets `recent` holds. */
  recentCount: number;
}

/** A bucket found anomalous: the metric with the highest score. */
export interface AnomalyFinding {
  metric: MetricName;
  bucket: number;
  /** The bucket's total so far (spend and tokens without its largest request). */
  value: number;
  /** What the fast baseline expects of a bucket (its mean, squared back from the square-root scale). */
  expected: number;
  /** The bucket's z-score (square-root scale, bounded by the slow baseline). */
  z: number;
  /** The fast baseline's standard deviation (square-root scale), floors included. */
  sd: number;
  /** What crossed the threshold: the bucket's z-score, or the CUSUM of the excess so far when higher. */
  score: number;
  /** Buckets of history in the baselines. */
  seen: number;
}

export function newEntityState(bucket: number, params: DetectorParams): EntityState {
  return {
    bucket,
    seen: 0,
    quietUntil: 0,
    current: new Array<number>(METRIC_COUNT).fill(0),
    largest: new Array<number>(TRIMMED_METRICS).fill(0),
    unit: new Array<number>(TRIMMED_METRICS).fill(0),
    baseline: new Array<number>(STATE_WIDTH * METRIC_COUNT).fill(0),
    recent: new Array<number>(params.lagBuckets * METRIC_COUNT).fill(0),
    recentCount: 0,
  };
}

/** The noise floor of metric `m` on the square-root scale: `absoluteFloors[m]` requests' worth. */
function floorOf(state: EntityState, m: number, params: DetectorParams): number {
  const floor = params.absoluteFloors[m]!;
  return m < TRIMMED_METRICS ? floor * Math.sqrt(state.unit[m]!) : floor;
}

/**
 * The standard deviation the z-score divides by: the measured one (or the relative floor when that
 * is larger: a level that wanders), plus one request's worth of noise.
 */
function effectiveSd(mean: number, variance: number, floor: number, relativeFloor: number): number {
  const relative = relativeFloor * mean;
  return Math.sqrt(Math.max(variance, relative * relative) + floor * floor);
}

/**
 * How unusual `y` (a bucket total's square root) is for metric `m`: its z-score against the fast
 * baseline, bounded by twice its z-score against the slow one. The slow baseline remembers the day
 * through a quiet night, so the first busy bucket of a morning is not a runaway; asking it for only
 * half the threshold keeps a night-time runaway of a diurnal key visible.
 */
function scoreOf(state: EntityState, m: number, y: number, params: DetectorParams): number {
  const b = state.baseline;
  const at = STATE_WIDTH * m;
  const floor = floorOf(state, m, params);
  const relative = params.relativeFloors[m]!;
  const fastSd = effectiveSd(b[at]!, b[at + 1]!, floor, relative);
  const slowSd = effectiveSd(b[at + 2]!, b[at + 3]!, floor, relative);
  // No spread known yet (a subject that never made a request): nothing to judge against.
  if (!(fastSd > 0 && slowSd > 0)) return 0;
  const fastZ = (y - b[at]!) / fastSd;
  const slowZ = (y - b[at + 2]!) / slowSd;
  return Math.min(fastZ, 2 * slowZ);
}

/**
 * One closed bucket (square roots) joins the baselines. The first buckets weigh as a plain average
 * (weight 1/(n+1)), so that a young baseline is not pulled towards zero; once trusted, a value is
 * clipped at `clipZ` standard deviations: a runaway that goes on must not become the new normal.
 */
function joinBaselines(state: EntityState, roots: readonly number[], offset: number, params: DetectorParams): void {
  const n = state.seen;
  const fast = Math.max(params.fastAlpha, 1 / (n + 1));
  const slow = Math.max(params.slowAlpha, 1 / (n + 1));
  const trusted = n >= params.minBuckets;
  const b = state.baseline;
  for (let m = 0; m < METRIC_COUNT; m++) {
    let y = roots[offset + m]!;
    const at = STATE_WIDTH * m;
    if (trusted) {
      const ceiling =
        b[at]! + params.clipZ * effectiveSd(b[at]!, b[at + 1]!, floorOf(state, m, params), params.relativeFloors[m]!);
      if (y > ceiling) y = ceiling;
    }
    let d = y - b[at]!;
    b[at] = b[at]! + fast * d;
    b[at + 1] = (1 - fast) * (b[at + 1]! + fast * d * d);
    d = y - b[at + 2]!;
    b[at + 2] = b[at + 2]! + slow * d;
    b[at + 3] = (1 - slow) * (b[at + 3]! + slow * d * d);
  }
  state.seen = n + 1;
}

/** Closed buckets of history: those in the baselines and those waiting to join them. */
function historyOf(state: EntityState): number {
  return state.seen + state.recentCount;
}

/** The oldest bucket waiting in `recent` joins the baselines. */
function joinOldest(state: EntityState, params: DetectorParams): void {
  joinBaselines(state, state.recent, 0, params);
  state.recent.copyWithin(0, METRIC_COUNT);
  state.recentCount--;
}

/**
 * Closes one bucket with totals `values`: its scores go into each metric's CUSUM (which grows while
 * a moderate excess lasts and falls back to zero after it), and it waits `lagBuckets` before
 * joining the baselines, so that the first buckets of a runaway are all judged against the time
 * before it. A subject with less than `minBuckets` in its baselines has nothing judged yet, so
 * nothing to shield from a runaway: its buckets join at once, and `minBuckets` of history is a
 * yardstick of `minBuckets` buckets, not one that waits `lagBuckets` more.
 */
function closeBucket(state: EntityState, values: readonly number[], params: DetectorParams): void {
  const b = state.baseline;
  if (state.recentCount === params.lagBuckets) joinOldest(state, params);
  // The CUSUM adds up only buckets with minBuckets of history behind them, as judgeBucket requires.
  const judgeable = historyOf(state) >= params.minBuckets;
  const at = state.recentCount * METRIC_COUNT;
  for (let m = 0; m < METRIC_COUNT; m++) {
    const y = Math.sqrt(values[m]!);
    state.recent[at + m] = y;
    if (judgeable) {
      const score = scoreOf(state, m, y, params);
      b[STATE_WIDTH * m + 4] = Math.max(0, b[STATE_WIDTH * m + 4]! + Math.min(score, params.stepCap) - params.drift);
    }
  }
  state.recentCount++;
  while (state.seen < params.minBuckets && state.recentCount > 0) joinOldest(state, params);
}

const ZEROS: readonly number[] = new Array<number>(METRIC_COUNT).fill(0);

/** What a bucket is judged by: its totals, spend and tokens without the largest request. */
function judged(state: EntityState, m: number): number {
  return m < TRIMMED_METRICS ? Math.max(0, state.current[m]! - state.largest[m]!) : state.current[m]!;
}

const judgedTotals = new Array<number>(METRIC_COUNT);

/** Closes the current bucket and the idle ones after it, up to `bucket`, which becomes the current one. */
function rollTo(state: EntityState, bucket: number, params: DetectorParams): void {
  for (let m = 0; m < METRIC_COUNT; m++) judgedTotals[m] = judged(state, m);
  const requests = state.current[REQUESTS]!;
  if (requests > 0) {
    for (let m = 0; m < TRIMMED_METRICS; m++) {
      const perRequest = state.current[m]! / requests;
      state.unit[m] =
        state.unit[m] === 0 ? perRequest : state.unit[m]! + params.fastAlpha * (perRequest - state.unit[m]!);
    }
  }
  closeBucket(state, judgedTotals, params);
  const gap = bucket - state.bucket - 1;
  const exact = Math.min(gap, EXACT_GAP_STEPS);
  for (let i = 0; i < exact; i++) closeBucket(state, ZEROS, params);
  const rest = gap - exact;
  if (rest > 0) {
    // A long silence (the recent buckets are all idle by now): the baselines decay as the idle
    // buckets would take them, in one step, and no excess is left to add up.
    const fastKeep = (1 - params.fastAlpha) ** rest;
    const slowKeep = (1 - params.slowAlpha) ** rest;
    const b = state.baseline;
    for (let m = 0; m < METRIC_COUNT; m++) {
      const at = STATE_WIDTH * m;
      b[at] = b[at]! * fastKeep;
      b[at + 1] = b[at + 1]! * fastKeep;
      b[at + 2] = b[at + 2]! * slowKeep;
      b[at + 3] = b[at + 3]! * slowKeep;
      b[at + 4] = 0;
    }
    state.seen += rest;
  }
  state.bucket = bucket;
  state.current.fill(0);
  state.largest.fill(0);
}

/** The current bucket judged against the baselines; undefined when it is normal or may not be judged yet. */
function judgeBucket(state: EntityState, params: DetectorParams): AnomalyFinding | undefined {
  if (historyOf(state) < params.minBuckets || state.bucket < state.quietUntil) return undefined;
  if (state.current[SPEND]! < params.minSpend || state.current[REQUESTS]! < params.minRequests) return undefined;
  let found: AnomalyFinding | undefined;
  const b = state.baseline;
  for (let m = 0; m < METRIC_COUNT; m++) {
    const x = judged(state, m);
    if (x <= 0) continue;
    const at = STATE_WIDTH * m;
    const z = scoreOf(state, m, Math.sqrt(x), params);
    // A bucket far out on its own, or an excess that has lasted (this bucket's score added to the CUSUM).
    const sustained = b[at + 4]! + Math.min(z, params.stepCap) - params.drift;
    const threshold = params.zScore * params.evidenceFactors[m]!;
    if (z < threshold && sustained < threshold) continue;
    const score = Math.max(z, sustained);
    if (found && score <= found.score) continue;
    const sd = effectiveSd(b[at]!, b[at + 1]!, floorOf(state, m, params), params.relativeFloors[m]!);
    found = {
      metric: METRIC_NAMES[m]!,
      bucket: state.bucket,
      value: x,
      expected: b[at]! * b[at]!,
      z,
      sd,
      score,
      seen: state.seen,
    };
  }
  return found;
}

/**
 * Counts `increments` (per metric) into the entity's bucket `bucket`, with `largest` the largest
 * single request among them (spend, tokens), closing the buckets before it first when a new one
 * began, and judges the bucket so far: a partial bucket can only grow (its totals without the
 * largest request too), so an anomaly seen early is one the whole bucket would show. Reports each
 * anomaly once, then stays quiet for `quietBuckets`. `state` is changed in place.
 */
export function observeBucket(
  state: EntityState,
  bucket: number,
  increments: readonly number[],
  largest: readonly number[],
  params: DetectorParams,
): AnomalyFinding | undefined {
  // A clock that went back (a failover to a replica with a slower clock) counts into the current bucket.
  if (bucket > state.bucket) rollTo(state, bucket, params);
  for (let m = 0; m < METRIC_COUNT; m++) state.current[m] = state.current[m]! + increments[m]!;
  for (let m = 0; m < TRIMMED_METRICS; m++) if (largest[m]! > state.largest[m]!) state.largest[m] = largest[m]!;
  const finding = judgeBucket(state, params);
  if (finding) state.quietUntil = state.bucket + params.quietBuckets;
  return finding;
}
