// The mock provider's deterministic arithmetic: a simple token count of the prompt, a fixed reply cut to the output cap,
// and a vector per embedded input.
import { createHash } from 'node:crypto';

/** One token per run of letters/digits and one per other non-space character: simple, stable, explainable. */
export function countMockTokens(text: string): number {
  let count = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const wordChar = (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
    if (wordChar) {
      if (!inWord) count++;
      inWord = true;
    } else {
      inWord = false;
      if (code !== 32 && code !== 9 && code !== 10 && code !== 13) count++;
    }
  }
  return count;
}

/** Every string a prompt carries (message contents, text parts, system, instructions), depth-limited. */
function collectPromptText(value: unknown, out: string[] = [], depth = 0): string[] {
  if (depth > 8) return out;
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const item of value) collectPromptText(item, out, depth + 1);
  else if (typeof value === 'object' && value !== null) {
    const part = value as Record<string, unknown>;
    for (const field of ['content', 'text', 'input_text']) collectPromptText(part[field], out, depth + 1);
  }
  return out;
}

/** Input tokens of a prompt: its text, plus 3 per message and 3 to prime the reply (as chat formats do). */
export function countPromptTokens(parts: {
  messages?: unknown;
  system?: unknown;
  input?: unknown;
  instructions?: unknown;
}): number {
  const messages = Array.isArray(parts.messages)
    ? parts.messages.length
    : Array.isArray(parts.input)
      ? parts.input.length
      : 1;
  const texts = collectPromptText([parts.system, parts.instructions, parts.messages, parts.input]);
  return texts.reduce((sum, text) => sum + countMockTokens(text), 0) + 3 * messages + 3;
}

/**
 * Each word (with its leading space) is one token of o200k_base as well as one mock token, so the mock is an honest
 * upstream for OpenAI's models: an answer of `max_tokens` words is exactly `max_tokens` tokens, which the hard stop,
 * counting exactly for those models, never cuts ("tollgate" and "deterministically" are two tokens each).
 */
const REPLY_WORDS = (
  'This is the gateway mock provider answering consistently so that tests and demos know exactly how many ' +
  'tokens every reply uses and what it costs before any real provider is configured for the proxy'
).split(' ');

/** Default reply length in tokens (each reply word is one mock token). */
export const DEFAULT_REPLY_TOKENS = 24;

export interface MockReply {
  /** The reply, one element per token (word, with its leading space after the first). */
  pieces: string[];
  text: string;
  outputTokens: number;
  /** True when the output cap cut the reply. */
  truncated: boolean;
}

/** The reply: `replyTokens` words, cut to `maxTokens` when that is smaller. */
export function mockReply(replyTokens: number, maxTokens: number | undefined): MockReply {
  const outputTokens = Math.max(0, Math.min(replyTokens, maxTokens ?? replyTokens));
  const pieces: string[] = [];
  for (let i = 0; i < outputTokens; i++) {
    const word = REPLY_WORDS[i % REPLY_WORDS.length]!;
    pieces.push(i === 0 ? word : ` ${word}`);
  }
  return { pieces, text: pieces.join(''), outputTokens, truncated: outputTokens < replyTokens };
}

/** The mock's vector length when a request names no `dimensions` (text-embedding-3-small's and ada-002's). */
export const DEFAULT_EMBEDDING_DIMENSIONS = 1536;

/**
 * A deterministic unit vector of `dimensions` float32 values for one input (its text, or its token ids as JSON):
 * xorshift32 seeded from the input's SHA-256, so the same input always gets the same vector and different ones differ.
 */
export function mockEmbedding(input: string, dimensions: number): Float32Array {
  let state = createHash('sha256').update(input).digest().readUInt32LE(0) || 1;
  const vector = new Float32Array(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    const value = state / 0x1_0000_0000 - 0.5;
    vector[i] = value;
    norm += value * value;
  }
  const scale = 1 / Math.sqrt(norm);
  for (let i = 0; i < dimensions; i++) vector[i] = vector[i]! * scale;
  return vector;
}
