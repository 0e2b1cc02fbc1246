// What the abuse model sees: each request's traits summed per subject and bucket, and a window's sums as features.
import { ShardedMap } from '@tollgate/core/store-contracts';
import type { AbuseSubjectKind } from './abuse-options.js';

/** A subject as operators name it: `key:<id>`, `address:<ip>`, `tenant:<id>`. */
export type AbuseSubject = `key:${string}` | `address:${string}` | `tenant:${string}`;

/** The sums kept per subject and bucket, in this order (the store adds them up across processes). */
export const TALLY_COUNTS = [
  'requests',
  'gaps',
  'gapSum',
  'gapSquares',
  'status401',
  'status403',
  'status4xx',
  'refused',
  'flagged',
  'prompts',
  'chars',
  'charSquares',
  'entropy',
  'entropySquares',
  'repeats',
  'nearRepeats',
  'newPeers',
  'newAgents',
  'newUses',
  'tokens',
  'spendNanoUsd',
] as const;
export type TallyCount = (typeof TALLY_COUNTS)[number];
export const COUNT_INDEX = Object.fromEntries(TALLY_COUNTS.map((name, i) => [name, i])) as Record<TallyCount, number>;

/**
 * Distinct values kept per subject and bucket: the other side (addresses of a key, keys an address tried), user
 * agents, models, routes.
 */
export type MarkKind = 'peer' | 'agent' | 'model' | 'route';
/** Distinct values of a kind one process sends per subject and bucket: past it a count saturates (bounds the store). */
export const MARKS_PER_KIND = 64;
/** The separator of a mark's kind and value (never in a value: removed from it). */
export const MARK_SEPARATOR = '\u001f';

/** One process's additions to one subject's bucket since its last flush. */
export interface AbuseTallyDelta {
  subject: AbuseSubject;
  counts: Partial<Record<TallyCount, number>>;
  /** `<kind>\u001f<value>`. */
  marks: string[];
}

/** A subject's bucket sums over a window, merged across processes and buckets. */
interface AbuseTally {
  counts: Record<TallyCount, number>;
  marks: Set<string>;
}

const ZERO_COUNTS = Object.fromEntries(TALLY_COUNTS.map((name) => [name, 0])) as Record<TallyCount, number>;

export function emptyTally(): AbuseTally {
  return { counts: { ...ZERO_COUNTS }, marks: new Set() };
}

/** What one request's prompt looks like, read once per request. */
export interface PromptTraits {
  chars: number;
  /** Shannon entropy of the characters read, bits per character. */
  entropy: number;
  /** 32-bit hash of the text read: the same prompt again. */
  fingerprint: number;
  /** 32-bit hash of its letters alone, lower-cased: the same prompt with other numbers, spacing or punctuation. */
  nearFingerprint: number;
}

/** Characters of a prompt read for its entropy and fingerprints: a bound on the per-request cost. */
const PROMPT_SAMPLE_CHARS = 1024;

/**
 * Reads the first `PROMPT_SAMPLE_CHARS` characters of `texts` once: entropy over char codes folded into 256 bins
 * (exact for Latin text, an approximation beyond), FNV-1a hashes of the text and of its letters.
 */
export function promptTraits(texts: readonly string[]): PromptTraits | undefined {
  let chars = 0;
  for (const text of texts) chars += text.length;
  if (chars === 0) return undefined;
  const bins = new Uint16Array(256);
  let read = 0;
  let hash = 0x811c9dc5;
  let near = 0x811c9dc5;
  for (const text of texts) {
    const end = Math.min(text.length, PROMPT_SAMPLE_CHARS - read);
    for (let i = 0; i < end; i++) {
      const code = text.charCodeAt(i);
      bins[code & 255]!++;
      hash = Math.imul(hash ^ code, 0x01000193);
      const lower = code | 0x20;
      if (lower >= 97 && lower <= 122) near = Math.imul(near ^ lower, 0x01000193);
    }
    read += end;
    if (read >= PROMPT_SAMPLE_CHARS) break;
  }
  let entropy = 0;
  for (const count of bins) {
    if (count === 0) continue;
    const p = count / read;
    entropy -= p * Math.log2(p);
  }
  return { chars, entropy, fingerprint: hash >>> 0, nearFingerprint: near >>> 0 };
}

