// Counting the strings of one request under one time budget, exact or approximate as the catalogue says.
import type { TokenizerFamily } from '@tollgate/core/costs';
import { TokenCountCache } from './count-cache.js';
import { CountBudget, countTextTokens, countTextTokensSliced } from './tokenizer.js';
import type { EncodingName, TimeSlice } from './tokenizer.js';
import type { UsageEstimate } from '@tollgate/core';

/** How the input tokens were found. */
export type EstimateMethod = EncodingName | 'approximate';

export interface EstimateOptions {
  /**
   * Tokens counted for each image, an upper bound because image sizes are not known before the call.
   * @default 3,779 for OpenAI models (the largest of OpenAI's documented formulas: 1,536 patches x 2.46,
   * above 85 + 170 x 8 tiles = 1,445), 48,169 for gpt-4o-mini (2,833 + 5,667 x 8 tiles), 1,600 for
   * Anthropic and other models (Anthropic resizes images above ~1.15 megapixels; tokens = w x h / 750).
   */
  imageTokens?: number;
  /**
   * Time budget for exact counting, per request (time spent counting, not waiting for the event
   * loop). Text left when it runs out is counted as its UTF-8 byte length: an upper bound.
   * @default 15 for `estimateRequest` / `estimateInputTokens` (synchronous: the whole count is one
   * stall), 250 for `estimateRequestAsync` / `estimateInputTokensAsync` (sliced)
   */
  maxEstimateMs?: number;
  /**
   * Asynchronous estimates only: counting runs in slices of about this many ms, with an event-loop
   * turn (setImmediate) between slices, so no other request waits longer than about one slice.
   * @default 4
   */
  estimateSliceMs?: number;
  /**
   * Factor applied to o200k_base counts for models whose tokenizer is not public (Anthropic,
   * self-hosted). Claude's tokenizer yields more tokens than o200k_base for the same text; 1.25
   * covers English prose and code with margin.
   * @default 1.25
   */
  approximationFactor?: number;
  /**
   * Where exact counts of texts are kept and looked up: a text counted before (the same system
   * prompt, a conversation resent each turn) is not counted again. See `TokenCountCache`.
   * @default none: every text is counted
   */
  countCache?: TokenCountCache;
  /** The scope counts are kept under in `countCache`, such as the tenant: scopes share nothing. @default '' */
  countScope?: string;
}

export interface InputTokenEstimate {
  tokens: number;
  /** True when every string was counted by the exact tokenizer (no byte bound, no approximation). */
  exact: boolean;
  method: EstimateMethod;
  /**
   * The most input tokens the request can be billed, whatever the provider's tokenizer: `tokens`
   * with every string's count replaced by its UTF-8 bytes (each token of a byte-level BPE or a
   * SentencePiece tokenizer with byte fallback covers at least one byte, so text can never be
   * more tokens than bytes); framing, images at their bound and documented scaffolding stay as
   * counted. `Infinity` when the request brings content its body does not hold (see
   * `RequestCounter.openEnded`): then only the context window bounds it.
   */
  bound: number;
}

export interface RequestEstimate extends UsageEstimate, InputTokenEstimate {}

/**
 * Upper bound of the tokens of one image (see `imageTokens`): OpenAI's largest documented formula
 * for exactly counted (OpenAI) models, gpt-4o-mini's own, and Anthropic's resize bound elsewhere.
 */
function imageTokenBound(model: string, exactTokenizer: boolean): number {
  if (!exactTokenizer) return 1_600;
  if (/^(ft:)?gpt-4o-mini/i.test(model)) return 48_169;
  return 3_779;
}

/**
 * Keys by which a part names content held elsewhere (OpenAI `file_id` / `file_url`, Gemini
 * `fileUri`) or holds a document whose pages become more tokens than its bytes (OpenAI `file_data`).
 */
const CONTENT_REFERENCES = ['file_id', 'file_url', 'file_data', 'fileUri', 'fileData', 'file'];

/**
 * True when a part (or its `file` object) refers to content by id or URL, or is a PDF: each page is
 * billed as text plus a page image, more tokens than a sparse page's bytes (Anthropic `source`).
 */
function refersToContent(value: unknown, depth = 0): boolean {
  if (typeof value !== 'object' || value === null || depth > 2) return false;
  const record = value as Record<string, unknown>;
  for (const key of CONTENT_REFERENCES) {
    const inner = record[key];
    if (typeof inner === 'string' && inner.length > 0) return true;
    if (typeof inner === 'object' && inner !== null && refersToContent(inner, depth + 1)) return true;
  }
  const source = record.source;
  if (typeof source === 'object' && source !== null) {
    const { type, media_type: mediaType } = source as Record<string, unknown>;
    if (type === 'file' || type === 'url' || mediaType === 'application/pdf') return true;
  }
  return false;
}

/** Time budget of a synchronous estimate (its whole count is one event-loop stall). */
export const SYNC_ESTIMATE_MS = 15;
/** Time budget of an asynchronous (sliced) estimate. */
export const ASYNC_ESTIMATE_MS = 250;
/** Slice length of an asynchronous estimate. */
export const ESTIMATE_SLICE_MS = 4;

/**
 * Counts strings for one request, under one time budget. Counting at once (`mode` 'count'), or in
 * two walks for the sliced estimate: 'collect' gathers the strings in walk order (counting
 * nothing), they are counted asynchronously, and 'replay' walks again taking those counts in
 * the same order, so both estimates share every framing rule.
 */
