// The abuse model's work on a whole window of subjects (grow, score, rules), as the abuse worker thread runs it.
import type { TimeSlice } from '@tollgate/core/store-contracts';
import { FEATURE_NAMES, MARK_SEPARATOR } from './abuse-features.js';
import {
  abuseEvidence,
  abuseScore,
  abuseScores,
  novelTo,
  REASONS,
  trainAbuseForest,
  windowProfile,
  type AbuseModel,
  type AbuseReason,
  type PopulationProfile,
} from './abuse-model.js';
import { seededRandom } from './isolation-forest.js';

/** Features per row of a window (`featuresOf`): rows travel to the worker as one flat Float64Array. */
export const FEATURE_COUNT = FEATURE_NAMES.length;
/** Rows the model is trained on at most (the oldest windows dropped first; a larger window sampled). */
const MAX_TRAINING_ROWS = 8_192;
/** Subjects in the shared scoring (highest scores kept): bounds the store's value and each process's copy. */
const MAX_LISTED_SUBJECTS = 2_000;
/** A subject with fewer requests in the window is scored but never acted on: too little to judge. */
export const MIN_REQUESTS_TO_ACT = 5;

/**
 * Coordinated credential stuffing: at least this many addresses in one window, each of which tried at least
 * `STUFFING_CREDENTIALS` different credentials and had every request refused 401. One such address is a person
 * with a wrong key; this many at once is one attack spread thin (each address too slow for its own limits).
 */
const STUFFING_ADDRESSES = 5;
const STUFFING_CREDENTIALS = 2;

const SHARE_401 = FEATURE_NAMES.indexOf('share401');
const PEERS = FEATURE_NAMES.indexOf('peers');
const KIND = FEATURE_NAMES.indexOf('subjectKind');
/** `KIND_CODE.address` in abuse-features.ts. */
const ADDRESS_KIND = 1;

/** A window of subjects as the worker reads it: `count` rows of `FEATURE_COUNT` features, and each row's requests. */
export interface WindowRows {
  rows: Float64Array;
  requests: Float64Array;
  count: number;
}

const rowOf = (window: WindowRows, index: number): number[] =>
  Array.from(window.rows.subarray(index * FEATURE_COUNT, (index + 1) * FEATURE_COUNT));

/** One scored row: its index in the window, score, reasons and how far its furthest feature lies (spreads). */
export interface ScoredRow {
  index: number;
  score: number;
  distance: number;
  reasons: AbuseReason[];
}

/**
 * Scored rows as they cross from the worker: one typed array per field, `REASONS` slots a row for its reasons (feature
 * -1: none). As objects, 2,000 rows were 16,000 objects made on the request loop each round, kept for a round, promoted
 * and then compacted by V8's full collections: its longest pauses under load (bench/guard-stall.ts).
 */
export interface ScoredColumns {
  count: number;
  index: Int32Array;
  score: Float64Array;
  distance: Float64Array;
  reasonFeature: Int8Array;
  reasonValue: Float64Array;
  reasonPopulation: Float64Array;
}

export function scoredColumns(rows: readonly ScoredRow[]): ScoredColumns {
  const count = rows.length;
  const columns: ScoredColumns = {
    count,
    index: new Int32Array(count),
    score: new Float64Array(count),
    distance: new Float64Array(count),
    reasonFeature: new Int8Array(count * REASONS).fill(-1),
    reasonValue: new Float64Array(count * REASONS),
    reasonPopulation: new Float64Array(count * REASONS),
  };
  rows.forEach((row, i) => {
    columns.index[i] = row.index;
    columns.score[i] = row.score;
    columns.distance[i] = row.distance;
    row.reasons.slice(0, REASONS).forEach((reason, r) => {
      columns.reasonFeature[i * REASONS + r] = FEATURE_NAMES.indexOf(reason.feature);
      columns.reasonValue[i * REASONS + r] = reason.value;
      columns.reasonPopulation[i * REASONS + r] = reason.population;
    });
  });
  return columns;
}

