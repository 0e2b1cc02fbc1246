// The abuse model: an isolation forest grown on the deployment's recent windows, scoring subjects and saying why.
import { FEATURE_NAMES, modelInput, modelInputOf, type AbuseSubject, type FeatureName } from './abuse-features.js';
import { featureRanges, isolationScores, trainIsolationForest, type IsolationForest } from './isolation-forest.js';

/** One feature that set a subject apart: its value and the population's (the median of subjects of its kind). */
export interface AbuseReason {
  feature: FeatureName;
  value: number;
  population: number;
}

/** One forest of the model and the features (indices in `FEATURE_NAMES`) it was grown on. */
export interface AbuseView {
  features: number[];
  forest: IsolationForest;
}

/** The forests and what they were grown on, as every process loads it from the store. */
export interface AbuseModel {
  version: number;
  /** Per feature, the least and greatest value (as the forest reads it) it was grown on. */
  ranges: [number, number][];
  /** Epoch ms. */
  trainedAt: number;
  /** Distinct subjects among the windows it was grown on. */
  subjects: number;
  /**
   * Grown only on windows taken before the watch had seen a whole window of traffic: it scores, and acts on nobody
   * (a start's partly filled windows make ordinary subjects look odd).
   */
  partial: boolean;
  /** The whole feature set first, then one forest per group of `VIEWS`. */
  views: AbuseView[];
}

/**
 * Groups of features that tell one thing, each with a forest of its own besides the whole set's (feature bagging,
 * Lazarevic & Kumar 2005, over isolation forests): among all features a forest's random splits rarely pick the two
 * or three that set a subject apart (a regular scraper of random text differs in rhythm and entropy alone, a stolen
 * key in what is new to it), within its group they often do. A subject's score is the highest of the forests' (a
 * group's less its `handicap`). Each group holds the subject's kind, so keys are compared with keys.
 *
 * The handicaps were chosen on the bench's tuning seeds. Rhythm and entropy isolate some ordinary bursty or templated
 * keys a little: 0.05 (chosen when one handicap served both groups; none doubled the false actions). What is new to a
 * subject does not (an ordinary subject scores about 0.51 there), and the same 0.05 on it let stolen keys through.
 */
const VIEWS: { features: FeatureName[]; handicap: number }[] = [
  { features: ['gapVariation', 'promptEntropy'], handicap: 0.05 },
  // A model or route new to a key stays in the whole set only: a user trying another model is no stolen key.
  { features: ['newPeerShare', 'newAgentShare'], handicap: 0 },
].map(({ features, handicap }) => ({ features: [...features, 'subjectKind'] as FeatureName[], handicap }));

/** Trees, and points per tree: the published defaults (t = 100, ψ = 256). */
const TREES = 100;
const SAMPLE_SIZE = 256;
/** Reasons given per subject. */
export const REASONS = 3;

const pick = (input: readonly number[], features: readonly number[]) => features.map((feature) => input[feature]!);

/** Grows the model on rows of features (`featuresOf`), with a seed so that a training can be replayed. */
export function trainAbuseForest(rows: readonly number[][], seed: number): Pick<AbuseModel, 'views' | 'ranges'> {
  const inputs = rows.map(modelInput);
  const ranges = featureRanges(inputs);
  const groups = [
    FEATURE_NAMES.map((_, i) => i),
    ...VIEWS.map((group) => group.features.map((n) => FEATURE_NAMES.indexOf(n))),
  ];
  const views = groups.map((features, i) => ({
    features,
    forest: trainIsolationForest(
      inputs.map((input) => pick(input, features)),
      { trees: TREES, sampleSize: SAMPLE_SIZE, seed: seed * 31 + i },
    ),
  }));
  return { views, ranges };
}

/**
 * Whether `features` lie outside what the model was grown on. A forest never splits on a feature that did not vary
 * in its training, so a subject set apart by such a feature alone (the first 401s a deployment sees) would look
 * ordinary: the model is grown anew, with it, before it is scored.
 */