/** One request as the abuse watch reads it at its end. */
export interface RequestTraits {
  at: number;
  status: number;
  /** The layer that refused it, when tollgate did. */
  refusedBy: string | undefined;
  prompt: PromptTraits | undefined;
  model: string | undefined;
  route: string;
  agent: string;
}

/** Each mark kind's slot in a row's marks. */
export const KIND_SLOT: Record<MarkKind, number> = { peer: 0, agent: 1, model: 2, route: 3 };

/** The features, named for people, in the model's order. */
export const FEATURE_NAMES = [
  'requestsPerMinute',
  'gapVariation',
  'share401',
  'share403',
  'share4xx',
  'shareRefused',
  'shareFlagged',
  'peers',
  'userAgents',
  'models',
  'routes',
  'promptChars',
  'promptCharsVariation',
  'promptEntropy',
  'promptEntropySpread',
  'repeatShare',
  'nearRepeatShare',
  'newPeerShare',
  'newAgentShare',
  'newUseShare',
  'tokensPerMinute',
  'usdPerMinute',
  'subjectKind',
] as const;
export type FeatureName = (typeof FEATURE_NAMES)[number];

const KIND_CODE: Record<AbuseSubjectKind, number> = { key: 0, address: 1, tenant: 2 };

function subjectKind(subject: AbuseSubject): AbuseSubjectKind {
  return subject.slice(0, subject.indexOf(':')) as AbuseSubjectKind;
}

/** Gaps of random arrivals (variation 1) a subject's own gap variation is weighed against. */
const GAP_PRIOR = 5;

const ratio = (part: number, whole: number) => (whole > 0 ? part / whole : 0);

/** Standard deviation over mean of n values from their sum and sum of squares; `fallback` for too few. */
function variation(n: number, sum: number, squares: number, fallback: number): number {
  if (n < 3 || sum <= 0) return fallback;
  const mean = sum / n;
  return Math.min(3, Math.sqrt(Math.max(0, squares / n - mean * mean)) / mean);
}

/** A window's tally as features a person reads (rates per minute, shares 0-1, counts, means). */
export function featuresOf(subject: AbuseSubject, tally: AbuseTally, windowMs: number): number[] {
  return AbuseTallyTable.of([[subject, tally]]).features(subject, windowMs)!;
}

/**
 * The features of `table`'s `row` written into `rows` from `offset`: a window of 100,000 subjects is read into one
 * buffer without an array per subject (bench/guard-stall.ts).
 */
export function writeFeatures(
  rows: Float64Array,
  offset: number,
  table: AbuseTallyTable,
  row: number,
  windowMs: number,
): Float64Array {
  const I = COUNT_INDEX;
  const minutes = windowMs / 60_000;
  const requests = table.count(row, I.requests);
  const prompts = table.count(row, I.prompts);
  const entropyMean = ratio(table.count(row, I.entropy), prompts);
  // Few gaps say little of a rhythm: their variation is drawn towards that of random arrivals (1), as if
  // GAP_PRIOR gaps of it had been seen too.
  const gaps = table.count(row, I.gaps);
  const gapVariation =
    (gaps * variation(gaps, table.count(row, I.gapSum), table.count(row, I.gapSquares), 1) + GAP_PRIOR) /
    (gaps + GAP_PRIOR);
  let at = offset;
  rows[at++] = requests / minutes;
  rows[at++] = gapVariation;
  rows[at++] = ratio(table.count(row, I.status401), requests);
  rows[at++] = ratio(table.count(row, I.status403), requests);
  rows[at++] = ratio(table.count(row, I.status4xx), requests);
  rows[at++] = ratio(table.count(row, I.refused), requests);
  rows[at++] = ratio(table.count(row, I.flagged), requests);
  for (let slot = 0; slot < KIND_SLOTS; slot++) rows[at++] = table.marks(row, slot);
  rows[at++] = ratio(table.count(row, I.chars), prompts);
  rows[at++] = variation(prompts, table.count(row, I.chars), table.count(row, I.charSquares), 0);
  rows[at++] = entropyMean;
  rows[at++] =
    prompts >= 2 ? Math.sqrt(Math.max(0, table.count(row, I.entropySquares) / prompts - entropyMean * entropyMean)) : 0;
  rows[at++] = ratio(table.count(row, I.repeats), prompts);
  rows[at++] = ratio(table.count(row, I.nearRepeats), prompts);
  rows[at++] = ratio(table.count(row, I.newPeers), requests);
  rows[at++] = ratio(table.count(row, I.newAgents), requests);
  rows[at++] = ratio(table.count(row, I.newUses), requests);
  rows[at++] = table.count(row, I.tokens) / minutes;
  rows[at++] = table.count(row, I.spendNanoUsd) / 1e9 / minutes;
  rows[at++] = KIND_CODE[subjectKind(table.subjects[row]!)];
  return rows;
}

