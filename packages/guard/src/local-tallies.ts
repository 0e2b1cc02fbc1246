// What one process adds to each subject between flushes, and what repeats, gaps and new values need across flushes.
import { LRUCache } from 'lru-cache';
import {
  COUNT_INDEX,
  KIND_SLOT,
  KIND_SLOTS,
  MARK_SEPARATOR,
  MARKS_PER_KIND,
  TALLY_COUNTS,
  valueHash,
  type AbuseSubject,
  type AbuseTallyDelta,
  type MarkKind,
  type RequestTraits,
  type TallyCount,
} from './abuse-features.js';

/** Subjects a process keeps (least recently seen dropped first, its sums sent with the next flush). */
const MAX_LOCAL_SUBJECTS = 10_000;
/** Recent prompts remembered per subject for repeats (a ring). */
const RECENT_PROMPTS = 32;
/**
 * Values of each mark kind a subject's own history remembers, with when each was first and last seen: the least
 * recently seen leaves first. A subject that turns through more than this many (an address many keys share) sees
 * each as new again, which it then is to the extent that matters here: it was not among its recent ones.
 */
const REMEMBERED_PER_KIND = 8;
/**
 * Requests a subject must have made (besides a window's time) before a value is new to it: a key seen a handful of
 * times has not yet shown all its addresses, clients and models.
 */
export const HISTORY_REQUESTS = 10;
const COUNTS = TALLY_COUNTS.length;
const KNOWN = KIND_SLOTS * REMEMBERED_PER_KIND;

/**
 * The subjects this process adds to, one row each in typed arrays shared by all rows (`MAX_LOCAL_SUBJECTS` of them):
 * an object, a buffer and a Set or two per subject made 20 heap objects each, 200,000 for a full table, and the full
 * collections that walked and moved them held the event loop past the stall target (bench/guard-stall.ts). Known
 * values are kept as hashes (`valueHash`), not the strings: a row tells whether it saw a value, not which.
 */
export class LocalTallies {
  readonly #capacity: number;
  /** Each subject's row, least recently seen first out. */
  readonly #rows: LRUCache<AbuseSubject, number>;
  readonly #subjectOf: AbuseSubject[] = [];
  /** Rows handed out so far (a row of a subject pushed out is reused at once). */
  #used = 0;
  readonly #counts: Float64Array;
  readonly #dirty: Uint8Array;
  /** Per kind, `REMEMBERED_PER_KIND` slots: a value's hash, and when it was first and last seen (0: empty). */
  readonly #known: Float64Array;
  readonly #knownFirst: Float64Array;
  readonly #knownLast: Float64Array;
  readonly #recent: Uint32Array;
  readonly #recentNear: Uint32Array;
  readonly #recentNext: Uint8Array;
  /** When this process first saw the subject (-1: not yet): only one with a window of history has values new to it. */
  readonly #firstAt: Float64Array;
  readonly #lastAt: Float64Array;
  /** Requests this process has seen of the subject (its history's depth). */
  readonly #seen: Float64Array;
  /**
   * The bucket the sent values belong to, and those values' hashes by row and kind (`row * KIND_SLOTS + slot`): the first
   * in an array (NaN: none), any more in a Set (a subject with one address, agent, model and route a bucket has none).
   */
  #sentBucket = -1;
  readonly #sentFirst: Float64Array;
  readonly #sentMore = new Map<number, Set<number>>();
  /** Marks of a row to send with its next flush, `<kind>\u001f<value>`. */
  readonly #marks = new Map<number, string[]>();
  /** Subjects added to since the last `takeTouched()`, and the sums of those pushed out before it. */
  #touched = new Set<AbuseSubject>();
  #evicted: AbuseTallyDelta[] = [];

  constructor(capacity = MAX_LOCAL_SUBJECTS) {
    this.#capacity = capacity;
    this.#rows = new LRUCache({ max: capacity });
    this.#counts = new Float64Array(capacity * COUNTS);
    this.#dirty = new Uint8Array(capacity);
    this.#known = new Float64Array(capacity * KNOWN);
    this.#knownFirst = new Float64Array(capacity * KNOWN);
    this.#knownLast = new Float64Array(capacity * KNOWN);
    this.#recent = new Uint32Array(capacity * RECENT_PROMPTS);
    this.#recentNear = new Uint32Array(capacity * RECENT_PROMPTS);
    this.#recentNext = new Uint8Array(capacity);
    this.#firstAt = new Float64Array(capacity).fill(-1);
    this.#lastAt = new Float64Array(capacity);
    this.#seen = new Float64Array(capacity);
    this.#sentFirst = new Float64Array(capacity * KIND_SLOTS).fill(NaN);
  }

  get size(): number {
    return this.#rows.size;
  }

