// What the abuse model sees: each request's traits summed per subject and bucket, and a window's sums as features.
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
const COUNT_INDEX = Object.fromEntries(TALLY_COUNTS.map((name, i) => [name, i])) as Record<TallyCount, number>;

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
export interface AbuseTally {
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
export const PROMPT_SAMPLE_CHARS = 1024;

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

/** Recent prompts remembered per subject for repeats (a ring). */
const RECENT_PROMPTS = 32;

/**
 * Values of each mark kind a subject's own history remembers, with when each was first and last seen: the least
 * recently seen leaves first. A subject that turns through more than this many (an address many keys share) sees
 * each as new again, which it then is to the extent that matters here: it was not among its recent ones.
 */
export const REMEMBERED_PER_KIND = 8;
/**
 * Requests a subject must have made (besides a window's time) before a value is new to it: a key seen a handful of
 * times has not yet shown all its addresses, clients and models.
 */
export const HISTORY_REQUESTS = 10;
const KIND_SLOT: Record<MarkKind, number> = { peer: 0, agent: 1, model: 2, route: 3 };

/** One subject as this process saw it since its last flush, plus what repeats and gaps need across flushes. */
export class SubjectTally {
  readonly counts = new Float64Array(TALLY_COUNTS.length);
  #marks = new Set<string>();
  /** The bucket `#sentMarks` belongs to. */
  #markBucket = -1;
  #sentMarks = new Map<MarkKind, Set<string>>();
  #lastAt = 0;
  readonly #recent = new Uint32Array(RECENT_PROMPTS);
  readonly #recentNear = new Uint32Array(RECENT_PROMPTS);
  #recentNext = 0;
  /** When this process first saw the subject: only a subject with a window of history has values new to it. */
  #firstAt = -1;
  /** Requests this process has seen of the subject (its history's depth). */
  #seen = 0;
  /** Per kind, `REMEMBERED_PER_KIND` slots: a value, and when it was first and last seen (0: empty). */
  readonly #known: string[] = [];
  readonly #knownFirst = new Float64Array(4 * REMEMBERED_PER_KIND);
  readonly #knownLast = new Float64Array(4 * REMEMBERED_PER_KIND);
  dirty = false;

  add(name: TallyCount, value: number): void {
    this.#bump(COUNT_INDEX[name], value);
    this.dirty = true;
  }

  #bump(index: number, value = 1): void {
    this.counts[index] = this.counts[index]! + value;
  }

  /** A distinct value, once per bucket, at most `MARKS_PER_KIND` per kind and bucket. */
  mark(kind: MarkKind, value: string, bucket: number): void {
    if (bucket !== this.#markBucket) {
      this.#markBucket = bucket;
      this.#sentMarks.clear();
    }
    let sent = this.#sentMarks.get(kind);
    if (!sent) this.#sentMarks.set(kind, (sent = new Set()));
    if (sent.size >= MARKS_PER_KIND || sent.has(value)) return;
    sent.add(value);
    this.#marks.add(`${kind}${MARK_SEPARATOR}${value.replaceAll(MARK_SEPARATOR, '').slice(0, 120)}`);
    this.dirty = true;
  }