/** Features whose spread is multiplicative (rates, counts, sizes): the model sees their logarithm. */
const LOGGED = new Set<FeatureName>([
  'requestsPerMinute',
  'peers',
  'userAgents',
  'models',
  'routes',
  'promptChars',
  'tokensPerMinute',
  'usdPerMinute',
]);
const LOGGED_AT = FEATURE_NAMES.map((name) => LOGGED.has(name));

/**
 * Variations the model reads on a log scale too: a regular sender's gap variation (0.05-0.2) lies as far below the
 * crowd's (about 1) as a bursty one's (2-3) above it, so a split drawn uniformly over the range isolates both alike.
 */
const LEAST_VARIATION = 0.01;
const VARIATION_AT = FEATURE_NAMES.indexOf('gapVariation');

/**
 * The features as the model reads them: rates, counts and sizes on a log scale (USD per minute in micro-USD), gap
 * variation as its logarithm.
 */
export function modelInput(features: readonly number[]): number[] {
  return features.map((value, i) => modelInputOf(i, value));
}

const USD_AT = FEATURE_NAMES.indexOf('usdPerMinute');

/** One feature (its index in `FEATURE_NAMES`) as the model reads it (`modelInput`). */
export function modelInputOf(feature: number, value: number): number {
  if (feature === VARIATION_AT) return Math.log(Math.max(value, LEAST_VARIATION));
  return LOGGED_AT[feature] ? Math.log1p(feature === USD_AT ? value * 1e6 : value) : value;
}

/** A delta as a store's hash fields: `<subject>\x1f<count>` with its increment, and `<subject>\x1f<mark>` fields. */
export function tallyFields(delta: AbuseTallyDelta): { sums: [string, number][]; marks: string[] } {
  const prefix = `${delta.subject}${MARK_SEPARATOR}`;
  const sums = Object.entries(delta.counts).map(([name, value]): [string, number] => [`${prefix}${name}`, value]);
  return { sums, marks: delta.marks.map((mark) => `${prefix}${mark}`) };
}

/**
 * Sets one field of a bucket's hash (a sum, or a mark when it holds a second separator) on its subject's row of
 * `into`, the bucket's own table: a field a scan returns twice (HSCAN may) counts once.
 */
export function setTallyField(into: AbuseTallyTable, field: string, value: number): void {
  const cut = field.indexOf(MARK_SEPARATOR);
  if (cut < 0) return;
  const rest = field.slice(cut + 1);
  if (rest.includes(MARK_SEPARATOR)) return into.addMark(into.rowOf(field.slice(0, cut) as AbuseSubject), rest);
  const index = COUNT_INDEX[rest as TallyCount];
  if (index !== undefined) into.setCount(into.rowOf(field.slice(0, cut) as AbuseSubject), index, value);
}

/** The slot of a mark's kind (`KIND_SLOT`), -1 for a kind the model does not read. */
function markSlot(mark: string): number {
  const slot: unknown = KIND_SLOT[mark.slice(0, mark.indexOf(MARK_SEPARATOR)) as MarkKind];
  return typeof slot === 'number' ? slot : -1;
}

/** A text as a 51-bit number: two FNV-1a hashes with other bases (32 and 19 bits). */
export function valueHash(text: string): number {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    a = Math.imul(a ^ code, 0x01000193);
    b = Math.imul(b ^ code, 0x01000193) ^ (b >>> 13);
  }
  return (a >>> 0) * 0x80000 + ((b >>> 0) & 0x7ffff);
}

/**
 * A mark as a 53-bit number: its `valueHash` times four, plus the slot of its kind (a table reads the kind back from
 * the number). Two of one subject's few hundred marks at most collide about once in 10^12.
 */
function markHash(mark: string, slot: number): number {
  return valueHash(mark) * 4 + slot;
}