export class RequestCounter {
  readonly budget: CountBudget;
  readonly encoding: EncodingName;
  readonly exactTokenizer: boolean;
  private mode: 'count' | 'collect' | 'replay' = 'count';
  /** Strings met in 'collect' mode. */
  readonly collected: string[] = [];
  /** Per collected string, its count when the cache knew it. */
  private readonly collectedKnown: (number | undefined)[] = [];
  /** Characters of the strings met so far that the cache did not know, and how many may be counted (see `countUpTo`). */
  private chars = 0;
  private maxChars = Infinity;
  /** The strings passed `maxChars`: the count stopped there and is not the request's. */
  exceeded = false;
  private counts: number[] = [];
  private next = 0;
  /** UTF-8 bytes of the strings met (in 'count' and 'collect' mode: 'replay' meets them again). */
  bytes = 0;
  /** Tokens counted for those strings (in 'count' and 'replay' mode: 'collect' counts nothing). */
  textTokens = 0;
  /**
   * The request pulls in content its body does not hold: a file or document by id or URL, an
   * earlier response or conversation, a provider cache, a server tool whose results become input.
   * No byte count bounds it.
   */
  openEnded = false;

  readonly factor: number;
  private readonly cache: TokenCountCache | undefined;
  /** What this request's counts are kept under in `cache` (its scope and encoding). */
  private readonly scopeKey: string;

  constructor(
    readonly model: string,
    /** The catalogue's tokenizer for the model: an exact encoding, or `approximate`. */
    tokenizer: TokenizerFamily,
    private readonly options: EstimateOptions,
    defaultMs: number,
  ) {
    this.budget = new CountBudget(options.maxEstimateMs ?? defaultMs);
    this.exactTokenizer = tokenizer !== 'approximate';
    this.encoding = tokenizer === 'approximate' ? 'o200k_base' : tokenizer;
    this.factor = options.approximationFactor ?? 1.25;
    this.cache = options.countCache;
    this.scopeKey = this.cache ? TokenCountCache.scopeKey(options.countScope ?? '', this.encoding) : '';
  }

  /** Characters of the strings met that are still to be counted (the cache knew the others). */
  get pendingChars(): number {
    return this.chars;
  }

  /**
   * Counts at once only while the strings met hold at most `chars` characters in all; past that it
   * stops counting and sets `exceeded` (the request is then counted in slices, from a collect).
   */
  countUpTo(chars: number): void {
    this.maxChars = chars;
  }

  collect(): void {
    this.mode = 'collect';
  }

  replay(counts: number[]): void {
    this.mode = 'replay';
    this.counts = counts;
    this.next = 0;
  }

  text(value: unknown): number {
    if (this.mode === 'replay') {
      const tokens = this.counts[this.next++] ?? 0;
      this.textTokens += tokens;
      return tokens;
    }
    // Past its limit a count is abandoned: the rest is not worth reading.
    if (this.exceeded) return 0;
    const text =
      typeof value === 'string' ? value : value === undefined || value === null ? '' : (JSON.stringify(value) ?? '');
    const known = this.cache?.keeps(text.length) ? this.cache.get(this.scopeKey, text) : undefined;
    // A known text costs no counting: it does not use up what may be counted at once.
    if (known === undefined) {
      this.chars += text.length;
      if (this.chars > this.maxChars) {
        this.exceeded = true;
        return 0;
      }
    }
    this.bytes += Buffer.byteLength(text);
    if (this.mode === 'collect') {
      this.collected.push(text);
      this.collectedKnown.push(known);
      return 0;
    }
    const tokens = known ?? this.countNew(text);
    this.textTokens += tokens;
    return tokens;
  }

  /** The collected strings' counts, counted at once where the cache did not know them. */
  countCollectedAtOnce(): number[] {
    return this.collected.map((text, index) => this.collectedKnown[index] ?? this.countNew(text));
  }

  /** The collected strings' counts, counted in slices (see `countTextTokensSliced`) where the cache did not know them. */
  async countCollectedSliced(slice: TimeSlice): Promise<number[]> {
    const counts: number[] = [];
    for (let index = 0; index < this.collected.length; index++) {
      const known = this.collectedKnown[index];
      if (known !== undefined) {
        counts.push(known);
        continue;
      }
      const text = this.collected[index]!;
      const bounded = this.budget.boundedPieces;
      const tokens = await countTextTokensSliced(text, this.encoding, this.budget, slice);
      this.keep(text, tokens, bounded);
      counts.push(tokens);
    }
    return counts;
  }

  /** Counts a text the cache did not know, and keeps its count if it is exact. */
  private countNew(text: string): number {
    const bounded = this.budget.boundedPieces;
    const tokens = countTextTokens(text, this.encoding, this.budget);
    this.keep(text, tokens, bounded);
    return tokens;
  }

  /** Offers a count to the cache unless some of the text was bounded while it was counted (`boundedBefore`: the budget's count before). */
  private keep(text: string, tokens: number, boundedBefore: number): void {
    if (this.cache && this.budget.boundedPieces === boundedBefore) this.cache.set(this.scopeKey, text, tokens);
  }

  /** Counts a part the adapter does not model: its JSON, and open-ended when it refers to content elsewhere. */
  part(value: unknown): number {
    if (this.mode !== 'replay' && refersToContent(value)) this.openEnded = true;
    return this.text(value);
  }

  /** Marks the request open-ended (see `openEnded`). */
  pullsContent(): void {
    this.openEnded = true;
  }

  image(): number {
    return this.options.imageTokens ?? imageTokenBound(this.model, this.exactTokenizer);
  }

  /** Model-specific counts (text approximated for models whose tokenizer is not public). */
  approximate(tokens: number): number {
    return this.exactTokenizer ? tokens : Math.ceil(tokens * this.factor);
  }
}
