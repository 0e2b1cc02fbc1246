// Exact byte-pair encoding counts over compact tables: an encoding's tokens in one byte array, found by a byte-keyed hash.
import { readFile } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';

/*
 * The tables are data/<encoding>.bpe, written by scripts/build-token-tables.mjs from the published rank files (see the
 * README, "The tokenizer"): the length of every rank's token, then the tokens' bytes rank by rank. Loaded, an
 * encoding is those bytes, their offsets and an open-addressing hash of rank + 1 keyed by the bytes: about 4 MiB for
 * o200k_base, where a table of strings and a Map of them take tens of MiB.
 */

/** The longest token of either encoding, in UTF-8 bytes (a run of 128 spaces in both; a test reads every token). */
export const MAX_TOKEN_BYTES = 128;

const MAGIC = 'TGBP';
const FORMAT_VERSION = 1;
const HEADER_BYTES = 12;
const NO_RANK = 0x7fffffff;

// The published pre-tokenizer patterns of OpenAI's tiktoken. JavaScript has no inline (?i:...) group: the contractions'
// case-insensitivity is written out.
const CONTRACTION = String.raw`'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])`;
const PATTERNS = {
  cl100k_base: [
    CONTRACTION,
    String.raw`[^\r\n\p{L}\p{N}]?\p{L}+`,
    String.raw`\p{N}{1,3}`,
    String.raw` ?[^\s\p{L}\p{N}]+[\r\n]*`,
    String.raw`\s*[\r\n]+`,
    String.raw`\s+(?!\S)`,
    String.raw`\s+`,
  ],
  o200k_base: [
    String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:${CONTRACTION})?`,
    String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:${CONTRACTION})?`,
    String.raw`\p{N}{1,3}`,
    String.raw` ?[^\s\p{L}\p{N}]+[\r\n/]*`,
    String.raw`\s*[\r\n]+`,
    String.raw`\s+(?!\S)`,
    String.raw`\s+`,
  ],
} as const;

export type BpeEncodingName = keyof typeof PATTERNS;

/**
 * Every pattern matches at least one character and together they match any character, so chunks follow one another
 * with no gap: a sticky regex finds each where the last ended, and `test` finds it without allocating a match.
 */
function chunkPattern(encoding: BpeEncodingName): RegExp {
  return new RegExp(PATTERNS[encoding].join('|'), 'uy');
}

function fnv1a(hash: number, byte: number): number {
  return Math.imul(hash ^ byte, 0x01000193);
}
const FNV_OFFSET = 0x811c9dc5 | 0;

/** Final mix of a hash: FNV's low bits alone cluster for short keys. */
function slotOf(hash: number, mask: number): number {
  return (hash ^ (hash >>> 15)) & mask;
}

// Work space shared by every count (counting is synchronous): a chunk's bytes, and the merge's list over them.
let chunkBytes = new Uint8Array(1024);
let nextPart = new Int32Array(1024);
let previousPart = new Int32Array(1024);
let pairRanks = new Int32Array(1024);
/** A binary min-heap of pairs, each rank * 2^32 + position: the lowest rank first, the leftmost of equal ranks. */
let pairHeap = new Float64Array(3 * 1024);

function reserve(bytes: number): void {
  if (bytes + 1 <= nextPart.length) return;
  const size = 2 ** Math.ceil(Math.log2(bytes + 1));
  chunkBytes = new Uint8Array(size);
  nextPart = new Int32Array(size);
  previousPart = new Int32Array(size);
  pairRanks = new Int32Array(size);
  pairHeap = new Float64Array(3 * size);
}

const POSITIONS = 2 ** 32;

function heapPush(heap: Float64Array, size: number, key: number): void {
  let at = size;
  while (at > 0) {
    const parent = (at - 1) >> 1;
    if (heap[parent]! <= key) break;
    heap[at] = heap[parent]!;
    at = parent;
  }
  heap[at] = key;
}

/** Removes the heap's lowest key (the heap held `size`). */
function heapPop(heap: Float64Array, size: number): void {
  const last = heap[size - 1]!;
  const end = size - 1;
  let at = 0;
  for (;;) {
    let child = 2 * at + 1;
    if (child >= end) break;
    if (child + 1 < end && heap[child + 1]! < heap[child]!) child++;
    if (heap[child]! >= last) break;
    heap[at] = heap[child]!;
    at = child;
  }
  heap[at] = last;
}

