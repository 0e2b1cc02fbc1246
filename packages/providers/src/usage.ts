// What every adapter's usage reader shares: the reader contract and the output text counted when usage never comes.
import type { ProviderApi, TokenUsage } from '@tollgate/core';
import { isObject } from './json.js';
import { lastPieceStart } from './tokenizer.js';

/** Output text kept for counting when no usage arrives; beyond it only the byte count is kept. */
const MAX_KEPT_OUTPUT_CHARS = 1024 * 1024;

export interface ReadUsage {
  usage: TokenUsage;
  /** `provider` when the provider reported the whole usage, `counted` when output had to be counted. */
  source: 'provider' | 'counted';
}

/**
 * Counts the tokens of output text (the meter passes its time-boxed tokenizer). `additive`: the count of a text is the
 * sum of the counts of its pieces wherever it is cut where a piece starts (an exact BPE count, a count of bytes; not
 * a count rounded up per text), so that a growing output is counted once rather than again from its start.
 */
export interface OutputCounter {
  (text: string): number;
  readonly additive?: boolean;
  /** Where the last piece of a text starts for this counter's encoding (default: `lastPieceStart`'s, o200k_base). */
  readonly pieceStart?: (text: string) => number;
}

/** What a stream cut at its grant reports in its ending. */
export interface StreamEndingUsage {
  inputTokens: number;
  outputTokens: number;
}

export interface UsageReader {
  readonly api: ProviderApi;
  /** The model the provider reported, if any. */
  model: string | undefined;
  /** The output that passed, for counting and for the hard stop. */
  readonly output: OutputText;
  /** Feeds one SSE event; returns true when it is the usage-only chunk the meter added and must strip. */
  onEvent(event: string, data: string): boolean;
  /**
   * Set by `onEvent`: where the event it was just fed holds the answer's final usage, as the path of that usage
   * object in the event's data (OpenAI chat's usage chunk `usage`, Responses' terminal event `response.usage`,
   * each of Anthropic's `message_delta` `usage` (cumulative: the last is the answer's), Gemini's finishing chunk
   * `usageMetadata`); undefined for any other event.
   * The meter writes the call's cost there (`cost_usd`).
   */
  finalUsageAt: readonly string[] | undefined;
  /** Feeds a whole JSON response body. */
  onJson(body: unknown): void;
  /** Feeds raw output that could not be parsed (a cut JSON body): counted as text. */
  onUnparsed(text: string): void;
  /**
   * The usage: the provider's when it came complete; otherwise the provider's partial numbers
   * with output counted from the text that passed; undefined when nothing at all was seen.
   */
  result(countOutput: OutputCounter): ReadUsage | undefined;
  /**
   * The events that end this stream, in the API's own way, when it is cut because its output
   * passed the grant: what an SDK reads as an answer stopped at its output cap.
   */
  ending(usage: StreamEndingUsage): string;
}

/**
 * A running count of the output by one counter, kept as the output grows: the parts counted so far, their tokens
 * and bytes. Far below its limit it answers from a bound without counting (see `OutputText.passes`).
 *
 * The text is counted once up to the last place a piece starts (`lastPieceStart`: the count of a text is the count
 * before such a place plus the count from it), and what follows (`tail`, about a word) again as the output grows, so
 * `tokens` stays the count of the whole text without counting it again. A tail that finds no such place for
 * MAX_TAIL_CHARS (text without spaces or punctuation) is counted as a piece of its own: the sum may then run ahead of
 * the whole (merges across pieces), which `whole` says.
 */
class RunningCount {
  parts = 0;
  /** Tokens of the text up to where `tail` starts, and of `tail`. */
  prefixTokens = 0;
  tailTokens = 0;
  tail = '';
  bytes = 0;
  /** `tokens` is the count of the whole kept text, not a sum of counts of pieces. */
  whole = true;
  /** What was counted ends where a piece starts (or nothing was): text added after it adds up exactly. */
  aligned = true;

  get tokens(): number {
    return this.prefixTokens + this.tailTokens;
  }

  /** Counts `fresh` (the text after what was counted) on, by `count`. */
  add(fresh: string, count: OutputCounter): void {
    if (!count.additive) {
      // A sum of pieces each rounded up runs ahead of the whole: only a first count is the whole's.
      this.whole = this.aligned;
      this.prefixTokens += count(fresh);
      this.aligned = false;
      return;
    }
    if (!this.aligned) this.whole = false;
    const text = this.tail + fresh;
    const cut = (count.pieceStart ?? lastPieceStart)(text);
    if (cut > 0) this.prefixTokens += count(text.slice(0, cut));
    this.tail = cut > 0 ? text.slice(cut) : text;
    if (this.tail.length > MAX_TAIL_CHARS) {
      this.prefixTokens += count(this.tail);
      this.tail = '';
      this.whole = false;
    }
    this.tailTokens = this.tail.length > 0 ? count(this.tail) : 0;
  }

