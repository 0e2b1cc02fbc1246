// One provider call as an undici dispatch handler: the answer goes straight into the client's response, without a stream in between.
import { errors } from 'undici';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { NextFunction, Response } from 'express';
import { ApiError } from '@tollgate/core';
import type { UpstreamOutcome } from './proxy-metrics.js';
import type { SecretRedactor } from './redact.js';

/** Told once per call how it ended: the upstream's name, the model the call ran with, the outcome. */
export type UpstreamObserver = (upstream: string, model: string, outcome: UpstreamOutcome) => void;

/**
 * A JSON answer whose client left is still read for its usage (the provider bills it whole), up to
 * this size; past it the read stops and the call is charged its reservation's bound.
 */
const MAX_ORPHAN_BYTES = 8 * 1024 * 1024;
/** Upstream error bodies passed to the client are capped: they are small JSON documents. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** What is read (and dropped) of a failed answer to keep its connection for the next call; past it the call is cut. */
const MAX_DISCARDED_BYTES = 128 * 1024;
const PASSED_THROUGH_HEADERS = ['retry-after', 'retry-after-ms', 'x-should-retry'] as const;

/**
 * - waiting: no answer yet; a failure is the upstream's (502/504).
 * - piping: a 2xx, written to the client as it arrives.
 * - passing: a 4xx, collected (capped) and passed on whole with its retry hints, the gateway's key taken out.
 * - refused: a 5xx, 3xx or a refusal of the gateway's own key; `next(error)` answered, the rest is dropped.
 * - over: the exchange is finished (answered, failed or left).
 */
type Phase = 'waiting' | 'piping' | 'passing' | 'refused' | 'over';

function isTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}

/**
 * Writes one upstream answer to `res`. Every path ends the client's response: an error before
 * anything was sent reaches `next` (502/504), a failure mid-answer cuts the response. A client
 * that leaves a stream aborts the upstream call (the provider stops generating, and bills what it
 * made). A client that leaves a JSON call does not: the provider bills the whole answer anyway, so
 * it is read to its end (within the upstream's timeouts) and its usage recorded, the settle held
 * until then. Backpressure is kept: when `res` cannot take more, the upstream read pauses until it
 * drains.
 */
export class UpstreamAnswer implements Dispatcher.DispatchHandler {
  private phase: Phase = 'waiting';
  private controller: Dispatcher.DispatchController | undefined;
  private clientGone = false;
  /**
   * A JSON answer's latest chunk, written when the next one arrives: a one-chunk body (the usual
   * case) then leaves with its headers and a content-length in one write. Streams never wait.
   */
  private held: Buffer | undefined;
  private statusCode = 0;
  private headers: IncomingHttpHeaders = {};
  private collected: Buffer[] = [];
  private collectedBytes = 0;
  /** JSON answers: the settle waits for this release (see `holdSettle`). */
  private release: (() => void) | undefined;
  /** The JSON answer's chunks, kept for reading its usage should its client leave before the end. */
  private body: Buffer[] | undefined;
  private bodyBytes = 0;
  /** The client left a JSON call: the rest of the answer is read for its usage only. */
  private orphaned = false;
  private readonly startedAt = performance.now();
  /** The provider's status (0 until it answered), and how the call failed, for the observer. */
  private answeredStatus = 0;
  private failure: UpstreamOutcome['error'];
  private observed = false;

  constructor(
    private readonly upstreamName: string,
    private readonly stream: boolean,
    private readonly res: Response,
    private readonly next: NextFunction,
    private readonly secrets: SecretRedactor | undefined,
    stop?: AbortSignal,
    private readonly observe?: UpstreamObserver,
  ) {
    // Callbacks are plain closures, not arrow-function class fields: tsx (`pnpm start`) names each such
    // field on every instance, a cost per request for nothing.
    res.on('close', () => this.onClientClose());
    // The meter ended the answer at its grant (the upstream ignored the cap): stop reading it.
    stop?.addEventListener('abort', () => this.onStopped(), { once: true });
    if (!stream && res.req.tollgate) {
      this.release = res.req.tollgate.holdSettle();
      this.body = [];
    }
  }

  /** The call is over: the observer hears how it ended, once. */
  private report(): void {
    if (this.observed) return;
    this.observed = true;
    this.observe?.(this.upstreamName, this.res.req.tollgate?.call?.model ?? 'unknown', {
      status: this.answeredStatus,
      ...(this.failure ? { error: this.failure } : {}),
      seconds: (performance.now() - this.startedAt) / 1000,
    });
  }

