// createResponseCache: answers a repeated provider request from a stored answer, in the form the client asked for, and stores complete answers.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { contextOf, getContext, parseDuration, tapResponse, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/kit';
import type { TollgateContext, UsageRecord } from '@tollgate/core';
import type { ResponseReader } from '@tollgate/core/kit';
import { adapterFor } from '@tollgate/providers';
import { completeJsonAnswer, isCachedApi, jsonToStream, streamToJson, type CachedApi } from './answer-forms.js';
import { cacheKey, scopeOf, type CacheScope } from './cache-key.js';
import type { CacheStore } from './cache-store.js';
import { MemoryCacheStore } from './memory-cache-store.js';

/** The response header that says what the cache did: `hit`, `miss` or `bypass`. */
export const CACHE_HEADER = 'x-tollgate-cache';

export interface ResponseCacheOptions {
  /** Where answers are kept: `new MemoryCacheStore()` or `new RedisCacheStore({ sendCommand, prefix })`. @default a MemoryCacheStore of 64 MiB */
  store?: CacheStore;
  /**
   * How long an answer is served: ms, or a duration such as `"10m"`; or per request (per tier,
   * key or route), a function returning one, or undefined for the default of 10 minutes.
   * @default "10m"
   */
  ttl?: number | string | ((req: Request) => number | string | undefined);
  /**
   * Who shares answers: `tenant` (the caller's tenant, else its key), `key`, or `global` (every
   * caller, across tenants: only for answers that hold nothing private).
   * @default "tenant"
   */
  scope?: CacheScope;
  /** Answers larger than this (UTF-8 bytes as sent) are not stored. @default 1_000_000 */
  maxEntryBytes?: number;
  /** Share of the answer's cost billed on a hit (0 to 1); the rest is recorded as saved. @default 0 */
  costFraction?: number;
  /** Whether a request may use the cache (per tier, key or route); false leaves it untouched, with no header. @default every request */
  enabled?: (req: Request) => boolean;
  /** Told when the store fails; the request goes on as a miss. @default a process warning, at most one a minute */
  onStoreError?: (error: unknown, operation: 'get' | 'set') => void;
}

const KNOWN_OPTIONS = [
  'store',
  'ttl',
  'scope',
  'maxEntryBytes',
  'costFraction',
  'enabled',
  'onStoreError',
] as const satisfies readonly (keyof ResponseCacheOptions)[];
const SCOPES: readonly CacheScope[] = ['tenant', 'key', 'global'];
const CODE = 'ERR_TG_CACHE_INVALID_OPTION';

/** The options with every default filled in, checked once. */
interface CacheConfig {
  store: CacheStore;
  ttlMs: number;
  /** Per request, in ms (checked when made), when `ttl` is a function. */
  ttlOf: ((req: Request) => number) | undefined;
  scope: CacheScope;
  maxEntryBytes: number;
  costFraction: number;
  enabled: ((req: Request) => boolean) | undefined;
  onStoreError: (error: unknown, operation: 'get' | 'set') => void;
}

function throttledWarning(): (error: unknown, operation: 'get' | 'set') => void {
  let lastAt = 0;
  return (error, operation) => {
    const now = Date.now();
    if (now - lastAt < 60_000) return;
    lastAt = now;
    process.emitWarning(
      `tollgate: the response cache's store failed to ${operation} (served as a miss): ${error instanceof Error ? error.message : String(error)}`,
    );
  };
}

