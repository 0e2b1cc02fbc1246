// One provider call as an undici dispatch handler: the answer goes straight into the client's response, without a stream in between.
import { errors } from 'undici';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { NextFunction, Response } from 'express';
import { ApiError } from '@tollgate/core';
import type { SecretRedactor } from './redact.js';

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
 * anything was sent reaches `next` (502/504), a failure mid-answer cuts the response, and a
 * client that leaves aborts the upstream call. Backpressure is kept: when `res` cannot take
 * more, the upstream read pauses until it drains.
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

  constructor(
    private readonly upstreamName: string,
    private readonly stream: boolean,
    private readonly res: Response,
    private readonly next: NextFunction,
    private readonly secrets: SecretRedactor | undefined,
    stop?: AbortSignal,
  ) {
    // Callbacks are plain closures, not arrow-function class fields: tsx (`pnpm start`) names each such
    // field on every instance, a cost per request for nothing.
    res.on('close', () => this.onClientClose());
    // The meter ended the answer at its grant (the upstream ignored the cap): stop reading it.
    stop?.addEventListener('abort', () => this.onStopped(), { once: true });
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
    this.phase = 'over';
    this.controller?.abort(new errors.RequestAbortedError('The client left.'));
  }

  private flushHeadersAlone(): void {
    if (this.phase === 'piping' && !this.res.headersSent && !this.res.destroyed) this.res.flushHeaders();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new errors.RequestAbortedError('The client left.'));
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (this.phase !== 'waiting' || statusCode < 200) return; // 1xx: the real answer follows
    const { res } = this;
    if (statusCode >= 500 || (statusCode >= 300 && statusCode < 400)) {
      // A provider API never redirects: a 3xx is as much a failure as a 5xx.
      this.phase = 'refused';
      this.next(new ApiError('upstream_error', `The ${this.upstreamName} upstream failed (HTTP ${statusCode}).`));
      return;
    }
    if (statusCode === 401 || statusCode === 403 || statusCode === 407) {
      // The upstream refused the gateway's own credentials: not the client's fault, and its body
      // may name the gateway's key (OpenAI shows it masked but for its ends), so none of it is passed on.
      this.phase = 'refused';
      this.next(new ApiError('upstream_error', `The ${this.upstreamName} upstream refused the gateway's credentials (HTTP ${statusCode}).`));
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
    if (phase === 'piping') {
      const last = this.held;
      this.held = undefined;
      if (last === undefined) this.res.end();
      else this.res.end(last);
    } else if (phase === 'passing') {
      this.passErrorAnswer(false);
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    const phase = this.phase;
    this.phase = 'over';
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