export function novelTo(model: Pick<AbuseModel, 'ranges'>, features: readonly number[]): boolean {
  const input = modelInput(features);
  return model.ranges.some(([min, max], feature) => input[feature]! < min || input[feature]! > max);
}

/** The highest score of the model's forests. */
export function abuseScore(model: Pick<AbuseModel, 'views'>, features: readonly number[]): number {
  return abuseScores(model, Float64Array.from(features), 1)[0]!;
}

/**
 * `abuseScore` of `count` rows of a flat window (`FEATURE_NAMES.length` features a row): each view's features of every
 * row in one buffer, scored forest by forest (`isolationScores`), with no array made per row.
 */
export function abuseScores(model: Pick<AbuseModel, 'views'>, rows: Float64Array, count: number): Float64Array {
  const width = FEATURE_NAMES.length;
  const inputs = new Float64Array(count * width);
  for (let i = 0; i < inputs.length; i++) inputs[i] = modelInputOf(i % width, rows[i]!);
  const best = new Float64Array(count).fill(-Infinity);
  const scores = new Float64Array(count);
  model.views.forEach((view, v) => {
    const features = view.features;
    const points = new Float64Array(count * features.length);
    for (let row = 0, at = 0; row < count; row++)
      for (const feature of features) points[at++] = inputs[row * width + feature]!;
    isolationScores(view.forest, points, count, scores);
    // The whole set first, then the groups, each less its handicap.
    const handicap = v === 0 ? 0 : VIEWS[v - 1]!.handicap;
    for (let row = 0; row < count; row++) if (scores[row]! - handicap > best[row]!) best[row] = scores[row]! - handicap;
  });
  return best;
}

/**
 * The k-th smallest of `values`' first `n` (quickselect, three-way: values alike are common), leaving every value
 * before k no greater than it: a median of 100,000 in about a millisecond, where a sort took tens (bench/guard-stall.ts).
 */
function select(values: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    // A pivot drawn at random: no order of values makes it slow.
    const pivot = values[lo + Math.floor(Math.random() * (hi - lo + 1))]!;
    let lt = lo;
    let gt = hi;
    let i = lo;
    while (i <= gt) {
      const value = values[i]!;
      if (value < pivot) {
        values[i++] = values[lt]!;
        values[lt++] = value;
      } else if (value > pivot) {
        values[i] = values[gt]!;
        values[gt--] = value;
      } else i++;
    }
    if (k < lt) hi = lt - 1;
    else if (k > gt) lo = gt + 1;
    else return pivot;
  }
  return values[k]!;
}

/** The median of `values`' first `n` (0 for none); reorders them. */
function median(values: Float64Array, n: number): number {
  if (n === 0) return 0;
  const middle = n >> 1;
  const upper = select(values, n, middle);
  if (n % 2) return upper;
  let lower = -Infinity;
  for (let i = 0; i < middle; i++) if (values[i]! > lower) lower = values[i]!;
  return (lower + upper) / 2;
}

/**
 * Per feature, the population's median as a person reads it, and its median and robust spread as the model reads
 * the feature (log scale for rates and counts): 1.4826 × MAD, at least `MIN_SPREAD`, so a feature nearly everyone
 * shares still ranks, and a small difference in it is not evidence.
 */
export interface PopulationProfile {
  medians: number[];
  inputMedians: number[];
  inputSpreads: number[];
}

/**
 * The least spread of each feature on the model's scale: the smallest difference a person would call one (a factor
 * of about 1.3 in a rate or a count, 0.05 of a share, half a bit of entropy, 0.25 of a variation).
 */
