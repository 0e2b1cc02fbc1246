// The cache's work for one request: what its lookup found, the answer kept as the route writes it, and the stored
// entry's form (`j\n<json>` or `s\n<event stream>`) turned into the answer the client asked for.
import type { Response } from 'express';
import { contextOf } from '@tollgate/core';
import type { ResponseReader } from '@tollgate/core/provider-call';
import { jsonToStream, streamToJson, type CachedApi } from './answer-forms.js';

/** A stored answer to send: text, or the memory store's own bytes. */
export type Answer = string | Buffer;

/** The lookup found an answer, and already has it. */
export const isAnswer = (found: CacheRequest['found'] | undefined): found is Answer =>
  typeof found === 'string' || found instanceof Uint8Array;

/** The client asked not to be served from the cache (`no-cache`, `no-store`). */
export const NOT_LOOKED_UP = Symbol('not looked up');

/** Entries are `j\n<json>` or `s\n<event stream>`: the answer as the provider sent it, marked with its form. */
export const JSON_ENTRY = 'j\n';
export const STREAM_ENTRY = 's\n';
export const JSON_MARK = 0x6a;
export const STREAM_MARK = 0x73;
const NEWLINE = 0x0a;

/**
 * The cache's work for one request, in one object: what the lookup found (and the key it made),
 * then, on a miss, the answer as it is written, until the meter settles the request. Chunks are
 * kept as they were handed to write() (not copied: a chunk handed to write() is not changed
 * afterwards); text stays text until it is stored.
 */
export class CacheRequest implements ResponseReader {
  /** Served or armed already: the lookup has done its work. */
  answered = false;
  /** Where and how long a miss's answer is stored, and in which form it was asked for (set by `keepFor`). */
  storeKey = '';
  lifetimeMs = 0;
  streamed = false;
  tooLarge = false;
  /** The first chunk, and the others (most answers are written in one). */
  private first: string | Uint8Array | undefined = undefined;
  private rest: (string | Uint8Array)[] | undefined = undefined;
  /** UTF-8 bytes of the chunks counted exactly. */
  private bytes = 0;
  /** UTF-16 units of the text chunks not counted exactly: each is one to three bytes in UTF-8. */
  private units = 0;
  private exact = false;

  constructor(
    /** The response cache that looked the request up (its config). */
    readonly owner: { readonly maxEntryBytes: number },
    readonly key: string,
    readonly api: CachedApi,
    readonly scopeId: string,
    /** The model and output cap the key was made with: the budget may change them before the call. */
    readonly model: string,
    readonly cap: number | undefined,
    /**
     * The stored answer, already in the form the client asked for, or undefined: at once from a
     * memory store (as the bytes it keeps), later from Redis.
     */
    readonly found: Answer | undefined | Promise<Answer | undefined> | typeof NOT_LOOKED_UP,
    /** The client's `no-store`: neither served nor stored. */
    readonly bypass: boolean,
  ) {}

  keepFor(storeKey: string, lifetimeMs: number, streamed: boolean): void {
    this.storeKey = storeKey;
    this.lifetimeMs = lifetimeMs;
    this.streamed = streamed;
  }

  /** A chunk the route wrote (the response tap's reader): kept, until the answer outgrows the bound. */
  read(chunk: unknown, encoding: unknown): void {
    if (this.tooLarge || chunk === undefined || chunk === null || typeof chunk === 'function') return;
    let kept: string | Uint8Array;
    if (typeof chunk === 'string' && isUtf8(encoding)) {
      kept = chunk;
      if (this.exact) this.bytes += Buffer.byteLength(chunk, 'utf8');
      else this.units += chunk.length;
    } else {
      kept = typeof chunk === 'string' ? Buffer.from(chunk, encoding as BufferEncoding) : (chunk as Uint8Array);
      this.bytes += kept.byteLength;
    }
    if (this.first === undefined) this.first = kept;
    else (this.rest ??= []).push(kept);
    const { maxEntryBytes } = this.owner;
    // Text is counted exactly only once the answer may come near the bound.
    if (!this.exact && this.bytes + 3 * this.units + 2 > maxEntryBytes) this.countExactly();
    if (this.bytes + this.units + 2 > maxEntryBytes) {
      this.tooLarge = true;
      this.first = undefined;
      this.rest = undefined;
    }
  }

  isEmpty(): boolean {
    return this.bytes + this.units === 0;
  }

  /** The answer as the client received it (chunks decoded together, since a character may span two). */
  text(): string {
    const only = this.first;
    if (only === undefined) return '';
    if (this.rest !== undefined) return this.entry(undefined).toString('utf8');
    return typeof only === 'string'
      ? only
      : Buffer.from(only.buffer, only.byteOffset, only.byteLength).toString('utf8');
  }

  /** The answer's bytes, after `mark` and a newline when given: one buffer, each chunk copied once. */
  entry(mark: number | undefined): Buffer {
    if (!this.exact) this.countExactly();
    const head = mark === undefined ? 0 : 2;
    const entry = Buffer.allocUnsafe(head + this.bytes);
    if (mark !== undefined) {
      entry[0] = mark;
      entry[1] = NEWLINE;
    }
    let at = copyChunk(entry, head, this.first);
    if (this.rest !== undefined) for (const chunk of this.rest) at = copyChunk(entry, at, chunk);
    return entry;
  }

  private countExactly(): void {
    this.exact = true;
    this.units = 0;
    this.bytes = byteLengthOf(this.first);
    if (this.rest !== undefined) for (const chunk of this.rest) this.bytes += byteLengthOf(chunk);
  }
}

const byteLengthOf = (chunk: string | Uint8Array | undefined): number =>
  chunk === undefined ? 0 : typeof chunk === 'string' ? Buffer.byteLength(chunk, 'utf8') : chunk.byteLength;

function copyChunk(entry: Buffer, at: number, chunk: string | Uint8Array | undefined): number {
  if (chunk === undefined) return at;
  if (typeof chunk === 'string') return at + entry.write(chunk, at, 'utf8');
  entry.set(chunk, at);
  return at + chunk.byteLength;
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The cache's work for the request: its lookup, then (on a miss) the answer as it is written. */
    'cache.request': CacheRequest;
  }
}

/** The request's cache work, by whichever response cache looked it up (one per request). */
export const cacheRequestOf = (res: Response): CacheRequest | undefined => contextOf(res)?.get('cache.request');

const isUtf8 = (encoding: unknown): boolean =>
  typeof encoding !== 'string' || encoding === 'utf8' || encoding === 'utf-8';

/** The memory store's entry as the answer to send: its own bytes when stored in the form asked for. */
export function answerBytes(api: CachedApi, stream: boolean, entry: Buffer): Answer | undefined {
  const storedStream = entry[0] === STREAM_MARK;
  if (entry[1] !== NEWLINE || (!storedStream && entry[0] !== JSON_MARK)) return undefined;
  return stream === storedStream ? entry.subarray(2) : answerText(api, stream, entry.toString('utf8'));
}

/** A stored entry as the answer to send: as it was stored, or turned into the other form; undefined when it cannot be read. */
export function answerText(api: CachedApi, stream: boolean, entry: string): string | undefined {
  const storedStream = entry.startsWith(STREAM_ENTRY);
  if (!storedStream && !entry.startsWith(JSON_ENTRY)) return undefined;
  const body = entry.slice(2);
  if (stream) return storedStream ? body : jsonToStream(api, body);
  return storedStream ? streamToJson(api, body) : body;
}
