// The cache key of a provider call: who may share the answer, the API, the model after routing and the body in a normal form.
import { hash } from 'node:crypto';
import type { Identity } from '@tollgate/core';

/** Who shares cached answers: each tenant, each key, or everyone. */
export type CacheScope = 'tenant' | 'key' | 'global';

/**
 * Body fields that do not change the answer: who asked (`user`, `metadata`, `safety_identifier`),
 * how it is delivered (`stream`, `stream_options`) and routing hints for the provider's own cache
 * (`prompt_cache_key`). A JSON answer and a stream of the same request share one entry.
 */
const IGNORED_BODY_FIELDS: readonly string[] = [
  'user',
  'metadata',
  'safety_identifier',
  'stream',
  'stream_options',
  'prompt_cache_key',
];

const IGNORED = new Set(IGNORED_BODY_FIELDS);

/** Objects with more keys than this are sorted by the built-in sort: an insertion sort is quadratic. */
const INSERTION_SORT_MAX_KEYS = 16;

/**
 * Sorts `keys` from `start` to `end` in place, in the order of `Array.prototype.sort()` (by UTF-16
 * code units). A body's objects have a few keys each, and the built-in sort allocates for every
 * call: an insertion sort for those. An object with many keys (a client may send one with tens of
 * thousands) goes to the built-in sort, so no body costs quadratic time.
 */
function sortKeys(keys: string[], start: number, end: number): void {
  if (end - start > INSERTION_SORT_MAX_KEYS) {
    const sorted = keys.slice(start, end).sort();
    for (let index = start; index < end; index++) keys[index] = sorted[index - start]!;
    return;
  }
  for (let index = start + 1; index < end; index++) {
    const key = keys[index]!;
    let at = index - 1;
    for (; at >= start && keys[at]! > key; at--) keys[at + 1] = keys[at]!;
    keys[at + 1] = key;
  }
}

/** The body as JSON with sorted keys and the fields that do not change the answer left out. */
export function normaliseBody(body: unknown): string {
  keyText.start();
  keyText.value(body, true);
  return keyText.finish((bytes) => bytes.toString('utf8'));
}

/**
 * Whose answers a request may share under `scope`, or undefined when it may share none (no
 * identity: an unauthenticated caller never reads another's answer). A tenant scope without a
 * tenant falls back to the key.
 */
export function scopeOf(
  scope: CacheScope,
  identity: Pick<Identity, 'keyId' | 'tenantId'> | undefined,
): string | undefined {
  if (scope === 'global') return 'global';
  if (!identity) return undefined;
  if (scope === 'tenant' && identity.tenantId) return `tenant:${identity.tenantId}`;
  return identity.keyId ? `key:${identity.keyId}` : undefined;
}

/** The entry's key: SHA-256 over the scope, the API, the model and the normal body, as hex. */
export function cacheKey(scope: string, api: string, model: string, body: unknown): string {
  keyText.start();
  keyText.text(scope);
  keyText.newline();
  keyText.text(api);
  keyText.newline();
  keyText.text(model);
  keyText.newline();
  keyText.value(body, true);
  return keyText.finish(sha256Hex);
}

const sha256Hex = (bytes: Buffer): string => hash('sha256', bytes, 'hex');

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** Strings up to this length are copied character by character; longer ones go through JSON.stringify (native, one pass). */
const SHORT_STRING = 64;
const INITIAL_BYTES = 16 * 1024;
/** A buffer grown past this for one large body is let go once its key is made, so it does not stay pinned. */
const KEPT_BYTES = 256 * 1024;
const KEPT_KEYS = 1024;

/**
 * The key's text (`scope\napi\nmodel\n` and the normal body: JSON with sorted keys) written as
 * UTF-8 into one buffer the process reuses, and hashed from there: the same bytes as encoding the
 * text as a string, without the string (docs/performance.md). Not reentrant: each use runs from
 * `start()` to `finish()` synchronously.
 */