/**
 * Row `i`'s reasons: `earlier` itself when they are the same (a subject's reasons change only when its sums or the
 * population do), so a round makes no new objects for a listed subject whose evidence stayed.
 */
export function reasonsAt(columns: ScoredColumns, i: number, earlier?: readonly AbuseReason[]): AbuseReason[] {
  let count = 0;
  while (count < REASONS && columns.reasonFeature[i * REASONS + count]! >= 0) count++;
  let same = earlier?.length === count;
  for (let r = 0; same && r < count; r++) {
    const reason = earlier![r]!;
    same =
      reason.feature === FEATURE_NAMES[columns.reasonFeature[i * REASONS + r]!] &&
      reason.value === columns.reasonValue[i * REASONS + r] &&
      reason.population === columns.reasonPopulation[i * REASONS + r];
  }
  if (same) return earlier as AbuseReason[];
  return Array.from({ length: count }, (_, r) => ({
    feature: FEATURE_NAMES[columns.reasonFeature[i * REASONS + r]!]!,
    value: columns.reasonValue[i * REASONS + r]!,
    population: columns.reasonPopulation[i * REASONS + r]!,
  }));
}

/**
 * Scores every row, each against the population of its own kind, and keeps the `MAX_LISTED_SUBJECTS` highest
 * (rows in the window's order, grouped by kind in order of first appearance; a stable sort by score). Only those
 * kept are given their evidence; no array is made per row (100,000 rows took 5 s before: bench/guard-stall.ts).
 */
export function scoreWindow(model: Pick<AbuseModel, 'views'>, window: WindowRows): ScoredRow[] {
  const groups = new Map<number, number[]>();
  for (let index = 0; index < window.count; index++) {
    const kind = window.rows[index * FEATURE_COUNT + KIND]!;
    let group = groups.get(kind);
    if (!group) groups.set(kind, (group = []));
    group.push(index);
  }
  const { rows: distinct, count, of } = distinctRows(window);
  const distinctScores = abuseScores(model, distinct, count);
  const scores = new Float64Array(window.count);
  const order: number[] = [];
  for (const group of groups.values())
    for (const index of group) {
      scores[index] = Number(distinctScores[of[index]!]!.toFixed(4));
      order.push(index);
    }
  order.sort((a, b) => scores[b]! - scores[a]!);
  order.length = Math.min(order.length, MAX_LISTED_SUBJECTS);
  const profiles = new Map<number, PopulationProfile>();
  return order.map((index) => {
    const kind = window.rows[index * FEATURE_COUNT + KIND]!;
    let profile = profiles.get(kind);
    if (!profile) profiles.set(kind, (profile = windowProfile(window.rows, groups.get(kind)!)));
    const { reasons, distance } = abuseEvidence(rowOf(window, index), profile);
    return { index, score: scores[index]!, distance, reasons };
  });
}

/**
 * The window's distinct rows (`count` of them, in order of first appearance) and, per row, which of them it equals:
 * a crowd of 100,000 addresses holds many alike (one request each, the same client), each scored once. Rows are
 * compared whole (a hash only finds the candidates), so no two rows that differ share a score.
 */