  /** A subject's row, to be added to (it is flushed with the next `takeTouched()`); a full table drops its oldest. */
  rowOf(subject: AbuseSubject): number {
    this.#touched.add(subject);
    let row = this.#rows.get(subject);
    if (row !== undefined) return row;
    if (this.#used < this.#capacity) row = this.#used++;
    else {
      row = this.#rows.pop()!;
      const old = this.#subjectOf[row]!;
      if (this.#dirty[row]) this.#evicted.push(this.#take(row, old));
      this.#clear(row);
    }
    this.#subjectOf[row] = subject;
    this.#rows.set(subject, row);
    return row;
  }

  /** The subjects added to since the last call, and the sums of those pushed out meanwhile (taken already). */
  takeTouched(): { touched: Set<AbuseSubject>; evicted: AbuseTallyDelta[] } {
    const taken = { touched: this.#touched, evicted: this.#evicted };
    this.#touched = new Set();
    this.#evicted = [];
    return taken;
  }

  /** What was added to a subject since its last flush, and forgets it (gaps and recent prompts stay); undefined: nothing. */
  take(subject: AbuseSubject): AbuseTallyDelta | undefined {
    const row = this.#rows.peek(subject);
    return row !== undefined && this.#dirty[row] ? this.#take(row, subject) : undefined;
  }

  #take(row: number, subject: AbuseSubject): AbuseTallyDelta {
    const counts: AbuseTallyDelta['counts'] = {};
    const at = row * COUNTS;
    for (let i = 0; i < COUNTS; i++) if (this.#counts[at + i] !== 0) counts[TALLY_COUNTS[i]!] = this.#counts[at + i];
    this.#counts.fill(0, at, at + COUNTS);
    const marks = this.#marks.get(row) ?? [];
    this.#marks.delete(row);
    this.#dirty[row] = 0;
    return { subject, counts, marks };
  }

  /** A row handed to another subject: as a new one (its sums and marks were taken first, or it had none). */
  #clear(row: number): void {
    this.#known.fill(0, row * KNOWN, (row + 1) * KNOWN);
    this.#knownFirst.fill(0, row * KNOWN, (row + 1) * KNOWN);
    this.#knownLast.fill(0, row * KNOWN, (row + 1) * KNOWN);
    this.#recent.fill(0, row * RECENT_PROMPTS, (row + 1) * RECENT_PROMPTS);
    this.#recentNear.fill(0, row * RECENT_PROMPTS, (row + 1) * RECENT_PROMPTS);
    this.#recentNext[row] = 0;
    this.#firstAt[row] = -1;
    this.#lastAt[row] = 0;
    this.#seen[row] = 0;
    this.#sentFirst.fill(NaN, row * KIND_SLOTS, (row + 1) * KIND_SLOTS);
    for (let slot = 0; slot < KIND_SLOTS; slot++) this.#sentMore.delete(row * KIND_SLOTS + slot);
  }

  add(row: number, name: TallyCount, value: number): void {
    this.#bump(row, COUNT_INDEX[name], value);
    this.#dirty[row] = 1;
  }

  #bump(row: number, index: number, value = 1): void {
    const at = row * COUNTS + index;
    this.#counts[at] = this.#counts[at]! + value;
  }

  /** Forgets the values sent in an earlier bucket: they are sent again in this one. */
  #sendingIn(bucket: number): void {
    if (bucket === this.#sentBucket) return;
    this.#sentBucket = bucket;
    this.#sentFirst.fill(NaN);
    this.#sentMore.clear();
  }

  /** A distinct value (`hash`: its `valueHash`), once per bucket, at most `MARKS_PER_KIND` per kind and bucket. */
  #mark(row: number, kind: MarkKind, value: string, hash: number): void {
    const key = row * KIND_SLOTS + KIND_SLOT[kind];
    const first = this.#sentFirst[key]!;
    if (first === hash) return;
    if (Number.isNaN(first)) this.#sentFirst[key] = hash;
    else {
      let more = this.#sentMore.get(key);
      if (!more) this.#sentMore.set(key, (more = new Set()));
      if (more.size + 1 >= MARKS_PER_KIND || more.has(hash)) return;
      more.add(hash);
    }
    let marks = this.#marks.get(row);
    if (!marks) this.#marks.set(row, (marks = []));
    marks.push(`${kind}${MARK_SEPARATOR}${value.replaceAll(MARK_SEPARATOR, '').slice(0, 120)}`);
  }

