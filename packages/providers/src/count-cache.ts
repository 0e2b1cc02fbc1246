// Token counts of texts sent again: a prompt that repeats is counted once, exactly as before.
import { LRUCache } from 'lru-cache';
import { TollgateError } from '@tollgate/core';
import type { EncodingName } from './tokenizer.js';

/** What an entry is charged beyond its text's and its scope key's characters: its bookkeeping, in characters' worth. */
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

/** A kept count's place: what lru-cache orders and evicts, found by its scope and text. */
interface KeptText {
  readonly scopeKey: string;
  readonly text: string;
}

/**
 * Exact token counts of texts a meter counted, per scope (the tenant) and encoding, kept from a text's second sighting
 * and bounded by characters (docs/performance.md, "The count cache").
 */
export class TokenCountCache {
  readonly #maxTextChars: number;
  /**
   * Per scope key (`scopeKey()`), its kept texts, found by their text: a lookup builds no key of
   * scope and text (that would copy the text on every call).
   */
  readonly #byScope = new Map<string, Map<string, KeptText>>();
  /** The counts, in order of use; an entry it drops leaves `#byScope` with it. */
  readonly #counts: LRUCache<KeptText, number>;
  /** lru-cache's per-call options, one object each, reused (docs/performance.md). */
  readonly #getOptions: LRUCache.GetOptions<KeptText, number, unknown> = { status: undefined };
  readonly #setOptions: LRUCache.SetOptions<KeptText, number, unknown> = { size: 0, status: undefined };
  readonly #seen = new Uint32Array(SEEN_SLOTS);

  constructor(maxChars: number = DEFAULT_COUNT_CACHE_CHARS) {
    if (!Number.isSafeInteger(maxChars) || maxChars <= 0) {
      throw new TollgateError(
        'ERR_TG_PROVIDERS_INVALID_OPTION',
        `TokenCountCache maxChars must be a positive integer; got ${JSON.stringify(maxChars)}`,
      );
    }
    this.#maxTextChars = Math.floor(maxChars / 8);
    this.#counts = new LRUCache<KeptText, number>({
      maxSize: maxChars,
      dispose: (_tokens, kept) => this.#forget(kept),
    });
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
    const kept = this.#byScope.get(scopeKey)?.get(text);
    if (kept === undefined) return undefined;
    this.#getOptions.status = undefined;
    return this.#counts.get(kept, this.#getOptions);
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
    let texts = this.#byScope.get(scopeKey);
    if (texts?.has(text)) return;
    // Charged for its text, its scope key (each entry holds its request's) and its bookkeeping.
    const size = scopeKey.length + text.length + ENTRY_OVERHEAD_CHARS;
    if (size > this.#counts.maxSize) return;
    if (texts === undefined) this.#byScope.set(scopeKey, (texts = new Map()));
    const kept: KeptText = { scopeKey, text };
    // Indexed before it is added: what the addition pushes out leaves its scope's texts non-empty.
    texts.set(text, kept);
    this.#setOptions.size = size;
    this.#setOptions.status = undefined;
    this.#counts.set(kept, tokens, this.#setOptions);
  }

  /** Texts kept. */
  get size(): number {
    return this.#counts.size;
  }

  clear(): void {
    this.#byScope.clear();
    this.#counts.clear();
    this.#seen.fill(0);
  }

  /** Takes a count lru-cache dropped out of its scope's texts. */
  #forget(kept: KeptText): void {
    const texts = this.#byScope.get(kept.scopeKey);
    if (texts?.get(kept.text) !== kept) return;
    texts.delete(kept.text);
    if (texts.size === 0) this.#byScope.delete(kept.scopeKey);
  }
}
