// Exact BPE token counts (OpenAI's and the open vocabularies), time-boxed so that no input can stall the event loop.
import { performance } from 'node:perf_hooks';
import { TimeSlice } from '@tollgate/core/store-contracts';
import { BytePairEncoding, cutsAtPunctuation, MAX_TOKEN_BYTES } from './bpe.js';
import type { BpeEncodingName } from './bpe.js';

export { TimeSlice };

/*
 * The counts are our own BPE over compact tables (bpe.ts): as fast as gpt-tokenizer or faster on every input of
 * packages/providers/bench/tokenizers.ts, in a tenth of the memory (the figures: the README, "The tokenizer"). A
 * pre-tokenizer chunk merges in n log n time, but a megabyte with no break is still one step the event loop waits
 * for. So text is cut at boundaries where counts add up exactly, a piece whose merge would outlast the count's time box
 * is bounded by its UTF-8 byte count instead (every token is at least one byte), and the whole count stops at a
 * deadline.
 */

/** OpenAI's encodings, and the open vocabularies of Llama 3, Mistral (tekken), Qwen2.5 and Gemma (Gemini's). */
export type EncodingName = BpeEncodingName;
export { MAX_TOKEN_BYTES };

/**
 * Which way a count may err where text cannot be counted exactly in time: `upper` (estimates and
 * reservations: never below the true count) or `lower` (the hard stop: never above it).
 */
type CountBound = 'upper' | 'lower';

/** What `bytes` of text not counted exactly stand for, as `bound` says: a text of n bytes is at least n / 128 tokens. */
function boundOfBytes(bytes: number, bound: CountBound): number {
  return bound === 'upper' ? bytes : Math.ceil(bytes / MAX_TOKEN_BYTES);
}

const WARM_UP_TEXT = 'Warm up: naïve café, 数据 😀 {"json": [1, 2.5]} <|endoftext|>\n\tcode();';

/**
 * The counts of up to this many pre-tokenizer chunks that had to be merged are kept, per encoding, for their repeats.
 * Chunks that are whole tokens (most of any text) are one hash lookup and never reach it.
 */
const CHUNK_CACHE_SIZE = 10_000;

const encoders = new Map<EncodingName, BytePairEncoding>();
/** Each encoding's load, started once. */
const loads = new Map<EncodingName, Promise<void>>();
/** The load before the last one started: loads run one after the other, so two never compete for the CPU. */
let lastLoad: Promise<void> = Promise.resolve();

/** True once `encoding` is loaded: before, its counts are the UTF-8 byte bound. */
export function encodingLoaded(encoding: EncodingName): boolean {
  return encoders.has(encoding);
}

/** The encodings the shipped catalogue names (OpenAI's); an open vocabulary loads when a model first names it. */
const CATALOGUE_ENCODINGS: readonly EncodingName[] = ['o200k_base', 'cl100k_base'];

/** True once the catalogue's encodings are loaded. */
export function tokenizersLoaded(): boolean {
  return CATALOGUE_ENCODINGS.every((encoding) => encoders.has(encoding));
}

/**
 * Loads `encoding` (about 100 ms of CPU and 3 to 5 MiB, once); the same promise for every call. A count in
 * an encoding not loaded starts this itself and answers with the byte bound, which is never too low.
 */
export function loadEncoding(encoding: EncodingName): Promise<void> {
  let load = loads.get(encoding);
  if (load === undefined) {
    load = lastLoad.then(async () => {
      // Classify the whole BMP once (about 10 ms) rather than on first sight during a count, where a megabyte of
      // random unicode would meet tens of thousands of new characters.
      if (classes[0xffff] === UNKNOWN) for (let code = 0; code < 0x10000; code++) classOf(code);
      const encoder = await BytePairEncoding.load(encoding, CHUNK_CACHE_SIZE);
      // Warm the regexes and the JIT so the first request's count is not the slow one.
      encoder.countTokens(WARM_UP_TEXT);
      encoders.set(encoding, encoder);
    });
    loads.set(encoding, load);
    lastLoad = load.catch(() => undefined);
  }
  return load;
}

/**
 * Loads the encodings named (the catalogue's by default) now, off the request path. `meter()` loads o200k_base, the
 * encoding of current OpenAI models and of the lower bound the hard stop uses for the others; cl100k_base (GPT-4,
 * GPT-3.5) loads the first time a request asks for it, its first counts the byte bound meanwhile.
 */
export function preloadTokenizers(names: readonly EncodingName[] = CATALOGUE_ENCODINGS): Promise<void> {
  return Promise.all(names.map(loadEncoding)).then(() => undefined);
}

/**
 * Shared by every count of one request, so the whole request is time-boxed, not each string.
 * It measures the time spent counting (not the time since it was made), so a busy event loop
 * between two counts does not turn exact counts into bounds.
 */