/** Mark kinds a row counts (`KIND_SLOT`). */
export const KIND_SLOTS = 4;
const MARK_KINDS: readonly MarkKind[] = ['peer', 'agent', 'model', 'route'];
/** Marks a row keeps in the shared pool, a chain each; past it a row's marks go to a Set of its own (rare). */
const CHAIN_LIMIT = 48;
/** Rows per block of a table, and marks per block of its pool (a power of two each: a shift finds the block). */
const ROW_SHIFT = 12;
const ROWS_PER_BLOCK = 1 << ROW_SHIFT;
const NODE_SHIFT = 14;
const NODES_PER_BLOCK = 1 << NODE_SHIFT;

/** A block of a table's rows: counts, distinct marks per kind, and each row's chain of marks (first node, length). */
interface RowBlock {
  counts: Float64Array;
  marks: Uint32Array;
  head: Int32Array;
  chained: Uint8Array;
  /** The round each row was last written in (a table kept across rounds, `renew()`): one of an earlier round is empty. */
  round: Uint32Array;
  /** The table's count of writes when each row was last written (`writtenSince`). */
  written: Float64Array;
}

/** A block of a table's pool of marks: each node's hash and the next node of its row's chain (-1: the end). */
interface NodeBlock {
  hash: Float64Array;
  next: Int32Array;
}

/**
 * Blocks of released tables, taken by the next ones: a window of 100,000 subjects merged every second would otherwise
 * allocate about 20 MB of typed arrays a round, and external memory growing that fast brings full collections.
 */
const spareRows: RowBlock[] = [];
const spareNodes: NodeBlock[] = [];
/** At most this many spare blocks are kept (about 25 MB and 6 MB). */
const MAX_SPARE_ROW_BLOCKS = 32;
const MAX_SPARE_NODE_BLOCKS = 32;
/** Rows of earlier rounds a kept table holds (`renew()`) before it starts afresh, at least: and no more than live ones. */
const STALE_ROWS_KEPT = 4_096;

function rowBlock(): RowBlock {
  const spare = spareRows.pop();
  if (!spare)
    return {
      counts: new Float64Array(ROWS_PER_BLOCK * TALLY_COUNTS.length),
      marks: new Uint32Array(ROWS_PER_BLOCK * KIND_SLOTS),
      head: new Int32Array(ROWS_PER_BLOCK).fill(-1),
      chained: new Uint8Array(ROWS_PER_BLOCK),
      round: new Uint32Array(ROWS_PER_BLOCK),
      written: new Float64Array(ROWS_PER_BLOCK),
    };
  spare.counts.fill(0);
  spare.marks.fill(0);
  spare.head.fill(-1);
  spare.chained.fill(0);
  spare.round.fill(0);
  spare.written.fill(0);
  return spare;
}

function nodeBlock(): NodeBlock {
  return spareNodes.pop() ?? { hash: new Float64Array(NODES_PER_BLOCK), next: new Int32Array(NODES_PER_BLOCK) };
}

/** A subject's sums as a person reads them: each count by name, and how many distinct marks of each kind. */
interface AbuseTallyView {
  counts: Record<TallyCount, number>;
  marks: Record<MarkKind, number>;
}

/**
 * Subjects' sums over a window (or one bucket), merged across buckets and processes, in blocks of typed arrays: one
 * row per subject, with its counts in `TALLY_COUNTS` order and, per mark kind, how many distinct values. A window of
 * 100,000 subjects is merged every second: objects for each (a record, a Set of marks) would survive the young
 * generation's collections for the length of a round and be copied by each, and arrays grown by copying would hold
 * the loop for tens of ms; this was the watch's longest stall (bench/guard-stall.ts). Marks are kept as hashes, not
 * strings: a row tells how many, not which. `release()` hands the blocks to the next table; a table kept across rounds
 * (`renew()`) keeps its subjects' rows and builds nothing anew.
 */