function distinctRows(window: WindowRows): { rows: Float64Array; count: number; of: Int32Array } {
  const { rows, count: total } = window;
  const words = new Uint32Array(rows.buffer, rows.byteOffset, total * FEATURE_COUNT * 2);
  let size = 1024;
  while (size < 2 * total) size *= 2;
  // Open addressing: a slot holds 1 + the first row of a distinct row, 0 when empty.
  const slots = new Int32Array(size);
  const of = new Int32Array(total);
  const firsts: number[] = [];
  const alike = (a: number, b: number) => {
    for (let f = 0; f < FEATURE_COUNT; f++)
      if (!Object.is(rows[a * FEATURE_COUNT + f], rows[b * FEATURE_COUNT + f])) return false;
    return true;
  };
  for (let row = 0; row < total; row++) {
    let hash = 0x811c9dc5;
    for (let w = row * FEATURE_COUNT * 2, end = w + FEATURE_COUNT * 2; w < end; w++)
      hash = Math.imul(hash ^ words[w]!, 0x01000193);
    let slot = hash & (size - 1);
    for (;;) {
      const held = slots[slot]!;
      if (held === 0) {
        slots[slot] = row + 1;
        of[row] = firsts.length;
        firsts.push(row);
        break;
      }
      if (alike(held - 1, row)) {
        of[row] = of[held - 1]!;
        break;
      }
      slot = (slot + 1) & (size - 1);
    }
  }
  const distinct = new Float64Array(firsts.length * FEATURE_COUNT);
  firsts.forEach((row, i) =>
    distinct.set(rows.subarray(row * FEATURE_COUNT, (row + 1) * FEATURE_COUNT), i * FEATURE_COUNT),
  );
  return { rows: distinct, count: firsts.length, of };
}

/** Whether a row with enough requests to act on lies outside what the model was grown on. */
export function windowIsNovel(model: Pick<AbuseModel, 'ranges'>, window: WindowRows): boolean {
  for (let index = 0; index < window.count; index++)
    if (window.requests[index]! >= MIN_REQUESTS_TO_ACT && novelTo(model, rowOf(window, index))) return true;
  return false;
}

/**
 * The addresses of a coordinated credential-stuffing attack in this window (see `STUFFING_ADDRESSES`), at most
 * `MAX_LISTED_SUBJECTS`, scored by the model when there is one (else 0) with their reasons among all addresses: none
 * unless at least that many addresses each failed every request with several different credentials.
 */
export function stuffingWindow(model: Pick<AbuseModel, 'views'> | undefined, window: WindowRows): ScoredRow[] {
  const found: number[] = [];
  const addresses: number[] = [];
  for (let index = 0; index < window.count; index++) {
    const at = index * FEATURE_COUNT;
    if (window.rows[at + KIND] !== ADDRESS_KIND) continue;
    addresses.push(index);
    if (window.rows[at + SHARE_401] === 1 && window.rows[at + PEERS]! >= STUFFING_CREDENTIALS) found.push(index);
  }
  if (found.length < STUFFING_ADDRESSES) return [];
  const profile = windowProfile(window.rows, addresses);
  return found.slice(0, MAX_LISTED_SUBJECTS).map((index) => {
    const row = rowOf(window, index);
    const { reasons, distance } = abuseEvidence(row, profile);
    return { index, score: model ? Number(abuseScore(model, row).toFixed(4)) : 0, distance, reasons };
  });
}

/** One window of training rows, as the store keeps them. */
interface TrainingWindow {
  at: number;
  subjects: string[];
  rows: number[][];
  /**
   * Taken before the watch had seen a whole window of traffic: every subject's window is only partly filled (its
   * rates read low, its values few). Dropped once a whole window is kept.
   */
  partial?: boolean;
}

export interface GrowRequest {
  /** The training windows as stored (JSON), if any. */
  history: string | undefined;
  /**
   * The window's subjects in parts, each part's joined by `MARK_SEPARATOR` and UTF-8 encoded: buffers moved to the
   * worker, not copied (a 2 MB string took 8-12 ms of the request loop to cross, bench/guard-stall.ts).
   */
  subjects: Uint8Array[];
  now: number;
  /** This window joins the training windows (a scheduled training), or is used once (a novel subject). */
  keep: boolean;
  version: number;
  windowMs: number;
  bucketMs: number;
  historyMs: number;
  minSubjects: number;
}

interface GrowResult {
  /** The training windows to store (JSON), when this window joined them. */
  history?: string;
  model?: AbuseModel;
}

/** Characters of a long text encoded at a time (`textParts`): about a third of a millisecond each. */
const TEXT_PART = 262_144;