/** Characters of a request counted exactly whatever the clock says (see CountBudget.expired). */
export const ALWAYS_EXACT_CHARS = 4_096;

export class CountBudget {
  private spentMs = 0;
  private runningSince: number | undefined;
  /** Characters handed to counting so far. */
  private seenChars = 0;
  /** Texts (or pieces of one) bounded instead of counted exactly so far. */
  boundedPieces = 0;

  /** True once some text was bounded instead of counted exactly. */
  get bounded(): boolean {
    return this.boundedPieces > 0;
  }

  constructor(readonly maxMs: number) {}

  /**
   * The first few KB are always counted exactly (at worst a few ms): a small prompt stays exact
   * even when a GC pause or a busy CPU eats the budget. maxMs 0 turns exact counting off.
   */
  get expired(): boolean {
    if (this.maxMs > 0 && this.seenChars <= ALWAYS_EXACT_CHARS) return false;
    const running = this.runningSince === undefined ? 0 : performance.now() - this.runningSince;
    return this.spentMs + running >= this.maxMs;
  }

  /** Notes `chars` more characters about to be counted. */
  see(chars: number): void {
    this.seenChars += chars;
  }

  /** `charge` of one tokenizer call on a short text, with no closure made for it. */
  countAtOnce(encoder: BytePairEncoding, text: string): number {
    if (this.runningSince !== undefined) return encoder.countTokens(text);
    const start = performance.now();
    this.runningSince = start;
    try {
      return encoder.countTokens(text);
    } finally {
      this.runningSince = undefined;
      this.spentMs += performance.now() - start;
    }
  }

  /** Runs `work` and charges its duration to the budget (`expired` sees it while it runs). */
  charge<T>(work: () => T): T {
    // Nested charges (an async slice around a count) are charged once, by the outer one.
    if (this.runningSince !== undefined) return work();
    const start = performance.now();
    this.runningSince = start;
    try {
      return work();
    } finally {
      this.runningSince = undefined;
      this.spentMs += performance.now() - start;
    }
  }
}