export class AbuseTallyTable {
  readonly subjects: AbuseSubject[] = [];
  /**
   * Each subject's row: in a ShardedMap (one Map of 100,000 grows by rehashing all it holds in one step), or in one Map
   * kept least recently seen first in a table `seen()` keeps in order.
   */
  readonly #index: ShardedMap<number> | Map<AbuseSubject, number>;
  #blocks: RowBlock[] = [];
  #nodes: NodeBlock[] = [];
  #nodeCount = 0;
  /** Rows with more than CHAIN_LIMIT marks, their marks in a Set instead. */
  readonly #overflow = new Map<number, Set<number>>();
  /** The round rows are written in now (`renew()`), and how many were. */
  #round = 0;
  #live = 0;
  /** Rows handed out to be written (`rowOf`, `seen`), counted: each row keeps the count of its last. */
  #writes = 0;
  /** Bumped whenever a row may lose sums or change subject (`renew`, `release`, a row taken by another subject). */
  #epoch = 0;
  /** Nodes of the pool no chain reaches any more (rows cleared while the table is kept: `clearRow`). */
  #orphans = 0;

  /** `ordered`: one map, least recently seen first (`seen()`), as a bucket of the memory store keeps its subjects. */
  constructor(ordered = false) {
    this.#index = ordered ? new Map<AbuseSubject, number>() : new ShardedMap<number>();
  }

  /** A table of whole tallies (a person's or a test's). */
  static of(tallies: Iterable<[AbuseSubject, AbuseTally]>): AbuseTallyTable {
    const table = new AbuseTallyTable();
    for (const [subject, tally] of tallies) table.addTally(subject, tally);
    return table;
  }

  /** Rows (`subjects`' length): in a table kept across rounds, those of earlier rounds too (`live()`). */
  get size(): number {
    return this.subjects.length;
  }

  /** Rows written in this round: `size` but in a table kept across rounds. */
  get liveSize(): number {
    return this.#live;
  }

  /** Whether a row was written in this round: one of an earlier round (`renew()`) reads as no row. */
  live(row: number): boolean {
    return this.#blocks[row >> ROW_SHIFT]!.round[row & (ROWS_PER_BLOCK - 1)] === this.#round;
  }

  has(subject: AbuseSubject): boolean {
    return this.find(subject) !== undefined;
  }

  /** A subject's row, undefined when it has none. */
  find(subject: AbuseSubject): number | undefined {
    const row = this.#index.get(subject);
    return row !== undefined && this.live(row) ? row : undefined;
  }

  /**
   * A new round of a table kept across rounds (the watch's window): every row reads as empty until written again, and
   * a subject keeps its row, so its maps and `subjects` are not built anew each round. Built anew, 100,000 subjects'
   * maps were garbage that outlived the young generation, and the full collections they brought held the loop longer
   * than a slice (bench/guard-stall.ts). When more rows are stale than live, the table starts afresh.
   */
  renew(): void {
    if (this.subjects.length - this.#live > Math.max(STALE_ROWS_KEPT, this.#live)) this.release();
    this.#round++;
    this.#epoch++;
    this.#nodeCount = 0;
    this.#orphans = 0;
    this.#overflow.clear();
    this.#live = 0;
  }

  /**
   * Changes whenever a row may have lost sums or changed subject (`renew`, `release`, a subject pushed out by `seen`):
   * a reader that saw the table at another epoch reads it whole; at the same one, only rows `writtenSince`.
   */
  get epoch(): number {
    return this.#epoch;
  }

  /** The table's count of writes: a reader notes it, and later asks `writtenSince` it. */
  get writes(): number {
    return this.#writes;
  }

  /** Whether a row was written (handed out by `rowOf` or `seen`) after the table's `writes` was `stamp`. */
  writtenSince(row: number, stamp: number): boolean {
    return this.#blocks[row >> ROW_SHIFT]!.written[row & (ROWS_PER_BLOCK - 1)]! > stamp;
  }

  /** Nodes of the pool no row reaches (rows cleared by `clearRow`): a kept table renews past as many as it uses. */
  get orphanedNodes(): number {
    return this.#orphans;
  }

  get usedNodes(): number {
    return this.#nodeCount;
  }

  #stamp(row: number): number {
    this.#blocks[row >> ROW_SHIFT]!.written[row & (ROWS_PER_BLOCK - 1)] = ++this.#writes;
    return row;
  }

