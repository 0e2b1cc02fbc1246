// One tap per response: what the route writes passes it once, on its way out; the meter, its hard stop and the cache share it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TollgateError } from './errors.js';
import { getContext } from './context.js';
import type { TollgateContext } from './context.js';

/** `res.write` as Node defines it. */
export type WriteThrough = (this: ServerResponse, chunk: unknown, encoding?: unknown, callback?: unknown) => boolean;
/** `res.end` as Node defines it. */
export type EndThrough = (
  this: ServerResponse,
  chunk?: unknown,
  encoding?: unknown,
  callback?: unknown,
) => ServerResponse;

/** Sees each chunk as the route wrote it, before any filter; never changes or holds it. */
export interface ResponseReader {
  /** A chunk given to `res.write` or `res.end` (end's chunk may be absent, or a callback in its place). */
  read(chunk: unknown, encoding: unknown): void;
  /** The route ended the response: called after `read` saw end's chunk, before the filter sends it. */
  end?(): void;
}

/**
 * Decides what goes out instead of what the route wrote (the meter: drops the usage chunk it asked
 * for, ends a stream at its grant). It sends through the tap's `pass` functions.
 */
export interface ResponseFilter {
  write(chunk: unknown, encoding: unknown, callback: unknown): boolean;
  end(chunk: unknown, encoding: unknown, callback: unknown): ServerResponse;
  /**
   * Ends the response now in its API's own way (the meter: a stream gets the ending its hard stop writes), when it
   * can; false when it cannot (nothing streamed yet, part of an event out already).
   */
  endNow?(): boolean;
}

/**
 * The one place a response's bytes are read on their way out. Made for a response the first time a
 * piece asks (`tapResponse`): it wraps the `write` and `end` the response has then, its own (a
 * middleware before wrapped them) or its prototype's, so that the tap sees what the route writes
 * before those wrappers do. Each chunk goes to the readers in the order they came (the cache keeps
 * the answer as written), then to the filter if there is one (the meter's), else out.
 *
 * No prototype is patched: the wrappers are the response's own properties, the same two functions
 * for every response (they find the tap through the request's context). A gateway makes the tap
 * before Express swaps the response's prototype, where adding them costs V8 nothing extra
 * (docs/performance.md). Made only by `tapResponse`.
 */
export class ResponseTap {
  /** The write and end the response had before the tap: what a filter sends through. */
  readonly pass: { readonly write: WriteThrough; readonly end: EndThrough };
  readonly #res: ServerResponse;
  #readers: ResponseReader | ResponseReader[] | undefined = undefined;
  #filter: ResponseFilter | undefined = undefined;

  constructor(context: TollgateContext, res: ServerResponse) {
    if (context.responseTap !== undefined)
      throw new TollgateError('ERR_TG_CORE_TAP_FILTER', 'this response has a tap already: use tapResponse(req, res)');
    context.responseTap = this;
    this.#res = res;
    this.pass = { write: res.write as WriteThrough, end: res.end as EndThrough };
    res.write = tappedWrite as ServerResponse['write'];
    res.end = tappedEnd as ServerResponse['end'];
  }

  /** Adds a reader: it sees every chunk written from now on. */
  read(reader: ResponseReader): void {
    const readers = this.#readers;
    if (readers === undefined) this.#readers = reader;
    else if (Array.isArray(readers)) readers.push(reader);
    else this.#readers = [readers, reader];
  }

  /** Sets the filter. One per response: two would disagree about what went out. */
  filter(filter: ResponseFilter): void {
    if (this.#filter !== undefined && this.#filter !== filter)
      throw new TollgateError('ERR_TG_CORE_TAP_FILTER', 'this response already has a filter: meter a request once');
    this.#filter = filter;
  }

  get filtered(): boolean {
    return this.#filter !== undefined;
  }

  /** Ends the response now in its API's own way, if its filter can (`ResponseFilter.endNow`). */
  endNow(): boolean {
    return this.#filter?.endNow?.() ?? false;
  }

  write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    this.#feed(chunk, encoding);
    const filter = this.#filter;
    return filter === undefined
      ? this.pass.write.call(this.#res, chunk, encoding, callback)
      : filter.write(chunk, encoding, callback);
  }

  end(chunk?: unknown, encoding?: unknown, callback?: unknown): ServerResponse {
    this.#feed(chunk, encoding);
    this.#ended();
    const filter = this.#filter;
    return filter === undefined
      ? this.pass.end.call(this.#res, chunk, encoding, callback)
      : filter.end(chunk, encoding, callback);
  }

  #ended(): void {
    const readers = this.#readers;
    if (readers === undefined) return;
    if (!Array.isArray(readers)) readers.end?.();
    else for (const reader of readers) reader.end?.();
  }

  #feed(chunk: unknown, encoding: unknown): void {
    const readers = this.#readers;
    if (readers === undefined) return;
    if (!Array.isArray(readers)) readers.read(chunk, encoding);
    else for (const reader of readers) reader.read(chunk, encoding);
  }
}

/** A tapped response: its request carries the context that holds the tap (`getContext` saw to `res.req`). */
type Tapped = ServerResponse & { req: IncomingMessage & { tollgate: TollgateContext } };

function tappedWrite(this: Tapped, chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
  return this.req.tollgate.responseTap!.write(chunk, encoding, callback);
}

function tappedEnd(this: Tapped, chunk?: unknown, encoding?: unknown, callback?: unknown): ServerResponse {
  return this.req.tollgate.responseTap!.end(chunk, encoding, callback);
}

/**
 * Ends a response under way in its API's own way (a stream gets its ending, billed what went out), when a filter reads
 * it and can; false otherwise (the caller then ends it otherwise). A server that cannot wait longer for it calls this.
 */
export function endResponseNow(res: ServerResponse): boolean {
  const tap = (res.req as (IncomingMessage & { tollgate?: TollgateContext }) | undefined)?.tollgate?.responseTap;
  return tap?.endNow() ?? false;
}

/** The response's tap, made the first time a piece asks for it (kept in the request's context). */
export function tapResponse(req: IncomingMessage, res: ServerResponse): ResponseTap {
  const context = getContext(req, res);
  return context.responseTap ?? new ResponseTap(context, res);
}