class KeyText {
  private bytes = Buffer.allocUnsafe(INITIAL_BYTES);
  private at = 0;
  private readonly keys: string[] = [];
  private keyCount = 0;

  start(): void {
    this.at = 0;
    this.keyCount = 0;
  }

  finish<T>(read: (bytes: Buffer) => T): T {
    const result = read(this.bytes.subarray(0, this.at));
    if (this.bytes.length > KEPT_BYTES) this.bytes = Buffer.allocUnsafe(INITIAL_BYTES);
    if (this.keys.length > KEPT_KEYS) this.keys.length = 0;
    return result;
  }

  newline(): void {
    this.reserve(1);
    this.bytes[this.at++] = 0x0a;
  }

  /** `text` as it is, as UTF-8. */
  text(text: string): void {
    if (text.length <= SHORT_STRING && this.ascii(text)) return;
    this.reserve(3 * text.length);
    this.at += this.bytes.write(text, this.at, 'utf8');
  }

  /** `value` as JSON, object keys sorted; at the top level the fields that do not change the answer left out. */
  value(value: unknown, topLevel: boolean): void {
    if (typeof value === 'string') {
      this.jsonString(value);
      return;
    }
    if (value === null || typeof value !== 'object') {
      // undefined is what JSON.stringify drops from objects (in an array, null); a body parsed from JSON holds none.
      if (typeof value === 'number') this.text(Number.isFinite(value) ? String(value) : 'null');
      else this.text(value === undefined ? 'null' : String(JSON.stringify(value)));
      return;
    }
    if (Array.isArray(value)) {
      this.char(0x5b);
      for (let index = 0; index < value.length; index++) {
        if (index > 0) this.char(0x2c);
        this.value(value[index], false);
      }
      this.char(0x5d);
      return;
    }
    // The object's own keys, sorted, in a segment of one array the writer reuses; nested objects use the segments after it.
    const base = this.keyCount;
    const keys = this.keys;
    for (const key in value) if (Object.hasOwn(value, key)) keys[this.keyCount++] = key;
    const end = this.keyCount;
    if (end - base > 1) sortKeys(keys, base, end);
    this.char(0x7b);
    let first = true;
    for (let index = base; index < end; index++) {
      const key = keys[index]!;
      const field = (value as Record<string, unknown>)[key];
      if (field === undefined || (topLevel && IGNORED.has(key))) continue;
      if (!first) this.char(0x2c);
      first = false;
      this.jsonString(key);
      this.char(0x3a);
      this.value(field, false);
    }
    this.keyCount = base;
    this.char(0x7d);
  }

  private jsonString(text: string): void {
    if (text.length <= SHORT_STRING) {
      // Quoted as it is when nothing in it needs escaping (printable ASCII without quote or backslash).
      const start = this.at;
      this.char(QUOTE);
      if (this.ascii(text, true)) {
        this.char(QUOTE);
        return;
      }
      this.at = start;
    }
    this.text(JSON.stringify(text));
  }

  /**
   * Copies `text` when every character is ASCII (for `inJson`, printable, with no quote or backslash);
   * else writes nothing.
   */
  private ascii(text: string, inJson = false): boolean {
    this.reserve(text.length);
    const bytes = this.bytes;
    let at = this.at;
    for (let index = 0; index < text.length; index++) {
      const code = text.charCodeAt(index);
      if (code > 0x7e || (inJson && (code < 0x20 || code === QUOTE || code === BACKSLASH))) return false;
      bytes[at++] = code;
    }
    this.at = at;
    return true;
  }

  private char(code: number): void {
    this.reserve(1);
    this.bytes[this.at++] = code;
  }

  private reserve(more: number): void {
    if (this.at + more <= this.bytes.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, this.at + more));
    this.bytes.copy(bigger, 0, 0, this.at);
    this.bytes = bigger;
  }
}

const keyText = new KeyText();