const MIN_SPREAD: Record<FeatureName, number> = {
  requestsPerMinute: 0.25,
  gapVariation: 0.25,
  share401: 0.05,
  share403: 0.05,
  share4xx: 0.05,
  shareRefused: 0.05,
  shareFlagged: 0.05,
  peers: 0.25,
  userAgents: 0.25,
  models: 0.25,
  routes: 0.25,
  promptChars: 0.25,
  promptCharsVariation: 0.25,
  promptEntropy: 0.5,
  promptEntropySpread: 0.5,
  repeatShare: 0.05,
  nearRepeatShare: 0.05,
  newPeerShare: 0.1,
  newAgentShare: 0.1,
  newUseShare: 0.1,
  tokensPerMinute: 0.25,
  usdPerMinute: 0.25,
  subjectKind: 1,
};

export function populationProfile(rows: readonly (readonly number[])[]): PopulationProfile {
  const flat = new Float64Array(rows.length * FEATURE_NAMES.length);
  rows.forEach((row, i) => flat.set(row, i * FEATURE_NAMES.length));
  return windowProfile(flat, Int32Array.from(rows.keys()));
}

/** `populationProfile` of some rows of a flat window (`FEATURE_NAMES.length` features a row), by their indices. */
export function windowProfile(flat: Float64Array, indices: ArrayLike<number>): PopulationProfile {
  const width = FEATURE_NAMES.length;
  const n = indices.length;
  const raw = new Float64Array(n);
  const values = new Float64Array(n);
  const profile: PopulationProfile = { medians: [], inputMedians: [], inputSpreads: [] };
  for (let feature = 0; feature < width; feature++) {
    for (let i = 0; i < n; i++) {
      const value = flat[indices[i]! * width + feature]!;
      raw[i] = value;
      values[i] = modelInputOf(feature, value);
    }
    const middle = median(values, n);
    for (let i = 0; i < n; i++) values[i] = Math.abs(values[i]! - middle);
    profile.medians.push(median(raw, n));
    profile.inputMedians.push(middle);
    const floor = MIN_SPREAD[FEATURE_NAMES[feature]!];
    profile.inputSpreads.push(Math.max(1.4826 * median(values, n), floor));
  }
  return profile;
}

/** What set a subject apart: its top features, and how far the furthest lies from the median, in robust spreads. */
interface AbuseEvidence {
  reasons: AbuseReason[];
  distance: number;
}

/** The features that set `features` furthest apart from the profile's medians (on the model's scale). */
export function abuseEvidence(features: readonly number[], profile: PopulationProfile): AbuseEvidence {
  const input = modelInput(features);
  const ranked: { feature: number; distance: number }[] = [];
  for (let feature = 0; feature < FEATURE_NAMES.length; feature++) {
    if (FEATURE_NAMES[feature] === 'subjectKind') continue;
    const distance = Math.abs(input[feature]! - profile.inputMedians[feature]!) / profile.inputSpreads[feature]!;
    if (distance > 0) ranked.push({ feature, distance });
  }
  ranked.sort((a, b) => b.distance - a.distance);
  const round = (value: number) => Number(value.toPrecision(3));
  return {
    reasons: ranked.slice(0, REASONS).map(({ feature }) => ({
      feature: FEATURE_NAMES[feature]!,
      value: round(features[feature]!),
      population: round(profile.medians[feature]!),
    })),
    distance: ranked[0]?.distance ?? 0,
  };
}

/** Reasons in words: `requestsPerMinute 120 (usual 4), share401 0.9 (usual 0)`. */
export function describeReasons(reasons: readonly AbuseReason[]): string {
  return reasons.map((reason) => `${reason.feature} ${reason.value} (usual ${reason.population})`).join(', ');
}

/** Subjects grouped by kind, so each is compared with its own kind's population. */
export function byKind<T>(subjects: Iterable<[AbuseSubject, T]>): Map<string, [AbuseSubject, T][]> {
  const groups = new Map<string, [AbuseSubject, T][]>();
  for (const entry of subjects) {
    const kind = entry[0].slice(0, entry[0].indexOf(':'));
    let group = groups.get(kind);
    if (!group) groups.set(kind, (group = []));
    group.push(entry);
  }
  return groups;
}