  /** Nothing counted yet: the text is counted again from its start. */
  reset(): void {
    this.parts = 0;
    this.prefixTokens = 0;
    this.tailTokens = 0;
    this.tail = '';
    this.bytes = 0;
    this.whole = true;
    this.aligned = true;
  }

  /** The count of the whole `text`, from scratch. */
  recount(text: string, count: OutputCounter): void {
    this.prefixTokens = 0;
    this.tail = '';
    this.tailTokens = 0;
    this.whole = true;
    this.aligned = true;
    if (count.additive) {
      this.add(text, count);
      if (this.whole) return;
    }
    // Cut where counts do not add up (a text longer than the tail allows), or a counter that does not add up at all:
    // the whole, counted at once.
    this.prefixTokens = count(text);
    this.tail = '';
    this.tailTokens = 0;
    this.whole = true;
    this.aligned = false;
  }
}

/** The most characters of the output after its last piece start that are counted again as it grows (see RunningCount). */
const MAX_TAIL_CHARS = 256;

/**
 * Collects output text deltas up to a bound, and answers the hard stop's and the hold's questions (has the output
 * passed so many tokens?) cheaply: a running upper bound (counts for what was counted, UTF-8 bytes for the rest: each
 * token is at least one) rules it out while far below; a counter runs only once that bound passes, on the text not
 * counted yet. The stop and the hold each keep their own running count (`stop`, `hold`).
 */
export class OutputText {
  private parts: string[] = [];
  private kept = 0;
  /** UTF-8 bytes beyond the bound: each is at most one token. */
  overflowBytes = 0;
  seen = false;
  /** UTF-8 bytes of all output so far. */
  bytes = 0;
  /** The hard stop's running count (a lower bound's, in its units). */
  readonly stop = new RunningCount();
  /** The hold's running count (an upper bound's). */
  readonly hold = new RunningCount();
  /** The last whole count `tokens()` made, and what it covered. */
  private whole: { counter: OutputCounter; parts: number; tokens: number } | undefined;
  /** Where the output stood before the event read last (`startEvent`): what `withdrawEvent` goes back to. */
  private eventParts = 0;
  private eventKept = 0;
  private eventBytes = 0;
  private eventOverflowBytes = 0;

  /** Told of each text as it is added (a streamed delta, a part of a JSON answer): guardrails read the answer here. */
  onText: ((text: string) => void) | undefined = undefined;

  /** An event is about to be read: its text is the part a cut before it takes back (`withdrawEvent`). */
  startEvent(): void {
    this.eventParts = this.parts.length;
    this.eventKept = this.kept;
    this.eventBytes = this.bytes;
    this.eventOverflowBytes = this.overflowBytes;
  }

  /**
   * Forgets the text of the event read last (since `startEvent`): it was withheld from the client at a cut, so it is
   * neither billed nor told in the ending. The running counts start again from the text that stays.
   */
  withdrawEvent(): void {
    this.parts.length = this.eventParts;
    this.kept = this.eventKept;
    this.bytes = this.eventBytes;
    this.overflowBytes = this.eventOverflowBytes;
    this.seen = this.bytes > 0;
    this.whole = undefined;
    this.stop.reset();
    this.hold.reset();
  }

  add(text: unknown): void {
    if (typeof text !== 'string' || text.length === 0) return;
    this.seen = true;
    this.onText?.(text);
    const bytes = Buffer.byteLength(text);
    this.bytes += bytes;
    if (this.kept + text.length <= MAX_KEPT_OUTPUT_CHARS) {
      this.parts.push(text);
      this.kept += text.length;
    } else {
      this.overflowBytes += bytes;
    }
  }

  /** An upper bound of the output's tokens in the stop counter's units, without running the tokenizer. */
  get tokenBound(): number {
    return this.boundOf(this.stop);
  }

  /** An upper bound of `running`'s count of the output (bytes stand for what it did not count yet). */
  boundOf(running: RunningCount): number {
    return running.tokens + this.bytes - running.bytes;
  }

  /** The output's count so far by `count` in `running` (counting only the parts it had not counted). */
  countOf(count: OutputCounter, running: RunningCount = this.hold): number {
    this.catchUp(count, running);
    return running.tokens + this.overflowBytes;
  }