function resolveOptions(options: ResponseCacheOptions): CacheConfig {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_CACHE_UNKNOWN_OPTION', 'createResponseCache');
  const store = options.store ?? new MemoryCacheStore();
  if (typeof store?.get !== 'function' || typeof store.set !== 'function')
    throw new TollgateError(CODE, 'createResponseCache() option store must have get(key) and set(key, value, ttlMs)');
  const scope = options.scope ?? 'tenant';
  if (!SCOPES.includes(scope))
    throw new TollgateError(
      CODE,
      `createResponseCache() option scope must be one of ${SCOPES.join(', ')}; got ${JSON.stringify(scope)}`,
    );
  const maxEntryBytes = options.maxEntryBytes ?? 1_000_000;
  if (!Number.isSafeInteger(maxEntryBytes) || maxEntryBytes < 1)
    throw new TollgateError(CODE, 'createResponseCache() option maxEntryBytes must be a positive integer');
  const costFraction = options.costFraction ?? 0;
  if (typeof costFraction !== 'number' || !(costFraction >= 0 && costFraction <= 1))
    throw new TollgateError(CODE, 'createResponseCache() option costFraction must be a number from 0 to 1');
  if (options.enabled !== undefined && typeof options.enabled !== 'function')
    throw new TollgateError(CODE, 'createResponseCache() option enabled must be a function (req) => boolean');
  if (options.onStoreError !== undefined && typeof options.onStoreError !== 'function')
    throw new TollgateError(CODE, 'createResponseCache() option onStoreError must be a function');
  const durationMs = (value: number | string, what: string): number => {
    try {
      return parseDuration(value, what);
    } catch (error) {
      throw new TollgateError(CODE, error instanceof Error ? error.message : String(error));
    }
  };
  const ttl = options.ttl;
  const ttlMs =
    typeof ttl === 'function' || ttl === undefined ? 600_000 : durationMs(ttl, 'createResponseCache() option ttl');
  // A function's answer is checked as it comes: a bad one is the caller's bug, thrown where it is made.
  const ttlOf =
    typeof ttl === 'function'
      ? (req: Request) => {
          const value = ttl(req);
          return value === undefined ? ttlMs : durationMs(value, 'createResponseCache() option ttl(req)');
        }
      : undefined;
  return {
    store,
    ttlMs,
    ttlOf,
    scope,
    maxEntryBytes,
    costFraction,
    enabled: options.enabled,
    onStoreError: options.onStoreError ?? throttledWarning(),
  };
}

/** A stored answer to send: text, or the memory store's own bytes. */
type Answer = string | Buffer;

/** The lookup found an answer, and already has it. */
const isAnswer = (found: CacheRequest['found'] | undefined): found is Answer =>
  typeof found === 'string' || found instanceof Uint8Array;

/** The client asked not to be served from the cache (`no-cache`, `no-store`). */
const NOT_LOOKED_UP = Symbol('not looked up');

export interface ResponseCache {
  /** Lookup and answer in one, for a route that mounts it where the cache belongs (after `meter()` and request limits). */
  readonly middleware: RequestHandler;
  /**
   * The first half: starts the store lookup and moves on at once, so the lookup runs while the
   * next middleware (token limits and budget in one store call) does. Mount `answer` after that.
   */
  readonly lookup: RequestHandler;
  /**
   * The lookup moved earlier, for a store that answers at once (memory; with any other store it
   * passes): mount it after the permission and tier checks and BEFORE `meter()`. A hit is then
   * known before the estimate (`req.tollgate.cacheHit` is set), so the meter does not tokenize its
   * prompt; `lookup` after the meter then passes. Whatever decides the model or the output cap
   * (tier rules, routing) must run before it; the meter must follow it, or the hit goes unrecorded.
   */
  readonly lookupBeforeEstimate: RequestHandler;
  /**
   * The second half: serves a hit, or arms the store of a miss. A hit that was reserved for (the
   * store answered after the limits started) gives the tokens and the budget back at its settle.
   */
  readonly answer: RequestHandler;
  /**
   * Between the halves: runs `hit` (e.g. request limits only) when the lookup already found an
   * answer (a memory store answers at once), else `miss` (request limits, tokens and budget).
   */
  chooseLimits(limits: { hit: RequestHandler; miss: RequestHandler }): RequestHandler;
  readonly store: CacheStore;
  close(): Promise<void>;
}