  /** Whether the subject has a history to be new to: a window long, and `HISTORY_REQUESTS` requests. */
  #established(row: number, at: number, windowMs: number): boolean {
    return this.#seen[row]! >= HISTORY_REQUESTS && at - this.#firstAt[row]! >= windowMs;
  }

  /**
   * Whether a value (`hash`) is new to the subject at `at`: first seen within the last `windowMs`, once the subject had a
   * history (so a key's first requests are not all new). Remembers it either way; a value of its early history
   * never counts as new.
   */
  #isNew(row: number, kind: MarkKind, hash: number, at: number, windowMs: number): boolean {
    const from = row * KNOWN + KIND_SLOT[kind] * REMEMBERED_PER_KIND;
    const last = this.#knownLast;
    let oldest = from;
    for (let slot = from; slot < from + REMEMBERED_PER_KIND; slot++) {
      if (last[slot] === 0) {
        oldest = slot;
        break;
      }
      if (this.#known[slot] === hash) {
        last[slot] = at;
        return at - this.#knownFirst[slot]! < windowMs;
      }
      if (last[slot]! < last[oldest]!) oldest = slot;
    }
    const fresh = this.#established(row, at, windowMs);
    this.#known[oldest] = hash;
    this.#knownFirst[oldest] = fresh ? at : -Infinity;
    last[oldest] = Math.max(at, 1);
    return fresh;
  }

  /**
   * Adds one request: its gap since this subject's last, its answer, its prompt against the recent ones, whether its
   * `peer` (the address of a key, the key an address tried), user agent, model or route is new to the subject, and
   * those four values as marks of `bucket` (each hashed once for both).
   */
  observe(row: number, request: RequestTraits, windowMs: number, peer: string, bucket: number): void {
    const { at, agent, route, model } = request;
    const peerHash = valueHash(peer);
    const agentHash = valueHash(agent);
    const routeHash = valueHash(route);
    const modelHash = model === undefined ? NaN : valueHash(model);
    this.#bump(row, COUNT_INDEX.requests);
    if (this.#firstAt[row]! < 0) this.#firstAt[row] = at;
    if (this.#isNew(row, 'peer', peerHash, at, windowMs)) this.#bump(row, COUNT_INDEX.newPeers);
    if (this.#isNew(row, 'agent', agentHash, at, windowMs)) this.#bump(row, COUNT_INDEX.newAgents);
    const newRoute = this.#isNew(row, 'route', routeHash, at, windowMs);
    const newModel = model !== undefined && this.#isNew(row, 'model', modelHash, at, windowMs);
    if (newRoute || newModel) this.#bump(row, COUNT_INDEX.newUses);
    this.#sendingIn(bucket);
    this.#mark(row, 'peer', peer, peerHash);
    this.#mark(row, 'agent', agent, agentHash);
    this.#mark(row, 'route', route, routeHash);
    if (model !== undefined) this.#mark(row, 'model', model, modelHash);
    this.#seen[row] = this.#seen[row]! + 1;
    const lastAt = this.#lastAt[row]!;
    if (lastAt > 0) {
      const gap = (at - lastAt) / 1000;
      if (gap >= 0 && gap * 1000 <= windowMs) {
        this.#bump(row, COUNT_INDEX.gaps);
        this.#bump(row, COUNT_INDEX.gapSum, gap);
        this.#bump(row, COUNT_INDEX.gapSquares, gap * gap);
      }
    }
    this.#lastAt[row] = at;
    const { status } = request;
    if (status === 401) this.#bump(row, COUNT_INDEX.status401);
    else if (status === 403) this.#bump(row, COUNT_INDEX.status403);
    else if (status >= 400 && status < 500) this.#bump(row, COUNT_INDEX.status4xx);
    if (request.refusedBy !== undefined && request.refusedBy !== 'auth') this.#bump(row, COUNT_INDEX.refused);
    if (request.refusedBy === 'guardrails') this.#bump(row, COUNT_INDEX.flagged);
    const prompt = request.prompt;
    if (prompt) this.#prompt(row, prompt);
    this.#dirty[row] = 1;
  }

  #prompt(row: number, prompt: NonNullable<RequestTraits['prompt']>): void {
    this.#bump(row, COUNT_INDEX.prompts);
    this.#bump(row, COUNT_INDEX.chars, prompt.chars);
    this.#bump(row, COUNT_INDEX.charSquares, prompt.chars * prompt.chars);
    this.#bump(row, COUNT_INDEX.entropy, prompt.entropy);
    this.#bump(row, COUNT_INDEX.entropySquares, prompt.entropy * prompt.entropy);
    const from = row * RECENT_PROMPTS;
    let repeat = false;
    let nearRepeat = false;
    for (let i = from; i < from + RECENT_PROMPTS; i++) {
      if (this.#recent[i] === prompt.fingerprint) repeat = true;
      if (this.#recentNear[i] === prompt.nearFingerprint) nearRepeat = true;
    }
    if (repeat) this.#bump(row, COUNT_INDEX.repeats);
    if (nearRepeat) this.#bump(row, COUNT_INDEX.nearRepeats);
    const next = this.#recentNext[row]!;
    this.#recent[from + next] = prompt.fingerprint;
    this.#recentNear[from + next] = prompt.nearFingerprint;
    this.#recentNext[row] = (next + 1) % RECENT_PROMPTS;
  }
}
