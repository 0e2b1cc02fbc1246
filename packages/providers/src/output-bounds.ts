// Bounds of a provider's output token count where its tokenizer is not ours: one that never under-states it, one that never over-states it.
import type { Provider } from '@tollgate/core';
import { CountBudget, countTextTokens } from './tokenizer.js';
import type { OutputCounter } from './usage.js';

/*
 * The hold a stream runs under follows a count that cannot under-state its output (`upperOutputTokens`), and the
 * hard stop cuts only on a count that cannot over-state it (`lowerOutputTokens`). Both are measured in bench §3b
 * against the Claude 2, Gemma (Gemini) and Llama 3 vocabularies on prose, code, every script and pathological text;
 * docs/architecture.md ("What a stream can spend") states the guarantee they carry.
 */

/**
 * The longest token, in UTF-8 bytes, of the tokenizer of each provider kind (read from every token of the published
 * vocabulary: Claude 2's holds a run of 1,024 spaces, Gemma's 16 "…"): n bytes of its output are at least
 * n / this many tokens, whatever the text. A provider not listed (self-hosted and the rest) gets the largest known.
 */
const MAX_TOKEN_BYTES_OF_PROVIDER: Readonly<Partial<Record<Provider, number>>> = { google: 48 };
/** The longest token of any vocabulary measured (Claude 2's): the bound for a provider whose tokenizer is unknown. */
const MAX_KNOWN_TOKEN_BYTES = 1024;

/** The longest token of the provider's kind of tokenizer, in bytes. */
export function maxTokenBytesOf(provider: Provider | undefined): number {
  return (provider === undefined ? undefined : MAX_TOKEN_BYTES_OF_PROVIDER[provider]) ?? MAX_KNOWN_TOKEN_BYTES;
}

/**
 * A count that never over-states the provider's: the text's UTF-8 bytes over the longest token (unrounded, so that
 * counts of pieces add up to the count of the whole). Provable: every token covers at most that many bytes.
 */
export function lowerOutputTokens(maxTokenBytes: number): OutputCounter {
  return Object.assign((text: string) => Buffer.byteLength(text, 'utf8') / maxTokenBytes, { additive: true });
}

/**
 * o200k_base's count times this covers ASCII prose, code, punctuation, hex and base64 in every kind measured (code:
 * Claude 2 gives 1.23x, hex without spaces Gemma 1.55x, where its digits term adds the rest).
 */
const O200K_FACTOR = 1.3;
/** A run of one character costs Gemma a token per 16 bytes at most, where o200k_base takes up to 128. */
const RUN_BYTES_PER_TOKEN = 8;
const MIN_RUN = 8;

/** What o200k_base does not see: a token per digit (Gemma splits digits), per non-ASCII byte, per 8 of a long run. */
function scriptAllowance(text: string): number {
  let digits = 0;
  let nonAsciiBytes = 0;
  let runs = 0;
  let run = 1;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x30 && code <= 0x39) digits++;
    // UTF-16 units past ASCII: at most 3 UTF-8 bytes each (a surrogate pair's 4 bytes over its 2 units).
    else if (code >= 0x80) nonAsciiBytes += code < 0x800 ? 2 : code >= 0xd800 && code <= 0xdfff ? 2 : 3;
    if (i > 0 && code === text.charCodeAt(i - 1)) run++;
    else {
      if (run >= MIN_RUN) runs += Math.ceil(run / RUN_BYTES_PER_TOKEN);
      run = 1;
    }
  }
  if (run >= MIN_RUN) runs += Math.ceil(run / RUN_BYTES_PER_TOKEN);
  return digits + nonAsciiBytes + runs;
}

/**
 * A count that never under-states the provider's for text its kind of tokenizer counts (see bench §3b): the
 * o200k_base count x 1.3, plus a token per digit, per byte past ASCII and per 8 characters of a long run, and never
 * more than the text's UTF-8 bytes (each token covers at least one byte: provable for every byte-level BPE and
 * SentencePiece with byte fallback). Counted within `countMs` (text left over counts as its bytes).
 */
export function upperOutputTokens(countMs: number): (text: string) => number {
  return (text) => {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes === 0) return 0;
    const o200k = countTextTokens(text, 'o200k_base', new CountBudget(countMs));
    return Math.min(bytes, Math.ceil(o200k * O200K_FACTOR) + scriptAllowance(text));
  };
}