/** UTF-8 length of a string without allocating (JS strings are UTF-16). */
export function utf8Length(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

// Character classes for spotting long pre-tokenizer chunks. A run of one class becomes one
// chunk (digits never do: they split by three). Marks and surrogates join any run.
const UNKNOWN = 0;
const LETTER = 1;
const DIGIT = 2;
const SPACE = 3;
const OTHER = 4;
const JOINER = 5;
const classes = new Uint8Array(0x10000);
const LETTER_RE = /\p{L}/u;
const MARK_RE = /\p{M}/u;
const DIGIT_RE = /\p{N}/u;
const SPACE_RE = /\s/u;

function classOf(code: number): number {
  const known = classes[code]!;
  if (known !== UNKNOWN) return known;
  const char = String.fromCharCode(code);
  let found = OTHER;
  if (code >= 0xd800 && code <= 0xdfff) found = JOINER;
  // Gemma writes a space as U+2581: text that holds the character itself is not cut between it and a space.
  else if (code === 0x2581) found = SPACE;
  else if (MARK_RE.test(char)) found = JOINER;
  else if (LETTER_RE.test(char)) found = LETTER;
  else if (DIGIT_RE.test(char)) found = DIGIT;
  else if (SPACE_RE.test(char)) found = SPACE;
  classes[code] = found;
  return found;
}

const ASCII_CLASSES = Uint8Array.from({ length: 0x80 }, (_, code) => classOf(code));
/** Where the next piece starts, one character after the match: a space right after a non-space. */
const NEXT_SPACE = /\S /g;
/** Where a piece of text without spaces starts, right after the match: punctuation right after a letter. */
const NEXT_PUNCTUATION = /\p{L}(?=[^\s\p{L}\p{M}\p{N}'])/u;
/**
 * How far a costly piece is searched for punctuation after a letter: a search for a space is a fast scan for one
 * character, one for a letter before punctuation is not (a megabyte of one letter would take 10 ms).
 */
const PUNCTUATION_WINDOW = 4_096;

/** Where the piece after position `from` may start: the next boundary of a space, else of punctuation nearby; -1: none. */
function nextPieceStart(text: string, from: number): number {
  NEXT_SPACE.lastIndex = from;
  const space = NEXT_SPACE.exec(text);
  const spaceAt = space ? space.index + 1 : -1;
  const windowEnd = Math.min(spaceAt === -1 ? text.length : spaceAt, from + PUNCTUATION_WINDOW);
  const punctuation = NEXT_PUNCTUATION.exec(text.slice(from, windowEnd));
  return punctuation ? from + punctuation.index + punctuation[0].length : spaceAt;
}

/**
 * Where the last piece of `text` starts (the rule `countTextTokens` cuts by: before a space that follows a non-space,
 * before punctuation that follows a letter), after position 0; 0 when there is none. The count of `text` is exactly
 * the count of what comes before that position plus the count of what comes from it, whatever follows `text` later:
 * a growing text (a stream's output) can be counted once up to there and the rest again as it grows.
 */
export function lastPieceStart(text: string, encoding: EncodingName = 'o200k_base'): number {
  const punctuation = cutsAtPunctuation(encoding);
  const encoder = encoders.get(encoding);
  for (let i = text.length - 1; i > 0; i--) {
    const code = text.charCodeAt(i);
    if (code === 0x20) {
      // A space starts a piece after a non-space: the last character before it that is not a mark or surrogate.
      let before = i - 1;
      while (before >= 0 && classOfCode(text.charCodeAt(before)) === JOINER) before--;
      if (before >= 0 && classOfCode(text.charCodeAt(before)) !== SPACE && !encoder?.literalAcross(text, i)) return i;
    } else if (
      punctuation &&
      code !== 0x27 &&
      classOfCode(code) === OTHER &&
      classOfCode(text.charCodeAt(i - 1)) === LETTER &&
      !encoder?.literalAcross(text, i)
    ) {
      return i;
    }
  }
  return 0;
}

/** The doublings of a run of `bytes` (its merge heap's depth). */
const levelsOf = (bytes: number): number => 32 - Math.clz32(bytes);

const classOfCode = (code: number): number => (code < 0x80 ? ASCII_CLASSES[code]! : classOf(code));

/** Strings up to this many characters go to the tokenizer at once (worst case well under 1 ms). */
const SHORT_TEXT = 256;
/**
 * Tokenizer work, in units of about 1.5 ns: every byte about 40 (regex split, rank lookups), and a byte of a run of one
 * class RUN_COST_PER_LEVEL per doubling of the run so far, as the merge of a chunk of n bytes is n log n (its heap).
 * Measured at 2 KB to 100 KB runs of spaces, letters, CJK and emoji in every table (0.2 to 1.0 µs a byte at 100 KB,
 * packages/providers/test/long-runs.test.ts): the model charges at least that.
 */
const COST_PER_BYTE = 40;
const RUN_COST_PER_LEVEL = 48;
/**
 * A byte of a non-ASCII character costs more: its chunks are rarely whole tokens, so it goes through the merge.
 * Measured on random unicode (no chunk-cache hits): about as much as an ASCII byte; counted at twice that.
 */
const COST_PER_WIDE_BYTE = 80;
/**
 * A piece above this cost (~3 ms: one run of ~3 KB, or ~30 KB with no space) is bounded, not counted, where the
 * count yields to the event loop between steps (`countTextTokensSliced`).
 */
const MAX_PIECE_COST = 2_000_000;
/** Cost units in a millisecond. */
const COST_PER_MS = 666_667;
/**
 * A count made at once (`countTextTokens`) merges a piece up to its time box (at most ~15 ms, the meter's output count:
 * one run of ~14 KB), so that the runs an answer cut at its cap holds are counted exactly.
 */
const MAX_SYNC_PIECE_COST = 15 * COST_PER_MS;
/** Exact pieces go to the tokenizer in batches of at most about this cost, with a deadline check between batches. */
const MAX_BATCH_COST = 600_000;

/**
 * Tokens of `text` in `encoding`: exact when it can be counted in time, otherwise an upper bound
 * (or, with `bound` 'lower', a lower bound).
 *
 * The text is cut where both pre-tokenizer regexes (cl100k, o200k) always end a chunk and start
 * the next one, and they never look behind, so the count of the whole is exactly the sum of the
 * pieces: before a space that follows a non-space character, and before a punctuation or symbol
 * character (not a letter, mark, digit, space or apostrophe) that follows a letter, where a run of
 * letters ends (this is what cuts text written without spaces: Chinese, Japanese, base64). A piece
 * whose merge would outlast the time box (see MAX_SYNC_PIECE_COST), and everything left once the
 * budget expires, counts as its UTF-8 byte length (at 1/128 of it for a lower bound).
 */
export function countTextTokens(
  text: string,
  encoding: EncodingName,
  budget: CountBudget,
  bound: CountBound = 'upper',
): number {
  if (text.length === 0) return 0;
  const encoder = encoders.get(encoding);
  budget.see(text.length);
  if (!encoder) void loadEncoding(encoding);
  if (!encoder || budget.expired) {
    budget.boundedPieces++;
    return boundOfBytes(utf8Length(text), bound);
  }
  if (text.length <= SHORT_TEXT) return budget.countAtOnce(encoder, text);
  const maxPieceCost = Math.max(MAX_PIECE_COST, Math.min(MAX_SYNC_PIECE_COST, budget.maxMs * COST_PER_MS));
  return budget.charge(() => {
    const steps = countLongText(text, encoder, budget, bound, maxPieceCost);
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
    }
  });
}

/**
 * `countTextTokens` in slices: the same count (exact, or bounded where the budget runs out),
 * with the event loop turning whenever `slice` is used up. The budget counts the time spent
 * counting, not the time spent waiting for the loop.
 */
export async function countTextTokensSliced(
  text: string,
  encoding: EncodingName,
  budget: CountBudget,
  slice: TimeSlice,
): Promise<number> {
  if (text.length === 0) return 0;
  await slice.pause();
  const encoder = encoders.get(encoding);
  if (!encoder || text.length <= SHORT_TEXT) return countTextTokens(text, encoding, budget);
  budget.see(text.length);
  if (budget.expired) {
    budget.boundedPieces++;
    return utf8Length(text);
  }
  const steps = countLongText(text, encoder, budget);
  for (;;) {
    const step = budget.charge(() => {
      let next = steps.next();
      while (!next.done && !slice.used) next = steps.next();
      return next;
    });
    if (step.done) return step.value;
    await slice.pause();
  }
}

/**
 * Counts text longer than SHORT_TEXT, yielding after every bounded step (a batch sent to the
 * tokenizer, or a bounded piece skipped): the caller may let the event loop turn there.
 */
function* countLongText(
  text: string,
  encoder: BytePairEncoding,
  budget: CountBudget,
  mode: CountBound = 'upper',
  maxPieceCost = MAX_PIECE_COST,
): Generator<void, number, void> {
  const punctuation = cutsAtPunctuation(encoder.name);
  let total = 0;
  let batchStart = 0;
  let batchCost = 0;
  let pieceStart = 0;
  let pieceCost = 0;
  let runClass = UNKNOWN;
  let runBytes = 0;
  /** The class of the character before this one (a mark or surrogate is JOINER, not the run's class). */
  let previous = UNKNOWN;

  const bound = (from: number, to?: number) => {
    budget.boundedPieces++;
    return boundOfBytes(utf8Length(text.slice(from, to)), mode);
  };
  const flushBatch = (end: number) => {
    if (end > batchStart) total += encoder.countTokens(text.slice(batchStart, end));
    batchStart = end;
    batchCost = 0;
  };

  for (let i = 0; i < text.length; i++) {
    if (pieceCost > maxPieceCost) {
      // This piece will be bounded anyway: jump to where the next one starts, natively.
      const next = nextPieceStart(text, i);
      flushBatch(pieceStart);
      if (next === -1) return total + bound(pieceStart);
      i = next;
      total += bound(pieceStart, i);
      batchStart = i;
      pieceStart = i;
      pieceCost = 1;
      runClass = SPACE;
      runBytes = 1;
      previous = SPACE;
      if (budget.expired) return total + bound(i);
      yield;
      continue;
    }
    const code = text.charCodeAt(i);
    const cls = code < 0x80 ? ASCII_CLASSES[code]! : classOf(code);
    // A piece ends before a space after a non-space, and where a run of letters ends before punctuation (never before
    // an apostrophe: "'s" may close the run).
    if (
      i > pieceStart &&
      ((code === 0x20 && runClass !== SPACE) ||
        (punctuation && cls === OTHER && previous === LETTER && code !== 0x27)) &&
      !encoder.literalAcross(text, i)
    ) {
      batchCost += pieceCost;
      if (batchCost >= MAX_BATCH_COST) {
        flushBatch(i);
        if (budget.expired) return total + bound(i);
        yield;
      }
      pieceStart = i;
      pieceCost = 0;
      runClass = UNKNOWN;
      runBytes = 0;
    }
    previous = cls;
    const bytes = code < 0x80 ? 1 : code < 0x800 || cls === JOINER ? 2 : 3;
    if (cls === DIGIT) {
      // Digits split every three characters: they never grow a costly chunk.
      runClass = DIGIT;
      runBytes = 0;
      pieceCost += code < 0x80 ? COST_PER_BYTE : COST_PER_WIDE_BYTE * bytes;
      continue;
    }
    if (cls !== JOINER && cls !== runClass) {
      runClass = cls;
      runBytes = 0;
    }
    runBytes += bytes;
    pieceCost += ((code < 0x80 ? COST_PER_BYTE : COST_PER_WIDE_BYTE) + RUN_COST_PER_LEVEL * levelsOf(runBytes)) * bytes;
  }
  if (pieceCost > maxPieceCost) {
    flushBatch(pieceStart);
    return total + bound(pieceStart);
  }
  flushBatch(text.length);
  return total;
}