  /** Whether the subject has a history to be new to: a window long, and `HISTORY_REQUESTS` requests. */
  #established(at: number, windowMs: number): boolean {
    return this.#seen >= HISTORY_REQUESTS && at - this.#firstAt >= windowMs;
  }

  /**
   * Whether `value` is new to the subject at `at`: first seen within the last `windowMs`, once the subject had a
   * history (so a key's first requests are not all new). Remembers it either way; a value of its early history
   * never counts as new.
   */
  #isNew(kind: MarkKind, value: string, at: number, windowMs: number): boolean {
    const from = KIND_SLOT[kind] * REMEMBERED_PER_KIND;
    let oldest = from;
    for (let slot = from; slot < from + REMEMBERED_PER_KIND; slot++) {
      if (this.#knownLast[slot] === 0) {
        oldest = slot;
        break;
      }
      if (this.#known[slot] === value) {
        this.#knownLast[slot] = at;
        return at - this.#knownFirst[slot]! < windowMs;
      }
      if (this.#knownLast[slot]! < this.#knownLast[oldest]!) oldest = slot;
    }
    const fresh = this.#established(at, windowMs);
    this.#known[oldest] = value;
    this.#knownFirst[oldest] = fresh ? at : -Infinity;
    this.#knownLast[oldest] = Math.max(at, 1);
    return fresh;
  }

  /**
   * Adds one request: its gap since this subject's last, its answer, its prompt against the recent ones, and whether
   * its `peer` (the address of a key, the key an address tried), user agent, model or route is new to the subject.
   */
  observe(request: RequestTraits, windowMs: number, peer: string): void {
    this.#bump(COUNT_INDEX.requests);
    if (this.#firstAt < 0) this.#firstAt = request.at;
    if (this.#isNew('peer', peer, request.at, windowMs)) this.#bump(COUNT_INDEX.newPeers);
    if (this.#isNew('agent', request.agent, request.at, windowMs)) this.#bump(COUNT_INDEX.newAgents);
    const newRoute = this.#isNew('route', request.route, request.at, windowMs);
    const newModel = request.model !== undefined && this.#isNew('model', request.model, request.at, windowMs);
    if (newRoute || newModel) this.#bump(COUNT_INDEX.newUses);
    this.#seen++;
    if (this.#lastAt > 0) {
      const gap = (request.at - this.#lastAt) / 1000;
      if (gap >= 0 && gap * 1000 <= windowMs) {
        this.#bump(COUNT_INDEX.gaps);
        this.#bump(COUNT_INDEX.gapSum, gap);
        this.#bump(COUNT_INDEX.gapSquares, gap * gap);
      }
    }
    this.#lastAt = request.at;
    const { status } = request;
    if (status === 401) this.#bump(COUNT_INDEX.status401);
    else if (status === 403) this.#bump(COUNT_INDEX.status403);
    else if (status >= 400 && status < 500) this.#bump(COUNT_INDEX.status4xx);
    if (request.refusedBy !== undefined && request.refusedBy !== 'auth') this.#bump(COUNT_INDEX.refused);
    if (request.refusedBy === 'guardrails') this.#bump(COUNT_INDEX.flagged);
    const prompt = request.prompt;
    if (prompt) {
      this.#bump(COUNT_INDEX.prompts);
      this.#bump(COUNT_INDEX.chars, prompt.chars);
      this.#bump(COUNT_INDEX.charSquares, prompt.chars * prompt.chars);
      this.#bump(COUNT_INDEX.entropy, prompt.entropy);
      this.#bump(COUNT_INDEX.entropySquares, prompt.entropy * prompt.entropy);
      if (this.#recent.includes(prompt.fingerprint)) this.#bump(COUNT_INDEX.repeats);
      if (this.#recentNear.includes(prompt.nearFingerprint)) this.#bump(COUNT_INDEX.nearRepeats);
      this.#recent[this.#recentNext] = prompt.fingerprint;
      this.#recentNear[this.#recentNext] = prompt.nearFingerprint;
      this.#recentNext = (this.#recentNext + 1) % RECENT_PROMPTS;
    }
    this.dirty = true;
  }

  /** What was added since the last flush, and forgets it (gaps and recent prompts stay). */
  take(subject: AbuseSubject): AbuseTallyDelta {
    const counts: AbuseTallyDelta['counts'] = {};
    TALLY_COUNTS.forEach((name, i) => {
      if (this.counts[i] !== 0) counts[name] = this.counts[i];
    });
    this.counts.fill(0);
    const marks = [...this.#marks];
    this.#marks.clear();
    this.dirty = false;
    return { subject, counts, marks };
  }
}

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

export function subjectKind(subject: AbuseSubject): AbuseSubjectKind {
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
  return Array.from(writeFeatures(new Float64Array(FEATURE_NAMES.length), 0, subject, tally, windowMs));
}

/**
 * `featuresOf` written into `rows` from `offset`: a window of 100,000 subjects is read into one buffer without an array
 * per subject (bench/guard-stall.ts).
 */
export function writeFeatures(
  rows: Float64Array,
  offset: number,
  subject: AbuseSubject,
  tally: AbuseTally,
  windowMs: number,
): Float64Array {
  const c = tally.counts;
  const minutes = windowMs / 60_000;
  const marks = { peer: 0, agent: 0, model: 0, route: 0 };
  for (const mark of tally.marks) marks[mark.slice(0, mark.indexOf(MARK_SEPARATOR)) as MarkKind]++;
  const entropyMean = ratio(c.entropy, c.prompts);
  // Few gaps say little of a rhythm: their variation is drawn towards that of random arrivals (1), as if
  // GAP_PRIOR gaps of it had been seen too.
  const gaps = c.gaps;
  const gapVariation = (gaps * variation(gaps, c.gapSum, c.gapSquares, 1) + GAP_PRIOR) / (gaps + GAP_PRIOR);
  let at = offset;
  rows[at++] = c.requests / minutes;
  rows[at++] = gapVariation;
  rows[at++] = ratio(c.status401, c.requests);
  rows[at++] = ratio(c.status403, c.requests);
  rows[at++] = ratio(c.status4xx, c.requests);
  rows[at++] = ratio(c.refused, c.requests);
  rows[at++] = ratio(c.flagged, c.requests);
  rows[at++] = marks.peer;
  rows[at++] = marks.agent;
  rows[at++] = marks.model;
  rows[at++] = marks.route;
  rows[at++] = ratio(c.chars, c.prompts);
  rows[at++] = variation(c.prompts, c.chars, c.charSquares, 0);
  rows[at++] = entropyMean;
  rows[at++] = c.prompts >= 2 ? Math.sqrt(Math.max(0, c.entropySquares / c.prompts - entropyMean * entropyMean)) : 0;
  rows[at++] = ratio(c.repeats, c.prompts);
  rows[at++] = ratio(c.nearRepeats, c.prompts);
  rows[at++] = ratio(c.newPeers, c.requests);
  rows[at++] = ratio(c.newAgents, c.requests);
  rows[at++] = ratio(c.newUses, c.requests);
  rows[at++] = c.tokens / minutes;
  rows[at++] = c.spendNanoUsd / 1e9 / minutes;
  rows[at++] = KIND_CODE[subjectKind(subject)];
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
  return features.map((value, i) => {
    if (i === VARIATION_AT) return Math.log(Math.max(value, LEAST_VARIATION));
    return LOGGED_AT[i] ? Math.log1p(FEATURE_NAMES[i] === 'usdPerMinute' ? value * 1e6 : value) : value;
  });
}

/** A delta as a store's hash fields: `<subject>\x1f<count>` with its increment, and `<subject>\x1f<mark>` fields. */
export function tallyFields(delta: AbuseTallyDelta): { sums: [string, number][]; marks: string[] } {
  const prefix = `${delta.subject}${MARK_SEPARATOR}`;
  const sums = Object.entries(delta.counts).map(([name, value]): [string, number] => [`${prefix}${name}`, value]);
  return { sums, marks: delta.marks.map((mark) => `${prefix}${mark}`) };
}

/**
 * Sets one field of a bucket's hash (a sum, or a mark when it holds a second separator) on its subject's tally in
 * `into`, the bucket's own: a field a scan returns twice (HSCAN may) counts once.
 */
export function setTallyField(into: Map<AbuseSubject, AbuseTally>, field: string, value: number): void {
  const cut = field.indexOf(MARK_SEPARATOR);
  if (cut < 0) return;
  const subject = field.slice(0, cut) as AbuseSubject;
  let tally = into.get(subject);
  if (!tally) into.set(subject, (tally = emptyTally()));
  const rest = field.slice(cut + 1);
  if (rest.includes(MARK_SEPARATOR)) tally.marks.add(rest);
  else if (rest in tally.counts) tally.counts[rest as TallyCount] = value;
}

/** Adds a subject's tally of one bucket to its tally across buckets in `into`. */
export function addTally(into: Map<AbuseSubject, AbuseTally>, subject: AbuseSubject, tally: AbuseTally): void {
  const sum = into.get(subject);
  // A subject's first tally is copied whole (a copy of a shape V8 knows, not a sum field by field): a window of
  // 100,000 subjects is merged with a fraction of the work and garbage (bench/guard-stall.ts).
  if (!sum) return void into.set(subject, { counts: { ...tally.counts }, marks: new Set(tally.marks) });
  for (const name of TALLY_COUNTS) sum.counts[name] += tally.counts[name];
  for (const mark of tally.marks) sum.marks.add(mark);
}