  /**
   * A subject's row as one seen now, in an `ordered` table: its map keeps the subjects least recently seen first, and
   * past `max` rows a new subject takes the row of the least recently seen (its sums dropped).
   */
  seen(subject: AbuseSubject, max: number): number {
    const rows = this.#index;
    if (!(rows instanceof Map)) throw new Error('AbuseTallyTable.seen() needs an ordered table');
    const row = rows.get(subject);
    if (row !== undefined) {
      rows.delete(subject);
      rows.set(subject, row);
      return this.#stamp(row);
    }
    if (this.subjects.length < max) return this.rowOf(subject);
    const [oldest, reused] = rows.entries().next().value!;
    rows.delete(oldest);
    this.#clearRow(reused);
    this.#epoch++;
    this.subjects[reused] = subject;
    rows.set(subject, reused);
    return this.#stamp(reused);
  }

  /** Empties a subject's row, to be written again (a kept window re-summing it from its buckets). */
  clearRow(row: number): void {
    this.#clearRow(row);
    this.#stamp(row);
  }

  /** A row zeroed for another subject (its chain's nodes stay in the pool, unused, until the table is released). */
  #clearRow(row: number): void {
    const block = this.#blocks[row >> ROW_SHIFT]!;
    const at = row & (ROWS_PER_BLOCK - 1);
    if (block.round[at] === this.#round) this.#orphans += block.chained[at]!;
    block.counts.fill(0, at * TALLY_COUNTS.length, (at + 1) * TALLY_COUNTS.length);
    block.marks.fill(0, at * KIND_SLOTS, (at + 1) * KIND_SLOTS);
    block.head[at] = -1;
    block.chained[at] = 0;
    block.round[at] = this.#round;
    this.#overflow.delete(row);
  }