  /**
   * Has the output passed `limit` tokens, counted by `count` (kept in `running`: the stop's by default)? Near the
   * limit the text not counted yet is counted on (see RunningCount: the sum is the whole's count); only where it
   * could not be cut where counts add up, and the sum passes the limit, is the whole text counted again, since a sum
   * of pieces may run a little ahead of the whole (merges across pieces). Give it a counter without rounding (a lower
   * bound's raw count): rounding every piece up would run the sum far ahead.
   */
  passes(limit: number, count: OutputCounter, running: RunningCount = this.stop): boolean {
    if (this.boundOf(running) <= limit) return false;
    this.catchUp(count, running);
    if (running.tokens + this.overflowBytes <= limit) return false;
    if (!running.whole) running.recount(this.parts.join(''), count);
    return running.tokens + this.overflowBytes > limit;
  }

  /** Counts the parts `running` did not count yet, adding them to its sum. */
  private catchUp(count: OutputCounter, running: RunningCount): void {
    const parts = this.parts;
    if (running.parts < parts.length) {
      running.add(
        parts.length - running.parts === 1 ? parts[running.parts]! : parts.slice(running.parts).join(''),
        count,
      );
      running.parts = parts.length;
    }
    // Overflow bytes are counted as bytes: they were never kept.
    running.bytes = this.bytes - this.overflowBytes;
  }

  /** The whole output text, when all of it was kept (undefined past MAX_KEPT_OUTPUT_CHARS: only its bytes were). */
  text(): string | undefined {
    return this.overflowBytes === 0 ? this.parts.join('') : undefined;
  }

  /** The output's tokens by `countOutput`: the whole kept text counted (again only when it grew), plus the overflow bytes. */
  tokens(countOutput: OutputCounter): number {
    const parts = this.parts;
    if (this.whole?.counter !== countOutput || this.whole.parts !== parts.length) {
      this.whole = {
        counter: countOutput,
        parts: parts.length,
        tokens: parts.length > 0 ? countOutput(parts.join('')) : 0,
      };
    }
    return this.whole.tokens + this.overflowBytes;
  }
}

/**
 * A service tier as a request or an answer names it (`service_tier`), or another word an answer labels its usage with
 * (Anthropic's `speed`, `inference_geo`, an iteration's `type`), or undefined: a short lower-case word, so that a
 * client cannot put megabytes or odd text into a usage record through it.
 */
export function serviceTierOf(value: unknown): string | undefined {
  return typeof value === 'string' && /^[a-z][a-z0-9_-]{0,31}$/.test(value) ? value : undefined;
}

/** The usage read, with the tier the answer said served it (the record is priced at it). */
export function withServiceTier(read: ReadUsage | undefined, tier: string | undefined): ReadUsage | undefined {
  if (read === undefined || tier === undefined) return read;
  return { usage: { ...read.usage, serviceTier: tier }, source: read.source };
}

/** No usage came: the output that passed, counted; the meter fills in the input from its estimate. */
export function countedOutput(output: OutputText, countOutput: OutputCounter): ReadUsage | undefined {
  if (!output.seen) return undefined;
  return {
    usage: {
      inputTokens: 0,
      cachedInputTokens: 0,
      cacheWriteTokens: 0,
      outputTokens: output.tokens(countOutput),
      reasoningTokens: 0,
    },
    source: 'counted',
  };
}

/** One SSE event as text: `event:` line when named, the JSON data, the blank line. */
export function sseEvent(data: unknown, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

/** The JSON text a cost is written as in place of this mark: a number, exact, never in exponent form. */
const COST_MARK = '\u0000tollgate:cost_usd';
const COST_MARK_JSON = JSON.stringify(COST_MARK);

/**
 * An event's data with `cost_usd` (the exact decimal `costUsd`, as a JSON number) in the usage object at `path`;
 * undefined when the data holds no object there. The rest of the data is kept as parsed (its member order too).
 */
export function withCostUsd(data: string, path: readonly string[], costUsd: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return undefined;
  }
  let usage: unknown = parsed;
  for (const member of path) usage = isObject(usage) ? usage[member] : undefined;
  if (!isObject(usage)) return undefined;
  usage.cost_usd = COST_MARK;
  const text = JSON.stringify(parsed);
  const at = text.indexOf(COST_MARK_JSON);
  // The mark once, where it was put: a text of the answer that spelled it too would leave the place unsure.
  if (at !== text.lastIndexOf(COST_MARK_JSON)) return undefined;
  return text.slice(0, at) + costUsd + text.slice(at + COST_MARK_JSON.length);
}
