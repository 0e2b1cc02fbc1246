// The abuse model: an isolation forest grown on the deployment's recent windows, scoring subjects and saying why.
import { FEATURE_NAMES, modelInput, type AbuseSubject, type FeatureName } from './abuse-features.js';
import { isolationScore, trainIsolationForest, type IsolationForest } from './isolation-forest.js';

/** One feature that set a subject apart: its value and the population's (the median of subjects of its kind). */
export interface AbuseReason {
  feature: FeatureName;
  value: number;
  population: number;
}

/** The forest and what it was grown on, as every process loads it from the store. */
export interface AbuseModel {
  version: number;
  /** Epoch ms. */
  trainedAt: number;
  /** Distinct subjects among the windows it was grown on. */
  subjects: number;
  forest: IsolationForest;
}

/** Trees, and points per tree: the published defaults (t = 100, ψ = 256). */
const TREES = 100;
const SAMPLE_SIZE = 256;
/** Reasons given per subject. */
const REASONS = 3;

/** Grows the model on rows of features (`featuresOf`), with a seed so that a training can be replayed. */
export function trainAbuseForest(rows: readonly number[][], seed: number): IsolationForest {
  return trainIsolationForest(rows.map(modelInput), { trees: TREES, sampleSize: SAMPLE_SIZE, seed });
}

export function abuseScore(forest: IsolationForest, features: readonly number[]): number {
  return isolationScore(forest, modelInput(features));
}

function median(sorted: readonly number[]): number {
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Per feature, the population's median and a robust spread (1.4826 × MAD, with a floor so a constant feature still ranks). */
export interface PopulationProfile {
  medians: number[];
  spreads: number[];
}

export function populationProfile(rows: readonly number[][]): PopulationProfile {
  const medians: number[] = [];
  const spreads: number[] = [];
  for (let feature = 0; feature < FEATURE_NAMES.length; feature++) {
    const values = rows.map((row) => row[feature]!).sort((a, b) => a - b);
    const middle = values.length ? median(values) : 0;
    const deviations = values.map((value) => Math.abs(value - middle)).sort((a, b) => a - b);
    const mad = deviations.length ? median(deviations) : 0;
    medians.push(middle);
    spreads.push(Math.max(1.4826 * mad, 0.1 * Math.abs(middle), 0.01));
  }
  return { medians, spreads };
}

/** The features that set `features` furthest apart from the profile's medians, in robust standard deviations. */
export function abuseReasons(features: readonly number[], profile: PopulationProfile): AbuseReason[] {
  const ranked: { feature: number; distance: number }[] = [];
  for (let feature = 0; feature < FEATURE_NAMES.length; feature++) {
    if (FEATURE_NAMES[feature] === 'subjectKind') continue;
    const distance = Math.abs(features[feature]! - profile.medians[feature]!) / profile.spreads[feature]!;
    if (distance > 0) ranked.push({ feature, distance });
  }
  ranked.sort((a, b) => b.distance - a.distance);
  const round = (value: number) => Number(value.toPrecision(3));
  return ranked.slice(0, REASONS).map(({ feature }) => ({
    feature: FEATURE_NAMES[feature]!,
    value: round(features[feature]!),
    population: round(profile.medians[feature]!),
  }));
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
