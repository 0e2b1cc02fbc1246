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
/** 1: tokens only; 2: literals follow them. */
const FORMAT_VERSIONS = [1, 2];
const HEADER_BYTES = 12;
const NO_RANK = 0x7fffffff;

// The published pre-tokenizer patterns of OpenAI's tiktoken and of the open vocabularies. JavaScript has no inline
// (?i:...) group: the contractions' case-insensitivity is written out.
const CONTRACTION = String.raw`'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])`;
const CL100K_PATTERN = [
  CONTRACTION,
  String.raw`[^\r\n\p{L}\p{N}]?\p{L}+`,
  String.raw`\p{N}{1,3}`,
  String.raw` ?[^\s\p{L}\p{N}]+[\r\n]*`,
  String.raw`\s*[\r\n]+`,
  String.raw`\s+(?!\S)`,
  String.raw`\s+`,
];
const UPPER_THEN_LOWER = String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+`;
const LOWER_AFTER_UPPER = String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*`;
const O200K_TAIL = [
  String.raw` ?[^\s\p{L}\p{N}]+[\r\n/]*`,
  String.raw`\s*[\r\n]+`,
  String.raw`\s+(?!\S)`,
  String.raw`\s+`,
];

/** How an encoding reads text before and while it merges (see docs/tokenizers.md). */
interface EncodingRules {
  /** The pre-tokenizer's alternatives: BPE merges within each chunk they match. */
  readonly pattern: readonly string[];
  /** How the text is written before it is split: NFC (Qwen), spaces as U+2581 (Gemma's SentencePiece). */
  readonly normalize?: 'nfc' | 'spaces';
  /**
   * A chunk's first parts: its bytes (byte-level BPE), or its characters, a character with no token of its own
   * falling back to its bytes, which never merge (SentencePiece with byte fallback).
   */
  readonly units: 'bytes' | 'characters';
  /** tiktoken's rule: a chunk that is a token is one, whatever the merges (false: the merges decide). */
  readonly wholeChunks: boolean;
  /**
   * No token joins a letter to the punctuation after it (other than an apostrophe or a literal), so text may be cut
   * there and the counts add up. Gemma's vocabulary has such tokens (Persian "ه\u200c", Tibetan "ས་"): it is cut only
   * before spaces.
   */
  readonly punctuationCuts: boolean;
}

const RULES = {
  cl100k_base: { pattern: CL100K_PATTERN, units: 'bytes', wholeChunks: true, punctuationCuts: true },
  o200k_base: {
    pattern: [
      `${UPPER_THEN_LOWER}(?:${CONTRACTION})?`,
      `${LOWER_AFTER_UPPER}(?:${CONTRACTION})?`,
      String.raw`\p{N}{1,3}`,
      ...O200K_TAIL,
    ],
    units: 'bytes',
    wholeChunks: true,
    punctuationCuts: true,
  },
  // Llama 3: cl100k_base's pattern over its own tiktoken vocabulary.
  llama3: { pattern: CL100K_PATTERN, units: 'bytes', wholeChunks: true, punctuationCuts: true },
  // Mistral's tekken: o200k_base's pattern without contractions, digits one by one.
  tekken: {
    pattern: [UPPER_THEN_LOWER, LOWER_AFTER_UPPER, String.raw`\p{N}`, ...O200K_TAIL],
    units: 'bytes',
    wholeChunks: true,
    punctuationCuts: true,
  },
  // Qwen2.5: cl100k_base's pattern with digits one by one, after NFC; merges decide.
  qwen2: {
    pattern: [...CL100K_PATTERN.slice(0, 2), String.raw`\p{N}`, ...CL100K_PATTERN.slice(3)],
    normalize: 'nfc',
    units: 'bytes',
    wholeChunks: false,
    punctuationCuts: true,
  },
  // Gemma: no pre-tokenizer. No token holds U+2581 after another character, so chunks may start at each space.
  gemma: {
    pattern: [String.raw`\u2581*[^\u2581]+`, String.raw`\u2581+`],
    normalize: 'spaces',
    units: 'characters',
    wholeChunks: false,
    punctuationCuts: false,
  },
} as const satisfies Record<string, EncodingRules>;