  /** The exchange is over for the meter: its settle may run. */
  private settle(): void {
    const release = this.release;
    this.release = undefined;
    release?.();
  }

  private onStopped(): void {
    if (this.phase === 'over') return;
    this.clientGone = true;
    this.phase = 'over';
    this.controller?.abort(new errors.RequestAbortedError('The answer passed its output grant.'));
  }

  private onClientClose(): void {
    if (this.res.writableFinished || this.phase === 'over') return;
    this.clientGone = true;
    if (!this.stream && (this.phase === 'waiting' || this.phase === 'piping')) {
      // Billed whole whether or not anyone reads it: read on, for the usage.
      this.orphaned = true;
      return;
    }
    this.phase = 'over';
    this.controller?.abort(new errors.RequestAbortedError('The client left.'));
    this.settle();
  }

  private flushHeadersAlone(): void {
    if (this.phase === 'piping' && !this.res.headersSent && !this.res.destroyed) this.res.flushHeaders();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Gone before anything was sent: nothing is billed, nothing to read.
    if (this.clientGone) {
      this.phase = 'over';
      controller.abort(new errors.RequestAbortedError('The client left.'));
      this.settle();
    }
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (this.phase !== 'waiting' || statusCode < 200) return; // 1xx: the real answer follows
    const { res } = this;
    this.answeredStatus = statusCode;
    if (res.req.tollgate) res.req.tollgate.upstreamStatus = statusCode;
    if (this.orphaned) {
      if (statusCode < 300) {
        this.phase = 'piping';
        return;
      }
      // A failed answer bills nothing: the record says how it failed.
      res.statusCode = statusCode >= 400 ? statusCode : 502;
      this.phase = 'over';
      controller.abort(new errors.RequestAbortedError('The client left.'));
      this.settle();
      return;
    }
    if (statusCode >= 500 || (statusCode >= 300 && statusCode < 400)) {
      // A provider API never redirects: a 3xx is as much a failure as a 5xx.
      this.phase = 'refused';
      this.failure = 'status';
      this.next(new ApiError('upstream_error', `The ${this.upstreamName} upstream failed (HTTP ${statusCode}).`));
      this.settle();
      return;
    }
    if (statusCode === 401 || statusCode === 403 || statusCode === 407) {
      // The upstream refused the gateway's own credentials: not the client's fault, and its body
      // may name the gateway's key (OpenAI shows it masked but for its ends), so none of it is passed on.
      this.phase = 'refused';
      this.failure = 'credentials';
      this.next(new ApiError('upstream_error', `The ${this.upstreamName} upstream refused the gateway's credentials (HTTP ${statusCode}).`));
      this.settle();
      return;
    }
    if (statusCode >= 400) {
      // Other 4xx (429 included) reach the client as the provider wrote them, with their retry hints.
      this.phase = 'passing';
      this.statusCode = statusCode;
      this.headers = headers;
      return;
    }
    this.phase = 'piping';
    res.statusCode = statusCode;
    const contentType = headers['content-type'];
    res.setHeader('content-type', typeof contentType === 'string' ? contentType : this.stream ? 'text/event-stream' : 'application/json');
    if (this.stream) {
      res.setHeader('cache-control', 'no-cache');
      // The headers leave with the first event when it came in the same read (the usual case),
      // else at the end of this turn of the event loop: never later, and not in a write of their own.
      setImmediate(() => this.flushHeadersAlone());
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    switch (this.phase) {
      case 'piping': {
        let out = chunk;
        if (this.body) {
          this.body.push(chunk);
          this.bodyBytes += chunk.length;
          if (this.orphaned) {
            if (this.bodyBytes > MAX_ORPHAN_BYTES) {
              // Too big to read for usage: charged its bound, like any answer whose usage is unknown.
              this.phase = 'over';
              controller.abort(new errors.ResponseExceededMaxSizeError('The answer its client left is over the cap.'));
              this.settle();
            }
            return;
          }
        }
        if (!this.stream) {
          const previous = this.held;
          this.held = chunk;
          if (previous === undefined) return;
          out = previous;
        }
        if (!this.res.write(out)) {
          controller.pause();
          this.res.once('drain', () => controller.resume());
        }
        return;
      }
      case 'passing':
        this.collectedBytes += chunk.length;
        if (this.collectedBytes > MAX_ERROR_BODY_BYTES) {
          this.passErrorAnswer(true);
          controller.abort(new errors.ResponseExceededMaxSizeError('The upstream error body is over the cap.'));
          return;
        }
        this.collected.push(chunk);
        return;
      case 'refused':
        this.collectedBytes += chunk.length;
        if (this.collectedBytes > MAX_DISCARDED_BYTES) {
          this.phase = 'over';
          controller.abort(new errors.ResponseExceededMaxSizeError('The failed answer is over the cap.'));
        }
        return;
      default:
        return;
    }
  }

  onResponseEnd(): void {
    const phase = this.phase;
    this.phase = 'over';
    this.report();
    if (phase === 'piping' && this.orphaned) {
      this.recordOrphan();
    } else if (phase === 'piping') {
      const last = this.held;
      this.held = undefined;
      if (last === undefined) this.res.end();
      else this.res.end(last);
    } else if (phase === 'passing') {
      this.passErrorAnswer(false);
    }
    this.body = undefined;
    this.settle();
  }

  /** The whole answer of a client that left: its usage goes on the record, as if it had been delivered. */
  private recordOrphan(): void {
    const ctx = this.res.req.tollgate;
    const chunks = this.body!;
    this.body = undefined;
    try {
      ctx.recordResponse(JSON.parse((chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8')));
    } catch {
      // Not JSON, or no usage in it: the meter charges the reservation's bound.
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    const phase = this.phase;
    this.phase = 'over';
    this.body = undefined;
    // The provider failed (not the proxy, nor the client, cutting it): no answer at all, or one cut short.
    if (!this.clientGone && (phase === 'waiting' || phase === 'piping' || phase === 'passing')) {
      this.failure ??= isTimeout(error) ? 'timeout' : phase === 'waiting' ? 'unreachable' : 'cut';
      const ctx = this.res.req.tollgate;
      if (ctx && phase === 'waiting') ctx.upstreamStatus = 0;
    }
    this.report();
    // Whatever happened, the meter may settle once this turn has set what it sets.
    queueMicrotask(() => this.settle());
    // Already answered (or handed to `next`), or the client left and its response is closed.
    if (phase === 'over' || phase === 'refused' || this.clientGone) return;
    const { res } = this;
    // The provider cut an answer it had started: the record says so (and does not blame the client).
    if (phase === 'piping' && res.req.tollgate) res.req.tollgate.upstreamAborted = true;
    if (!res.headersSent) {
      const started = phase !== 'waiting';
      this.next(isTimeout(error)
        ? new ApiError('upstream_timeout', started ? `The ${this.upstreamName} upstream stopped answering.` : `The ${this.upstreamName} upstream did not answer in time.`, { cause: error })
        : new ApiError('upstream_error', started ? `The ${this.upstreamName} upstream failed mid-answer.` : `The ${this.upstreamName} upstream could not be reached.`, { cause: error }));
    } else if (!res.destroyed) {
      res.destroy();
    }
  }

  /** The collected 4xx answer, with its retry hints, as the provider wrote it but for the gateway's own key. */
  private passErrorAnswer(cut: boolean): void {
    this.phase = 'over';
    const { res, headers } = this;
    for (const header of PASSED_THROUGH_HEADERS) {
      const value = headers[header];
      if (typeof value === 'string') res.setHeader(header, this.redact(value));
    }
    const contentType = headers['content-type'];
    res.statusCode = this.statusCode;
    res.setHeader('content-type', typeof contentType === 'string' ? this.redact(contentType) : 'application/json');
    const body = this.errorBody(cut);
    res.setHeader('content-length', body.length);
    res.end(body);
  }

  private redact(text: string): string {
    return this.secrets ? this.secrets.redact(text) : text;
  }

  /** The collected body without the gateway's key: upstreams may echo the credentials they were sent. */
  private errorBody(cut: boolean): Buffer {
    const collected = this.collected.length === 1 ? this.collected[0]! : Buffer.concat(this.collected);
    const { secrets } = this;
    if (!secrets) return collected;
    const text = collected.toString();
    // A body cut at the cap may end in the first part of a key, which no whole-key match finds: that end goes too.
    const kept = cut ? text.slice(0, Math.max(0, text.length - secrets.reach)) : text;
    const clean = secrets.redact(kept);
    return clean === text ? collected : Buffer.from(clean);
  }
}
