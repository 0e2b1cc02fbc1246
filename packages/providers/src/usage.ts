// What every adapter's usage reader shares: the reader contract and the output text counted when usage never comes.
import type { ProviderApi, TokenUsage } from '@tollgate/core';
import { isObject } from './json.js';

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
 * Collects output text deltas up to a bound, and answers the hard stop's question (has the output
 * passed the grant?) cheaply: a running upper bound (exact counts for what was counted, UTF-8 bytes
 * for the rest: each token is at least one) rules it out while far below; the tokenizer runs only
 * once that bound passes, on the text not counted yet.
 */
export class OutputText {
  private parts: string[] = [];
  private kept = 0;
  /** UTF-8 bytes beyond the bound: each is at most one token. */
  overflowBytes = 0;
  seen = false;
  /** UTF-8 bytes of all output so far. */
  bytes = 0;
  /** The hard stop's running count: kept parts counted, their tokens (in the stop counter's units) and bytes. */
  private stopParts = 0;
  private stopTokens = 0;
  private stopBytes = 0;
  /** `stopTokens` is the count of the whole kept text, not a sum of counts of pieces. */
  private stopWhole = true;
  /** The last whole count `tokens()` made, and what it covered. */
  private whole: { counter: OutputCounter; parts: number; tokens: number } | undefined;

  /** Told of each text as it is added (a streamed delta, a part of a JSON answer): guardrails read the answer here. */
  onText: ((text: string) => void) | undefined = undefined;

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

  /** An upper bound of the output's tokens (in the stop counter's units), without running the tokenizer. */
  get tokenBound(): number {
    return this.stopTokens + this.bytes - this.stopBytes;
  }

  /**
   * Has the output passed `limit` tokens, counted by `count`? Near the limit the parts not counted
   * yet are counted alone and added up; only when that sum passes the limit is the whole text
   * counted, since a sum of pieces may run a little ahead of the whole (merges across pieces).
   * Give it a counter without rounding (an approximation's raw count, the limit divided by its
   * factor): rounding every piece up would run the sum far ahead.
   */
  passes(limit: number, count: OutputCounter): boolean {
    if (this.tokenBound <= limit) return false;
    const parts = this.parts;
    if (this.stopParts < parts.length) {
      const fresh = parts.length - this.stopParts === 1 ? parts[this.stopParts]! : parts.slice(this.stopParts).join('');
      this.stopWhole = this.stopParts === 0;
      this.stopTokens += count(fresh);
      this.stopParts = parts.length;
    }
    // Overflow bytes are counted as bytes: they were never kept.
    this.stopBytes = this.bytes - this.overflowBytes;
    if (this.stopTokens + this.overflowBytes <= limit) return false;
    if (!this.stopWhole) {
      this.stopTokens = count(parts.join(''));
      this.stopWhole = true;
    }
    return this.stopTokens + this.overflowBytes > limit;
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