export type BpeEncodingName = keyof typeof RULES;

/** True when text in `encoding` may be cut before punctuation that follows a letter (see `punctuationCuts`). */
export function cutsAtPunctuation(encoding: BpeEncodingName): boolean {
  return RULES[encoding].punctuationCuts;
}

/**
 * Every pattern matches at least one character and together they match any character, so chunks follow one another
 * with no gap: a sticky regex finds each where the last ended, and `test` finds it without allocating a match.
 */
function chunkPattern(encoding: BpeEncodingName): RegExp {
  return new RegExp(RULES[encoding].pattern.join('|'), 'uy');
}

/** A regex of the literals, the longest first where one begins another (as the reference tokenizers match them). */
function literalPattern(literals: readonly string[], flags: string): RegExp | undefined {
  if (literals.length === 0) return undefined;
  const escaped = [...literals]
    .sort((a, b) => b.length - a.length)
    .map((literal) => literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(escaped.join('|'), flags);
}

/** The UTF-8 length of the character whose first byte is `byte` (1 for a byte that starts none). */
function sequenceLength(byte: number): number {
  return byte < 0xc0 ? 1 : byte < 0xe0 ? 2 : byte < 0xf0 ? 3 : 4;
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

/** A run of byte strings in a table: their lengths, one byte each, then their bytes; and where the run ends. */
function readStrings(
  table: Uint8Array,
  at: number,
  count: number,
): { lengths: Uint8Array; bytes: Uint8Array; end: number } {
  const lengths = table.subarray(at, at + count);
  let total = 0;
  for (let i = 0; i < count; i++) total += lengths[i]!;
  const start = at + count;
  if (start + total > table.length) throw new Error('the token table is cut short');
  return { lengths, bytes: table.subarray(start, start + total), end: start + total };
}

/** The literals of a version 2 table, as text (see scripts/build-token-tables.mjs). */
function readLiterals(table: Uint8Array, at: number): string[] {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const { lengths, bytes, end } = readStrings(table, at + 4, view.getUint32(at, true));
  if (end !== table.length) throw new Error('the token table has bytes after its literals');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const literals: string[] = [];
  let offset = 0;
  for (const length of lengths) {
    literals.push(utf8.decode(bytes.subarray(offset, offset + length)));
    offset += length;
  }
  return literals;
}

/** One encoding: its tokens, their ranks, and exact counts of text in it. */
export class BytePairEncoding {
  private readonly lengths: Uint8Array;
  private readonly offsets: Uint32Array;
  private readonly tokens: Uint8Array;
  /** rank + 1 at the slot of its bytes' hash (linear probing), 0 where empty. */
  private readonly slots: Int32Array;
  private readonly mask: number;
  private readonly pattern: RegExp;
  private readonly rules: EncodingRules;
  /** Text matched whole before anything else, each one token (the added pieces that are not special tokens). */
  private readonly literals: RegExp | undefined;
  /** The literals, matched where a search starts; and the first UTF-16 units they start with. */
  private readonly literalAt: RegExp | undefined;
  private readonly literalStarts: Set<number>;
  /** The longest literal, in UTF-16 units. */
  readonly longestLiteral: number;
  private readonly chunkCounts: LRUCache<string, number>;

  /** `table`: the contents of a data/<encoding>.bpe file. */
  constructor(
    readonly name: BpeEncodingName,
    table: Uint8Array,
    chunkCacheSize: number,
  ) {
    const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
    const magic = String.fromCharCode(table[0]!, table[1]!, table[2]!, table[3]!);
    const version = view.getUint32(4, true);
    if (magic !== MAGIC || !FORMAT_VERSIONS.includes(version)) throw new Error(`${name}: not a token table`);
    const ranks = view.getUint32(8, true);
    const strings = readStrings(table, HEADER_BYTES, ranks);
    if (version === 1 && strings.end !== table.length)
      throw new Error(`${name}: the token table's lengths do not add up`);
    const literals = version === 2 ? readLiterals(table, strings.end) : [];
    this.lengths = strings.lengths;
    this.tokens = strings.bytes;
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
    this.pattern = chunkPattern(name);
    this.rules = RULES[name];
    this.literals = literalPattern(literals, 'gu');
    this.literalAt = literalPattern(literals, 'uy');
    this.literalStarts = new Set(literals.map((literal) => literal.charCodeAt(0)));
    this.longestLiteral = Math.max(0, ...literals.map((literal) => literal.length));
    this.chunkCounts = new LRUCache({ max: chunkCacheSize });
  }

  /** Reads data/<encoding>.bpe, shipped with this package. */
  static async load(name: BpeEncodingName, chunkCacheSize: number): Promise<BytePairEncoding> {
    const table = await readFile(new URL(`../data/${name}.bpe`, import.meta.url));
    return new BytePairEncoding(name, table, chunkCacheSize);
  }

  /** True when a literal in `text` runs across position `at`: text is never cut inside one. */
  literalAcross(text: string, at: number): boolean {
    const literalAt = this.literalAt;
    if (literalAt === undefined) return false;
    for (let start = Math.max(0, at - this.longestLiteral + 1); start < at; start++) {
      if (!this.literalStarts.has(text.charCodeAt(start))) continue;
      literalAt.lastIndex = start;
      if (literalAt.test(text) && literalAt.lastIndex > at) return true;
    }
    return false;
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

  /**
   * Tokens of `text` encoded as plain text (special-token text such as <|endoftext|> is ordinary text here; the
   * literals of an open vocabulary, its added pieces that are not special, are one token each, as its tokenizer has it).
   */
  countTokens(text: string): number {
    const literals = this.literals;
    if (literals === undefined) return this.countPlain(text);
    let count = 0;
    let start = 0;
    literals.lastIndex = 0;
    for (let found = literals.exec(text); found !== null; found = literals.exec(text)) {
      count += this.countPlain(text.slice(start, found.index)) + 1;
      start = found.index + found[0].length;
    }
    return count + this.countPlain(start === 0 ? text : text.slice(start));
  }

  /** Tokens of text that holds no literal. */
  private countPlain(raw: string): number {
    const normalize = this.rules.normalize;
    const text =
      normalize === undefined ? raw : normalize === 'nfc' ? raw.normalize('NFC') : raw.replaceAll(' ', '\u2581');
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
    const whole = this.rules.wholeChunks;
    if (length < characters) {
      length = encodeUtf8(text, start, end);
      if (whole && this.rankOfRange(bytes, 0, length) !== NO_RANK) return 1;
    } else if (whole && length <= MAX_TOKEN_BYTES && this.find(hash, bytes, 0, length) !== NO_RANK) {
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
   * Links the first parts of chunkBytes[0, length) (see `mergeCount`): every byte, or every character that is a token
   * and the bytes of every other one (SentencePiece's byte fallback: a lone byte joins no token). Their number.
   */
  private firstParts(length: number): number {
    const next = nextPart;
    const previous = previousPart;
    if (this.rules.units === 'bytes') {
      for (let i = 0; i < length; i++) {
        next[i] = i + 1;
        previous[i] = i - 1;
      }
      return length;
    }
    const bytes = chunkBytes;
    let parts = 0;
    let last = -1;
    for (let i = 0; i < length;) {
      const end = Math.min(length, i + sequenceLength(bytes[i]!));
      const whole = end - i > 1 && this.rankOfRange(bytes, i, end) !== NO_RANK;
      for (let at = i; at < end; at = whole ? end : at + 1) {
        next[at] = whole ? end : at + 1;
        previous[at] = last;
        last = at;
        parts++;
      }
      i = end;
    }
    return parts;
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
    let parts = this.firstParts(length);
    let queued = 0;
    for (let i = 0; i < length; i = next[i]!) {
      const after = next[i]!;
      const rank = after < length ? this.rankOfRange(bytes, i, next[after]!) : NO_RANK;
      ranks[i] = rank;
      if (rank !== NO_RANK) heapPush(heap, queued++, rank * POSITIONS + i);
    }
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