/**
 * A long text (a model's or the training windows' JSON, megabytes) as UTF-8 parts made in slices: buffers the worker
 * is handed whole (moved, not copied), where a string of 2 MB held the request loop 8-12 ms to cross. A part never ends
 * inside a surrogate pair, so each decodes alone.
 */
export async function textParts(text: string, slice: TimeSlice): Promise<Uint8Array[]> {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (let from = 0; from < text.length;) {
    let to = Math.min(text.length, from + TEXT_PART);
    const last = text.charCodeAt(to - 1);
    if (to < text.length && last >= 0xd800 && last <= 0xdbff) to++;
    parts.push(encoder.encode(text.slice(from, to)));
    from = to;
    await slice.pause();
  }
  return parts;
}

/** The text `textParts` made. */
export function partsText(parts: readonly Uint8Array[]): string {
  const decoder = new TextDecoder();
  return parts.map((part) => decoder.decode(part)).join('');
}

/** The buffers of `parts`, to move with them. */
export function buffersOf(parts: readonly Uint8Array[]): ArrayBuffer[] {
  return parts.map((part) => part.buffer as ArrayBuffer);
}

/** At most `MAX_TRAINING_ROWS` of a window's rows (and their subjects), a seeded sample when it holds more. */
function sampleWindow(subjects: string[], rows: number[][], seed: number): { subjects: string[]; rows: number[][] } {
  if (rows.length <= MAX_TRAINING_ROWS) return { subjects, rows };
  const random = seededRandom(seed);
  const picked = Array.from({ length: rows.length }, (_, i) => i);
  for (let i = 0; i < MAX_TRAINING_ROWS; i++) {
    const j = i + Math.floor(random() * (picked.length - i));
    [picked[i], picked[j]] = [picked[j]!, picked[i]!];
  }
  const kept = picked.slice(0, MAX_TRAINING_ROWS).sort((a, b) => a - b);
  return { subjects: kept.map((i) => subjects[i]!), rows: kept.map((i) => rows[i]!) };
}

/**
 * Grows a forest on the training windows and this one, once they hold `minSubjects` subjects. `keep`: this window
 * joins the training windows (a scheduled training; a bucket's later view replaces its earlier one). A training for
 * a novel subject keeps nothing: a subject kept once per tick would soon outnumber the crowd it must stand out of.
 */
export function growModel(request: GrowRequest, window: WindowRows): GrowResult {
  const { now, historyMs, windowMs, bucketMs } = request;
  let windows = (request.history ? (JSON.parse(request.history) as TrainingWindow[]) : []).filter(
    (stored) => stored.at > now - historyMs,
  );
  const all = Array.from({ length: window.count }, (_, i) => rowOf(window, i));
  const decoder = new TextDecoder();
  const names = window.count > 0 ? request.subjects.flatMap((part) => decoder.decode(part).split(MARK_SEPARATOR)) : [];
  const current: TrainingWindow = { at: now, ...sampleWindow(names, all, request.version) };
  // The start's windows are partial until one is taken a whole window after the first; it replaces them.
  const first = windows[0];
  if (!first || (first.partial && now - first.at < windowMs)) current.partial = true;
  else windows = windows.filter((stored) => !stored.partial);
  const result: GrowResult = {};
  if (request.keep && window.count > 0) {
    if (windows.length > 0 && now - windows.at(-1)!.at < bucketMs) windows.pop();
    windows.push(current);
    let rows = windows.reduce((sum, stored) => sum + stored.rows.length, 0);
    while (rows > MAX_TRAINING_ROWS && windows.length > 1) rows -= windows.shift()!.rows.length;
    result.history = JSON.stringify(windows);
  } else windows.push(current);
  const subjects = new Set(windows.flatMap((stored) => stored.subjects)).size;
  if (subjects < request.minSubjects) return result;
  result.model = {
    version: request.version,
    trainedAt: now,
    subjects,
    partial: windows.every((stored) => stored.partial === true),
    ...trainAbuseForest(
      windows.flatMap((stored) => stored.rows),
      request.version,
    ),
  };
  return result;
}
