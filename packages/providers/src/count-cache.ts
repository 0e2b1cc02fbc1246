// Token counts of texts sent again: a prompt that repeats is counted once, exactly as before.
import { TollgateError } from '@tollgate/core';
import type { EncodingName } from './tokenizer.js';

/** What an entry is charged beyond its characters: a Map entry and a string header, in characters' worth. */
const ENTRY_OVERHEAD_CHARS = 64;

/** The default size: about 8 MB of text kept at most. */
export const DEFAULT_COUNT_CACHE_CHARS = 4_000_000;

/** Slots of the table of texts seen once (a 32-bit mark each: 256 KB, made once). */
const SEEN_SLOTS = 1 << 16;

/** Characters a text's mark is taken from at each end: a mark costs the same for a long text as for a short one. */
const MARKED_CHARS = 128;

/**
 * A 32-bit mark of a text in a scope (FNV-1a over the scope key, the text's length and up to
 * MARKED_CHARS characters at each end), never 0, which marks an empty slot. Two texts may share a
 * mark: the table only decides what is kept. The scope is in it, so that one tenant's texts never
 * make another's kept early (a faster second request would tell that someone sent the text).
 */
function markOf(scopeKey: string, text: string): number {
  let mark = 0x811c9dc5;
  for (let i = 0; i < scopeKey.length; i++) mark = Math.imul(mark ^ scopeKey.charCodeAt(i), 0x01000193);
  mark ^= text.length;
  const head = Math.min(text.length, MARKED_CHARS);
  for (let i = 0; i < head; i++) mark = Math.imul(mark ^ text.charCodeAt(i), 0x01000193);
  for (let i = Math.max(head, text.length - MARKED_CHARS); i < text.length; i++)
    mark = Math.imul(mark ^ text.charCodeAt(i), 0x01000193);
  return mark === 0 ? 1 : mark >>> 0;
}

/**
 * Exact token counts of texts a meter counted, per scope (the tenant) and encoding. Requests repeat
 * most of their text: the same system prompt on every call, the whole conversation resent each
 * turn, the same tool definitions. Each such text is counted and then found by a lookup.
 *
 * A text is kept from its second sighting: its first only leaves a mark in a fixed table (no
 * copy of the text, no memory that grows), so a text that never comes back (most users'
 * questions) costs a hash, not a place in the cache. Two texts with one mark make one of them
 * kept early, never a wrong count.
 *
 * Bounded by characters: two generations of at most half of `maxChars` each. A kept text goes
 * into the current one; when it is full it becomes the previous one and the one before is
 * dropped. A text found in the previous generation moves to the current one, so a text in use
 * stays while texts not sent again age out. A text longer than an eighth of `maxChars` is not kept.
 *
 * Only exact counts are kept (never a byte bound given when the time budget ran out), and a count
 * depends on nothing but the text and the encoding, so a hit is the count the tokenizer would give.
 * Scopes keep tenants apart: no tenant can tell from a faster answer that another one sent a text.
 */
export class TokenCountCache {
  readonly #generationChars: number;
  readonly #maxTextChars: number;
  /** Per scope key (`scopeKey()`), its texts' counts. */
  #current = new Map<string, Map<string, number>>();
  #previous = new Map<string, Map<string, number>>();
  #currentChars = 0;
  readonly #seen = new Uint32Array(SEEN_SLOTS);

  constructor(maxChars: number = DEFAULT_COUNT_CACHE_CHARS) {
    if (!Number.isSafeInteger(maxChars) || maxChars <= 0) {
      throw new TollgateError(
        'ERR_TG_PROVIDERS_INVALID_OPTION',
        `TokenCountCache maxChars must be a positive integer; got ${JSON.stringify(maxChars)}`,
      );
    }
    this.#generationChars = Math.ceil(maxChars / 2);
    this.#maxTextChars = Math.floor(maxChars / 8);
  }

  /** What the counts of `scope` in `encoding` are kept under: made once per request, passed to `get` and `set`. */
  static scopeKey(scope: string, encoding: EncodingName): string {
    return `${encoding}\u0000${scope}`;
  }

  /** True when a text of `chars` characters may be kept. */
  keeps(chars: number): boolean {
    return chars > 0 && chars <= this.#maxTextChars;
  }

  get(scopeKey: string, text: string): number | undefined {
    const found = this.#current.get(scopeKey)?.get(text);
    if (found !== undefined) return found;
    const aged = this.#previous.get(scopeKey);
    const tokens = aged?.get(text);
    if (tokens !== undefined) {
      aged!.delete(text);
      this.#add(scopeKey, text, tokens);
    }
    return tokens;
  }

  /** Keeps a text's exact count if the text was seen before; otherwise marks it as seen. */
  set(scopeKey: string, text: string, tokens: number): void {
    if (!this.keeps(text.length)) return;
    const mark = markOf(scopeKey, text);
    const slot = mark & (SEEN_SLOTS - 1);
    if (this.#seen[slot] !== mark) {
      this.#seen[slot] = mark;
      return;
    }
    if (this.#current.get(scopeKey)?.has(text)) return;
    this.#previous.get(scopeKey)?.delete(text);
    this.#add(scopeKey, text, tokens);
  }

  /** Texts kept, in both generations. */
  get size(): number {
    let size = 0;
    for (const texts of this.#current.values()) size += texts.size;
    for (const texts of this.#previous.values()) size += texts.size;
    return size;
  }

  clear(): void {
    this.#current.clear();
    this.#previous.clear();
    this.#currentChars = 0;
    this.#seen.fill(0);
  }

  #add(scopeKey: string, text: string, tokens: number): void {
    const charged = text.length + ENTRY_OVERHEAD_CHARS;
    if (this.#currentChars + charged > this.#generationChars) {
      this.#previous = this.#current;
      this.#current = new Map();
      this.#currentChars = 0;
    }
    let texts = this.#current.get(scopeKey);
    if (!texts) {
      texts = new Map();
      this.#current.set(scopeKey, texts);
      this.#currentChars += scopeKey.length + ENTRY_OVERHEAD_CHARS;
    }
    texts.set(text, tokens);
    this.#currentChars += charged;
  }
}