/** Entries are `j\n<json>` or `s\n<event stream>`: the answer as the provider sent it, marked with its form. */
const JSON_ENTRY = 'j\n';
const STREAM_ENTRY = 's\n';
const JSON_MARK = 0x6a;
const STREAM_MARK = 0x73;
const NEWLINE = 0x0a;

/**
 * An exact response cache for provider calls. Mount it after `meter()` (its hits are metered as
 * `usageSource: "cache"`, and it stores only what the meter saw complete), and after the request
 * limits, so that hits count toward them.
 */
export function createResponseCache(options: ResponseCacheOptions = {}): ResponseCache {
  const config = resolveOptions(options);
  const { store, ttlMs, ttlOf, scope, costFraction, enabled, onStoreError } = config;
  // This cache's own requests: another response cache on the same request finds them and passes.
  const owner = config;
  const lookupOf = (res: Response): CacheRequest | undefined => {
    const found = cacheRequestOf(res);
    return found?.owner === owner ? found : undefined;
  };
  const lookUpEarly = store.answersAtOnce === true;
  // Read and written as bytes, unless a subclass changed how it reads or writes.
  const memory =
    store instanceof MemoryCacheStore &&
    store.get === MemoryCacheStore.prototype.get &&
    store.set === MemoryCacheStore.prototype.set
      ? store
      : undefined;

  /**
   * The answer to send, at once when the store answers at once (memory: no promise, no turn of the
   * loop on the request's path). An entry that cannot be read is a miss.
   */
  const readStore = (
    key: string,
    api: CachedApi,
    stream: boolean,
  ): Answer | undefined | Promise<Answer | undefined> => {
    try {
      if (memory) {
        const entry = memory.getBytes(key);
        return entry === undefined ? undefined : answerBytes(api, stream, entry);
      }
      const found = store.get(key);
      if (found === undefined) return undefined;
      if (typeof found === 'string') return answerText(api, stream, found);
      return found.then(
        (entry) => (entry === undefined ? undefined : answerText(api, stream, entry)),
        (error: unknown) => {
          onStoreError(error, 'get');
          return undefined;
        },
      );
    } catch (error) {
      onStoreError(error, 'get');
      return undefined;
    }
  };

  /**
   * Stores a miss's answer once the meter settled the request: only a complete, successful one
   * (the meter read the provider's usage from this very answer; what is left to check is that it
   * ended as the API ends). The memory store takes the bytes as they were written.
   */
  const storeAnswer = (kept: CacheRequest, record: UsageRecord | undefined): void => {
    if (kept.tooLarge || !isStorable(record)) return;
    const { api, streamed } = kept;
    // Only a stream or a Responses answer is read as text to be checked; any other JSON answer the meter read usage from is whole.
    const text = streamed || adapterFor(api).family === 'responses' ? kept.text() : undefined;
    if (
      text === undefined
        ? kept.isEmpty()
        : streamed
          ? streamToJson(api, text) === undefined
          : !jsonLooksComplete(api, text)
    )
      return;
    try {
      const written = memory
        ? memory.setBytes(kept.storeKey, kept.entry(streamed ? STREAM_MARK : JSON_MARK), kept.lifetimeMs)
        : store.set(kept.storeKey, (streamed ? STREAM_ENTRY : JSON_ENTRY) + (text ?? kept.text()), kept.lifetimeMs);
      if (written) written.catch((error: unknown) => onStoreError(error, 'set'));
    } catch (error) {
      onStoreError(error, 'set');
    }
  };

  /** Keys the request and reads the store (once: a request looked up before the meter is not looked up again). */
  function startLookup(req: Request, res: Response, beforeMeter: boolean): CacheRequest | undefined {
    // Looked up once (before the meter, or by another response cache): the later steps pass.
    if (cacheRequestOf(res) !== undefined) return undefined;
    const ctx = getContext(req, res);
    const call = ctx.call;
    // Without the meter, a hit could not be recorded, nor an answer be known complete (before it, the meter comes next).
    if (!call || (!beforeMeter && !ctx.metered) || call.model === undefined) return undefined;
    const api = call.adapter.api;
    if (!isCachedApi(api)) return undefined;
    if (enabled && !enabled(req)) return undefined;
    const scopeId = scopeOf(scope, ctx.identity);
    if (scopeId === undefined) return undefined;
    const control = req.headers['cache-control'];
    const noStore = control !== undefined && /\bno-store\b/i.test(control);
    const noCache = noStore || (control !== undefined && /\bno-cache\b/i.test(control));
    const key = cacheKey(scopeId, api, call.model, call.body);
    const found = noCache ? NOT_LOOKED_UP : readStore(key, api, call.stream);
    const lookup = new CacheRequest(owner, key, api, scopeId, call.model, call.outputCap, found, noStore);
    ctx.set('cache.request', lookup);
    return lookup;
  }

  function serveOrCapture(req: Request, res: Response, next: NextFunction): void {
    const lookup = lookupOf(res);
    if (!lookup || lookup.answered) {
      next();
      return;
    }
    lookup.answered = true;
    const { found } = lookup;
    if (found === NOT_LOOKED_UP) {
      res.setHeader(CACHE_HEADER, 'bypass');
      // no-cache: not served from the cache, but the fresh answer replaces the stored one.
      if (!lookup.bypass) captureAnswer(req, res, lookup);
      next();
      return;
    }
    if (found === undefined || isAnswer(found)) {
      serveOrMiss(req, res, next, lookup, found);
      return;
    }
    found
      .then((entry) => {
        // The client left while the store answered: the request is settled already.
        if (req.tollgate.settled || res.headersSent) return;
        serveOrMiss(req, res, next, lookup, entry);
      })
      .catch((error: unknown) => next(error));
  }

  function serveOrMiss(
    req: Request,
    res: Response,
    next: NextFunction,
    lookup: CacheRequest,
    answer: Answer | undefined,
  ): void {
    if (answer !== undefined) {
      serveAnswer(res, req.tollgate, answer);
      return;
    }
    res.setHeader(CACHE_HEADER, 'miss');
    captureAnswer(req, res, lookup);
    next();
  }

  /** Writes a stored answer, in the form the client asked for. */
  function serveAnswer(res: Response, ctx: TollgateContext, text: Answer): void {
    const stream = ctx.call!.stream;
    ctx.cacheHit = { costFraction };
    res.status(200);
    res.setHeader(CACHE_HEADER, 'hit');
    if (stream) {
      res.setHeader('content-type', 'text/event-stream; charset=utf-8');
      res.setHeader('cache-control', 'no-cache');
      res.write(text);
      res.end();
    } else {
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.end(text);
    }
  }

  /**
   * Keeps the bytes the route writes (before the meter's tap, so a stream keeps the usage the
   * meter asked for) and stores them once the meter settled the request complete and successful.
   */
  function captureAnswer(req: Request, res: Response, lookup: CacheRequest): void {
    const ctx = req.tollgate;
    const call = ctx.call!;
    // Made now, before anything after the cache (prompt-cache breakpoints) writes into the body. The budget may have
    // lowered the cap or downgraded the model since the lookup: that answer belongs to the request as it is sent.
    const storeKey =
      call.model === lookup.model && call.outputCap === lookup.cap
        ? lookup.key
        : cacheKey(lookup.scopeId, lookup.api, call.model!, call.body);
    // The answer to a stream request is a stream (an error would be JSON, and is never stored).
    lookup.keepFor(storeKey, ttlOf ? ttlOf(req) : ttlMs, call.stream);
    // A reader of the response's one tap: it keeps the bytes the route writes, before the meter's filter (a stream
    // keeps the usage chunk the meter asked for and drops on its way to the client).
    tapResponse(req, res).read(lookup);
    ctx.onSettle((record) => storeAnswer(lookup, record));
  }

  function chooseLimits({ hit, miss }: { hit: RequestHandler; miss: RequestHandler }): RequestHandler {
    return function limitsForCachedAnswer(req: Request, res: Response, next: NextFunction): void {
      // Known to be a hit already (a memory store): only what a hit is subject to. Else (a miss, or Redis still answering) the whole check.
      const lookup = lookupOf(res);
      if (lookup !== undefined && !lookup.answered && isAnswer(lookup.found)) hit(req, res, next);
      else miss(req, res, next);
    };
  }

  return {
    chooseLimits,
    middleware: function responseCacheMiddleware(req: Request, res: Response, next: NextFunction): void {
      startLookup(req, res, false);
      serveOrCapture(req, res, next);
    },
    lookup: function lookUpCachedAnswer(req: Request, res: Response, next: NextFunction): void {
      startLookup(req, res, false);
      next();
    },
    lookupBeforeEstimate: function lookUpBeforeEstimate(req: Request, res: Response, next: NextFunction): void {
      if (lookUpEarly) {
        // Known now: the meter skips the estimate (a hit refused later is not billed as one: the meter checks its status).
        if (isAnswer(startLookup(req, res, true)?.found)) req.tollgate.cacheHit = { costFraction };
      }
      next();
    },
    answer: function answerFromCache(req: Request, res: Response, next: NextFunction): void {
      serveOrCapture(req, res, next);
    },
    store,
    close: async () => {
      await store.close?.();
    },
  };
}