/** Writes text[start, end) as UTF-8 to chunkBytes (a lone surrogate as U+FFFD, as TextEncoder does); its length. */
function encodeUtf8(text: string, start: number, end: number): number {
  reserve(3 * (end - start));
  const out = chunkBytes;
  let n = 0;
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) {
      out[n++] = code;
    } else if (code < 0x800) {
      out[n++] = 0xc0 | (code >> 6);
      out[n++] = 0x80 | (code & 0x3f);
    } else if (code < 0xd800 || code > 0xdfff) {
      out[n++] = 0xe0 | (code >> 12);
      out[n++] = 0x80 | ((code >> 6) & 0x3f);
      out[n++] = 0x80 | (code & 0x3f);
    } else {
      const low = code <= 0xdbff && i + 1 < end ? text.charCodeAt(i + 1) : 0;
      if (low >= 0xdc00 && low <= 0xdfff) {
        const point = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        out[n++] = 0xf0 | (point >> 18);
        out[n++] = 0x80 | ((point >> 12) & 0x3f);
        out[n++] = 0x80 | ((point >> 6) & 0x3f);
        out[n++] = 0x80 | (point & 0x3f);
        i++;
      } else {
        out[n++] = 0xef;
        out[n++] = 0xbf;
        out[n++] = 0xbd;
      }
    }
  }
  return n;
}

/**
 * Chunks this long or longer that are not whole tokens keep their count in the cache: below, merging is about as
 * cheap as a cache lookup.
 */
const CACHED_CHUNK_BYTES = 8;

/** One encoding: its tokens, their ranks, and exact counts of text in it. */
export class BytePairEncoding {
  private readonly lengths: Uint8Array;
  private readonly offsets: Uint32Array;
  private readonly tokens: Uint8Array;
  /** rank + 1 at the slot of its bytes' hash (linear probing), 0 where empty. */
  private readonly slots: Int32Array;
  private readonly mask: number;
  private readonly pattern: RegExp;
  private readonly chunkCounts: LRUCache<string, number>;

  /** `table`: the contents of a data/<encoding>.bpe file. */
  constructor(
    readonly name: BpeEncodingName,
    table: Uint8Array,
    chunkCacheSize: number,
  ) {
    const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
    const magic = String.fromCharCode(table[0]!, table[1]!, table[2]!, table[3]!);
    if (magic !== MAGIC || view.getUint32(4, true) !== FORMAT_VERSION) throw new Error(`${name}: not a token table`);
    const ranks = view.getUint32(8, true);
    this.lengths = table.subarray(HEADER_BYTES, HEADER_BYTES + ranks);
    this.tokens = table.subarray(HEADER_BYTES + ranks);
    this.offsets = new Uint32Array(ranks + 1);
    this.mask = 2 ** Math.ceil(Math.log2(ranks * 2.5)) - 1;
    this.slots = new Int32Array(this.mask + 1);
    let offset = 0;
    for (let rank = 0; rank < ranks; rank++) {
      this.offsets[rank] = offset;
      const length = this.lengths[rank]!;
      if (length === 0) continue;
      let hash = FNV_OFFSET;
      for (let i = offset; i < offset + length; i++) hash = fnv1a(hash, this.tokens[i]!);
      let slot = slotOf(hash, this.mask);
      while (this.slots[slot] !== 0) slot = (slot + 1) & this.mask;
      this.slots[slot] = rank + 1;
      offset += length;
    }
    this.offsets[ranks] = offset;
    if (offset !== this.tokens.length) throw new Error(`${name}: the token table's lengths do not add up`);
    this.pattern = chunkPattern(name);
    this.chunkCounts = new LRUCache({ max: chunkCacheSize });
  }

  /** Reads data/<encoding>.bpe, shipped with this package. */
  static async load(name: BpeEncodingName, chunkCacheSize: number): Promise<BytePairEncoding> {
    const table = await readFile(new URL(`../data/${name}.bpe`, import.meta.url));
    return new BytePairEncoding(name, table, chunkCacheSize);
  }

  /** The number of ranks (some may hold no token). */
  get size(): number {
    return this.lengths.length;
  }

  /** The bytes of the token of `rank` (empty if none). */
  tokenBytes(rank: number): Uint8Array {
    return this.tokens.subarray(this.offsets[rank], this.offsets[rank]! + this.lengths[rank]!);
  }

  /** The rank of the token made of `bytes[start, end)`, or -1. */
  rankOf(bytes: Uint8Array, start = 0, end = bytes.length): number {
    const rank = this.rankOfRange(bytes, start, end);
    return rank === NO_RANK ? -1 : rank;
  }

  private rankOfRange(bytes: Uint8Array, start: number, end: number): number {
    if (end - start > MAX_TOKEN_BYTES) return NO_RANK;
    let hash = FNV_OFFSET;
    for (let i = start; i < end; i++) hash = fnv1a(hash, bytes[i]!);
    return this.find(hash, bytes, start, end);
  }

