// createResponseCache: answers a repeated provider request from a stored answer, in the form the client asked for, and stores complete answers.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { getContext, parseDuration, tapResponse, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { TollgateContext, UsageRecord } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { completeJsonAnswer, isCachedApi, streamToJson, type CachedApi } from './answer-forms.js';
import {
  answerBytes,
  answerText,
  CacheRequest,
  cacheRequestOf,
  isAnswer,
  JSON_ENTRY,
  JSON_MARK,
  NOT_LOOKED_UP,
  STREAM_ENTRY,
  STREAM_MARK,
} from './cache-request.js';
import type { Answer } from './cache-request.js';
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

interface ResponseCache {
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

/**
 * One response cache's work on requests: looks them up, serves hits, and keeps the answers of misses. Its handlers
 * (see createResponseCache) call it; every request it looked up names it as its owner.
 */
class AnswerCache {
  readonly lookUpEarly: boolean;
  /** Read and written as bytes, unless a subclass changed how it reads or writes. */
  private readonly memory: MemoryCacheStore | undefined;

  constructor(readonly config: CacheConfig) {
    const { store } = config;
    this.lookUpEarly = store.answersAtOnce === true;
    this.memory =
      store instanceof MemoryCacheStore &&
      store.get === MemoryCacheStore.prototype.get &&
      store.set === MemoryCacheStore.prototype.set
        ? store
        : undefined;
  }

  /** The request's cache work, when this cache looked it up (another response cache's requests pass). */
  lookupOf(res: Response): CacheRequest | undefined {
    const found = cacheRequestOf(res);
    return found?.owner === this.config ? found : undefined;
  }