/**
 * The cache's work for one request, in one object: what the lookup found (and the key it made),
 * then, on a miss, the answer as it is written, until the meter settles the request. Chunks are
 * kept as they were handed to write() (not copied: a chunk handed to write() is not changed
 * afterwards); text stays text until it is stored.
 */
class CacheRequest implements ResponseReader {
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
    readonly owner: CacheConfig,
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
const cacheRequestOf = (res: Response): CacheRequest | undefined => contextOf(res)?.get('cache.request');

const isUtf8 = (encoding: unknown): boolean =>
  typeof encoding !== 'string' || encoding === 'utf8' || encoding === 'utf-8';

/** The memory store's entry as the answer to send: its own bytes when stored in the form asked for. */
function answerBytes(api: CachedApi, stream: boolean, entry: Buffer): Answer | undefined {
  const storedStream = entry[0] === STREAM_MARK;
  if (entry[1] !== NEWLINE || (!storedStream && entry[0] !== JSON_MARK)) return undefined;
  return stream === storedStream ? entry.subarray(2) : answerText(api, stream, entry.toString('utf8'));
}

/** A stored entry as the answer to send: as it was stored, or turned into the other form; undefined when it cannot be read. */
function answerText(api: CachedApi, stream: boolean, entry: string): string | undefined {
  const storedStream = entry.startsWith(STREAM_ENTRY);
  if (!storedStream && !entry.startsWith(JSON_ENTRY)) return undefined;
  const body = entry.slice(2);
  if (stream) return storedStream ? body : jsonToStream(api, body);
  return storedStream ? streamToJson(api, body) : body;
}

/**
 * A JSON answer the meter read usage from is whole; a Responses answer may still say it failed or
 * stopped short (its status), so that one is parsed and checked.
 */
function jsonLooksComplete(api: CachedApi, text: string): boolean {
  return adapterFor(api).family === 'responses' ? completeJsonAnswer(api, text) !== undefined : text.length > 0;
}

/** Only an answer the provider finished and the client received whole, with the provider's own usage. */
function isStorable(record: UsageRecord | undefined): boolean {
  return (
    record !== undefined &&
    record.status === 200 &&
    record.usageSource === 'provider' &&
    !record.aborted &&
    !record.upstreamAborted &&
    !record.outputOverCap
  );
}