  /** The rank of the token made of `bytes[start, end)`, whose hash is `hash`; NO_RANK if none. */
  private find(hash: number, bytes: Uint8Array, start: number, end: number): number {
    const length = end - start;
    const { slots, lengths, offsets, tokens, mask } = this;
    for (let slot = slotOf(hash, mask); ; slot = (slot + 1) & mask) {
      const entry = slots[slot]!;
      if (entry === 0) return NO_RANK;
      const rank = entry - 1;
      if (lengths[rank] !== length) continue;
      const offset = offsets[rank]! - start;
      let i = start;
      while (i < end && tokens[offset + i] === bytes[i]) i++;
      if (i === end) return rank;
    }
  }

  /** Tokens of `text` encoded as plain text (special-token text such as <|endoftext|> is ordinary text here). */
  countTokens(text: string): number {
    const pattern = this.pattern;
    let count = 0;
    let start = 0;
    while (start < text.length) {
      pattern.lastIndex = start;
      if (!pattern.test(text)) throw new Error(`${this.name}: no pre-tokenizer chunk at ${start}`);
      const end = pattern.lastIndex;
      count += this.countChunk(text, start, end);
      start = end;
    }
    return count;
  }

  private countChunk(text: string, start: number, end: number): number {
    const characters = end - start;
    // Every byte is a token: a one-character ASCII chunk is one.
    if (characters === 1 && text.charCodeAt(start) < 0x80) return 1;
    reserve(3 * characters);
    const bytes = chunkBytes;
    // An ASCII chunk's characters are its bytes: copied and hashed in one pass, with no UTF-8 encoding.
    let hash = FNV_OFFSET;
    let length = 0;
    for (; length < characters; length++) {
      const code = text.charCodeAt(start + length);
      if (code >= 0x80) break;
      bytes[length] = code;
      hash = fnv1a(hash, code);
    }
    if (length < characters) {
      length = encodeUtf8(text, start, end);
      if (this.rankOfRange(bytes, 0, length) !== NO_RANK) return 1;
    } else if (length <= MAX_TOKEN_BYTES && this.find(hash, bytes, 0, length) !== NO_RANK) {
      return 1;
    }
    if (length < CACHED_CHUNK_BYTES) return this.mergeCount(length);
    const chunk = text.slice(start, end);
    const cached = this.chunkCounts.get(chunk);
    if (cached !== undefined) return cached;
    const count = this.mergeCount(length);
    this.chunkCounts.set(chunk, count);
    return count;
  }

  /**
   * Tokens of chunkBytes[0, length): byte-level BPE, merging the adjacent pair whose joined bytes have the lowest rank
   * (the leftmost of equals) until no pair is a token. The parts are a linked list over byte positions: part i runs to
   * nextPart[i], and pairRanks[i] is the rank of it joined with the part after (-1 once part i is merged into the one
   * before). The pairs wait in a heap; one whose rank changed since it went in is stale and skipped.
   */
  private mergeCount(length: number): number {
    const bytes = chunkBytes;
    const next = nextPart;
    const previous = previousPart;
    const ranks = pairRanks;
    const heap = pairHeap;
    let queued = 0;
    for (let i = 0; i < length; i++) {
      next[i] = i + 1;
      previous[i] = i - 1;
      const rank = i + 2 <= length ? this.rankOfRange(bytes, i, i + 2) : NO_RANK;
      ranks[i] = rank;
      if (rank !== NO_RANK) heapPush(heap, queued++, rank * POSITIONS + i);
    }
    let parts = length;
    while (queued > 0) {
      const key = heap[0]!;
      heapPop(heap, queued--);
      const at = key % POSITIONS;
      if (ranks[at] !== (key - at) / POSITIONS) continue;
      // Join the part at `at` with the one after it, then rank the new pairs on either side.
      const joined = next[at]!;
      const after = next[joined]!;
      ranks[joined] = -1;
      next[at] = after;
      if (after < length) previous[after] = at;
      parts--;
      const rank = after < length ? this.rankOfRange(bytes, at, next[after]!) : NO_RANK;
      ranks[at] = rank;
      if (rank !== NO_RANK) heapPush(heap, queued++, rank * POSITIONS + at);
      const before = previous[at]!;
      if (before >= 0) {
        const rankBefore = this.rankOfRange(bytes, before, after);
        ranks[before] = rankBefore;
        if (rankBefore !== NO_RANK) heapPush(heap, queued++, rankBefore * POSITIONS + before);
      }
    }
    return parts;
  }
}