  /**
   * The answer to send, at once when the store answers at once (memory: no promise, no turn of the
   * loop on the request's path). An entry that cannot be read is a miss.
   */
  private readStore(key: string, api: CachedApi, stream: boolean): Answer | undefined | Promise<Answer | undefined> {
    const { store, onStoreError } = this.config;
    try {
      if (this.memory) {
        const entry = this.memory.getBytes(key);
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
  }

  /**
   * Stores a miss's answer once the meter settled the request: only a complete, successful one
   * (the meter read the provider's usage from this very answer; what is left to check is that it
   * ended as the API ends). The memory store takes the bytes as they were written.
   */
  private storeAnswer(kept: CacheRequest, record: UsageRecord | undefined): void {
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
    const { store, onStoreError } = this.config;
    try {
      const written = this.memory
        ? this.memory.setBytes(kept.storeKey, kept.entry(streamed ? STREAM_MARK : JSON_MARK), kept.lifetimeMs)
        : store.set(kept.storeKey, (streamed ? STREAM_ENTRY : JSON_ENTRY) + (text ?? kept.text()), kept.lifetimeMs);
      if (written) written.catch((error: unknown) => onStoreError(error, 'set'));
    } catch (error) {
      onStoreError(error, 'set');
    }
  }

  /** Keys the request and reads the store (once: a request looked up before the meter is not looked up again). */
  startLookup(req: Request, res: Response, beforeMeter: boolean): CacheRequest | undefined {
    // Looked up once (before the meter, or by another response cache): the later steps pass.
    if (cacheRequestOf(res) !== undefined) return undefined;
    const ctx = getContext(req, res);
    const call = ctx.call;
    // Without the meter, a hit could not be recorded, nor an answer be known complete (before it, the meter comes next).
    if (!call || (!beforeMeter && !ctx.metered) || call.model === undefined) return undefined;
    const api = call.adapter.api;
    if (!isCachedApi(api)) return undefined;
    const { enabled, scope } = this.config;
    if (enabled && !enabled(req)) return undefined;
    const scopeId = scopeOf(scope, ctx.identity);
    if (scopeId === undefined) return undefined;
    const control = req.headers['cache-control'];
    const noStore = control !== undefined && /\bno-store\b/i.test(control);
    const noCache = noStore || (control !== undefined && /\bno-cache\b/i.test(control));
    const key = cacheKey(scopeId, api, call.model, call.body);
    const found = noCache ? NOT_LOOKED_UP : this.readStore(key, api, call.stream);
    const lookup = new CacheRequest(this.config, key, api, scopeId, call.model, call.outputCap, found, noStore);
    ctx.set('cache.request', lookup);
    return lookup;
  }

  serveOrCapture(req: Request, res: Response, next: NextFunction): void {
    const lookup = this.lookupOf(res);
    if (!lookup || lookup.answered) {
      next();
      return;
    }
    lookup.answered = true;
    const { found } = lookup;
    if (found === NOT_LOOKED_UP) {
      res.setHeader(CACHE_HEADER, 'bypass');
      // no-cache: not served from the cache, but the fresh answer replaces the stored one.
      if (!lookup.bypass) this.captureAnswer(req, res, lookup);
      next();
      return;
    }
    if (found === undefined || isAnswer(found)) {
      this.serveOrMiss(req, res, next, lookup, found);
      return;
    }
    found
      .then((entry) => {
        // The client left while the store answered: the request is settled already.
        if (req.tollgate.settled || res.headersSent) return;
        this.serveOrMiss(req, res, next, lookup, entry);
      })
      .catch((error: unknown) => next(error));
  }

  private serveOrMiss(
    req: Request,
    res: Response,
    next: NextFunction,
    lookup: CacheRequest,
    answer: Answer | undefined,
  ): void {
    if (answer !== undefined) {
      this.serveAnswer(res, req.tollgate, answer);
      return;
    }
    res.setHeader(CACHE_HEADER, 'miss');
    this.captureAnswer(req, res, lookup);
    next();
  }

  /** Writes a stored answer, in the form the client asked for. */
  private serveAnswer(res: Response, ctx: TollgateContext, text: Answer): void {
    const stream = ctx.call!.stream;
    ctx.cacheHit = { costFraction: this.config.costFraction };
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
  private captureAnswer(req: Request, res: Response, lookup: CacheRequest): void {
    const ctx = req.tollgate;
    const call = ctx.call!;
    // Made now, before anything after the cache (prompt-cache breakpoints) writes into the body. The budget may have
    // lowered the cap or downgraded the model since the lookup: that answer belongs to the request as it is sent.
    const storeKey =
      call.model === lookup.model && call.outputCap === lookup.cap
        ? lookup.key
        : cacheKey(lookup.scopeId, lookup.api, call.model!, call.body);
    // The answer to a stream request is a stream (an error would be JSON, and is never stored).
    const { ttlOf, ttlMs } = this.config;
    lookup.keepFor(storeKey, ttlOf ? ttlOf(req) : ttlMs, call.stream);
    // A reader of the response's one tap: it keeps the bytes the route writes, before the meter's filter (a stream
    // keeps the usage chunk the meter asked for and drops on its way to the client).
    tapResponse(req, res).read(lookup);
    ctx.onSettle((record) => {
      // A JSON call its route took from an upstream stream: the route wrote the stream (its client got its JSON).
      if (call.jsonFromStream) lookup.streamed = true;
      this.storeAnswer(lookup, record);
    });
  }
}

/**
 * An exact response cache for provider calls. Mount it after `meter()` (its hits are metered as
 * `usageSource: "cache"`, and it stores only what the meter saw complete), and after the request
 * limits, so that hits count toward them.
 */
export function createResponseCache(options: ResponseCacheOptions = {}): ResponseCache {
  const cache = new AnswerCache(resolveOptions(options));
  const { store, costFraction } = cache.config;
  return {
    chooseLimits({ hit, miss }: { hit: RequestHandler; miss: RequestHandler }): RequestHandler {
      return function limitsForCachedAnswer(req: Request, res: Response, next: NextFunction): void {
        // Known to be a hit already (a memory store): only what a hit is subject to. Else (a miss, or Redis still answering) the whole check.
        const lookup = cache.lookupOf(res);
        if (lookup !== undefined && !lookup.answered && isAnswer(lookup.found)) hit(req, res, next);
        else miss(req, res, next);
      };
    },
    middleware: function responseCacheMiddleware(req: Request, res: Response, next: NextFunction): void {
      cache.startLookup(req, res, false);
      cache.serveOrCapture(req, res, next);
    },
    lookup: function lookUpCachedAnswer(req: Request, res: Response, next: NextFunction): void {
      cache.startLookup(req, res, false);
      next();
    },
    lookupBeforeEstimate: function lookUpBeforeEstimate(req: Request, res: Response, next: NextFunction): void {
      if (cache.lookUpEarly) {
        // Known now: the meter skips the estimate (a hit refused later is not billed as one: the meter checks its status).
        if (isAnswer(cache.startLookup(req, res, true)?.found)) req.tollgate.cacheHit = { costFraction };
      }
      next();
    },
    answer: function answerFromCache(req: Request, res: Response, next: NextFunction): void {
      cache.serveOrCapture(req, res, next);
    },
    store,
    close: async () => {
      await store.close?.();
    },
  };
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
