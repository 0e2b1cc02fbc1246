// What every adapter's usage reader shares: the reader contract and the output text counted when usage never comes.
import type { ProviderApi, TokenUsage } from '@tollgate/core';

/** Output text kept for counting when no usage arrives; beyond it only the byte count is kept. */
const MAX_KEPT_OUTPUT_CHARS = 1024 * 1024;

export interface ReadUsage {
  usage: TokenUsage;
  /** `provider` when the provider reported the whole usage, `counted` when output had to be counted. */
  source: 'provider' | 'counted';
}

/** Counts the tokens of output text (the meter passes its time-boxed tokenizer). */
export type OutputCounter = (text: string) => number;

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
 * Collects output text deltas up to a bound, and answers the hard stop's question (has the output
 * passed the grant?) cheaply: a running upper bound (exact counts for what was counted, UTF-8 bytes
 * for the rest: each token is at least one) rules it out while far below; the tokenizer runs only
 * once that bound passes.
 */
export class OutputText {
  private parts: string[] = [];
  private kept = 0;
  /** UTF-8 bytes beyond the bound: each is at most one token. */
  overflowBytes = 0;
  seen = false;
  /** UTF-8 bytes of all output so far. */
  bytes = 0;
  /** Kept parts counted so far, their tokens and bytes. */
  private countedParts = 0;
  private countedTokens = 0;
  private countedBytes = 0;
  /** `countedTokens` is the count of the whole kept text, not a sum of counts of pieces. */
  private countedWhole = true;

  add(text: unknown): void {
    if (typeof text !== 'string' || text.length === 0) return;
    this.seen = true;
    const bytes = Buffer.byteLength(text);
    this.bytes += bytes;
    if (this.kept + text.length <= MAX_KEPT_OUTPUT_CHARS) {
      this.parts.push(text);
      this.kept += text.length;
    } else {
      this.overflowBytes += bytes;
    }
  }

  /** An upper bound of the output's tokens, without running the tokenizer. */
  get tokenBound(): number {
    return this.countedTokens + this.bytes - this.countedBytes;
  }

  /**
   * Has the output passed `limit` tokens? Near the limit the parts not counted yet are counted
   * alone and added up; only when that sum passes the limit is the whole text counted, since a sum
   * of pieces runs ahead of the whole (an approximated count rounds every piece up).
   */
  passes(limit: number, countOutput: OutputCounter): boolean {
    if (this.tokenBound <= limit) return false;
    const parts = this.parts;
    if (this.countedParts < parts.length) {
      const fresh = parts.length - this.countedParts === 1 ? parts[this.countedParts]! : parts.slice(this.countedParts).join('');
      this.countedWhole = this.countedParts === 0;
      this.countedTokens += countOutput(fresh);
      this.countedParts = parts.length;
    }
    // Overflow bytes are counted as bytes: they were never kept.
    this.countedBytes = this.bytes - this.overflowBytes;
    if (this.countedTokens + this.overflowBytes <= limit) return false;
    return this.tokens(countOutput) > limit;
  }

  /** The output's tokens: the whole kept text counted (once per new text), plus the overflow bytes. */
  tokens(countOutput: OutputCounter): number {
    const parts = this.parts;
    if (!this.countedWhole || this.countedParts < parts.length) {
      this.countedTokens = parts.length > 0 ? countOutput(parts.join('')) : 0;
      this.countedParts = parts.length;
      this.countedBytes = this.bytes - this.overflowBytes;
      this.countedWhole = true;
    }
    return this.countedTokens + this.overflowBytes;
  }
}

/** No usage came: the output that passed, counted; the meter fills in the input from its estimate. */
export function countedOutput(output: OutputText, countOutput: OutputCounter): ReadUsage | undefined {
  if (!output.seen) return undefined;
  return { usage: { inputTokens: 0, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: output.tokens(countOutput), reasoningTokens: 0 }, source: 'counted' };
}

/** One SSE event as text: `event:` line when named, the JSON data, the blank line. */
export function sseEvent(data: unknown, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}