  /** A subject's row, added (all zero) when it has none. */
  rowOf(subject: AbuseSubject): number {
    const rows = this.#index;
    let row = rows.get(subject);
    if (row !== undefined) {
      if (this.live(row)) return this.#stamp(row);
      // A row of an earlier round, emptied for this one.
      this.#clearRow(row);
      this.#live++;
      return this.#stamp(row);
    }
    row = this.subjects.length;
    if (row >> ROW_SHIFT === this.#blocks.length) this.#blocks.push(rowBlock());
    this.#blocks[row >> ROW_SHIFT]!.round[row & (ROWS_PER_BLOCK - 1)] = this.#round;
    this.subjects.push(subject);
    rows.set(subject, row);
    this.#live++;
    return this.#stamp(row);
  }

  count(row: number, index: number): number {
    return this.#blocks[row >> ROW_SHIFT]!.counts[(row & (ROWS_PER_BLOCK - 1)) * TALLY_COUNTS.length + index]!;
  }

  /** Adds to a count (`index` in `TALLY_COUNTS`). */
  addCount(row: number, index: number, value: number): void {
    const { counts } = this.#blocks[row >> ROW_SHIFT]!;
    const at = (row & (ROWS_PER_BLOCK - 1)) * TALLY_COUNTS.length + index;
    counts[at] = counts[at]! + value;
  }

  setCount(row: number, index: number, value: number): void {
    this.#blocks[row >> ROW_SHIFT]!.counts[(row & (ROWS_PER_BLOCK - 1)) * TALLY_COUNTS.length + index] = value;
  }

  /** Distinct marks of a kind (slot: peer, agent, model, route) on a row. */
  marks(row: number, slot: number): number {
    return this.#blocks[row >> ROW_SHIFT]!.marks[(row & (ROWS_PER_BLOCK - 1)) * KIND_SLOTS + slot]!;
  }

  /** A mark (`<kind>\u001f<value>`) on a row, counted once however often it comes. */
  addMark(row: number, mark: string): void {
    const slot = markSlot(mark);
    if (slot >= 0) this.#addHash(row, markHash(mark, slot));
  }

  #addHash(row: number, hash: number): void {
    if (this.#holds(row, hash)) return;
    const { marks } = this.#blocks[row >> ROW_SHIFT]!;
    const at = (row & (ROWS_PER_BLOCK - 1)) * KIND_SLOTS + (hash % 4);
    marks[at] = marks[at]! + 1;
  }

  /** Whether `hash` was on the row already; puts it there if not. */
  #holds(row: number, hash: number): boolean {
    const overflow = this.#overflow.get(row);
    if (overflow) {
      if (overflow.has(hash)) return true;
      overflow.add(hash);
      return false;
    }
    const block = this.#blocks[row >> ROW_SHIFT]!;
    const at = row & (ROWS_PER_BLOCK - 1);
    for (let node = block.head[at]!; node >= 0; node = this.#next(node)) if (this.#hash(node) === hash) return true;
    if (block.chained[at]! >= CHAIN_LIMIT) {
      const all = new Set<number>([hash]);
      for (let node = block.head[at]!; node >= 0; node = this.#next(node)) all.add(this.#hash(node));
      this.#overflow.set(row, all);
      return false;
    }
    const node = this.#nodeCount++;
    if (node >> NODE_SHIFT === this.#nodes.length) this.#nodes.push(nodeBlock());
    const nodes = this.#nodes[node >> NODE_SHIFT]!;
    nodes.hash[node & (NODES_PER_BLOCK - 1)] = hash;
    nodes.next[node & (NODES_PER_BLOCK - 1)] = block.head[at]!;
    block.head[at] = node;
    block.chained[at] = block.chained[at]! + 1;
    return false;
  }

  #hash(node: number): number {
    return this.#nodes[node >> NODE_SHIFT]!.hash[node & (NODES_PER_BLOCK - 1)]!;
  }

  #next(node: number): number {
    return this.#nodes[node >> NODE_SHIFT]!.next[node & (NODES_PER_BLOCK - 1)]!;
  }

  /** Adds a delta's counts and marks to a row. */
  addDelta(row: number, delta: AbuseTallyDelta): void {
    for (const name in delta.counts) {
      const index = COUNT_INDEX[name as TallyCount];
      if (index !== undefined) this.addCount(row, index, delta.counts[name as TallyCount]!);
    }
    for (const mark of delta.marks) this.addMark(row, mark);
  }

  /** Adds a whole tally (counts and marks) to a subject's row. */
  addTally(subject: AbuseSubject, tally: AbuseTally): void {
    const row = this.rowOf(subject);
    const { counts } = this.#blocks[row >> ROW_SHIFT]!;
    const at = (row & (ROWS_PER_BLOCK - 1)) * TALLY_COUNTS.length;
    for (let i = 0; i < TALLY_COUNTS.length; i++) counts[at + i] = counts[at + i]! + tally.counts[TALLY_COUNTS[i]!];
    for (const mark of tally.marks) this.addMark(row, mark);
  }

  /** Adds row `from` of `other` (a bucket's table) to the same subject's row here. */
  addRow(other: AbuseTallyTable, from: number): void {
    const row = this.rowOf(other.subjects[from]!);
    for (let i = 0; i < TALLY_COUNTS.length; i++) this.addCount(row, i, other.count(from, i));
    const overflow = other.#overflow.get(from);
    if (overflow) for (const hash of overflow) this.#addHash(row, hash);
    else {
      const first = other.#blocks[from >> ROW_SHIFT]!.head[from & (ROWS_PER_BLOCK - 1)]!;
      for (let node = first; node >= 0; node = other.#next(node)) this.#addHash(row, other.#hash(node));
    }
  }

  /** Hands the table's blocks to the tables made after it: this one is empty after. */
  release(): void {
    for (const block of this.#blocks.splice(0)) if (spareRows.length < MAX_SPARE_ROW_BLOCKS) spareRows.push(block);
    for (const block of this.#nodes.splice(0)) if (spareNodes.length < MAX_SPARE_NODE_BLOCKS) spareNodes.push(block);
    this.subjects.length = 0;
    this.#index.clear();
    this.#overflow.clear();
    this.#nodeCount = 0;
    this.#orphans = 0;
    this.#live = 0;
    this.#epoch++;
  }

  /** A subject's features as a person reads them (`featuresOf`), undefined when it has no row. */
  features(subject: AbuseSubject, windowMs: number): number[] | undefined {
    const row = this.find(subject);
    if (row === undefined) return undefined;
    return Array.from(writeFeatures(new Float64Array(FEATURE_NAMES.length), 0, this, row, windowMs));
  }

  /** A subject's sums as a person reads them: each count by name, and distinct marks per kind. */
  get(subject: AbuseSubject): AbuseTallyView | undefined {
    const row = this.find(subject);
    if (row === undefined) return undefined;
    const counts = Object.fromEntries(TALLY_COUNTS.map((name, i) => [name, this.count(row, i)])) as Record<
      TallyCount,
      number
    >;
    const marks = Object.fromEntries(MARK_KINDS.map((kind, slot) => [kind, this.marks(row, slot)])) as Record<
      MarkKind,
      number
    >;
    return { counts, marks };
  }
}
