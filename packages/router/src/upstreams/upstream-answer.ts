// One provider call as an undici dispatch handler: the answer goes straight into the client's response, without a stream in between.
import { errors } from 'undici';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { NextFunction, Response } from 'express';
import { ApiError } from '@tollgate/core';
import { isRetryableStatus, retryAfterMs } from '../index.js';
import type { AttemptResult } from '../index.js';
import type { SecretRedactor } from './redact.js';
import {
  CollectedAnswer,
  cutAnswerError,
  failedStatusError,
  isTimeout,
  noAnswerError,
  refusedKeyError,
} from './upstream-error-answer.js';
import { CallOutcome } from './upstream-outcome.js';
import type { RoutedTry, UpstreamObserver } from './upstream-outcome.js';
import { AnswerTranslation } from './upstream-translation.js';

/**
 * A JSON answer whose client left is still read for its usage (the provider bills it whole), up to
 * this size; past it the read stops and the call is charged its reservation's bound.
 */
const MAX_ORPHAN_BYTES = 8 * 1024 * 1024;
/** What is read (and dropped) of a failed answer to keep its connection for the next call; past it the call is cut. */
const MAX_DISCARDED_BYTES = 128 * 1024;

/**
 * - waiting: no answer yet; a failure is the upstream's (502/504).
 * - piping: a 2xx, written to the client as it arrives.
 * - passing: a 4xx, collected (capped) and passed on whole with its retry hints, the gateway's key taken out.
 * - refused: a 5xx, 3xx or a refusal of the gateway's own key; `next(error)` answered, the rest is dropped.
 * - deferred: a routed try's failure worth a retry (408, 409, 429, 5xx); collected, handed to the router.
 * - over: the exchange is finished (answered, failed or left).
 */
type Phase = 'waiting' | 'piping' | 'passing' | 'refused' | 'deferred' | 'over';

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
  /** A failed answer (passing, deferred), collected to be passed on. */
  private collected: CollectedAnswer | undefined;
  /** What was read (and dropped) of a refused answer. */
  private discardedBytes = 0;
  /** JSON answers: the settle waits for this release (see `holdSettle`). */
  private release: (() => void) | undefined;
  /** The JSON answer's chunks, kept for reading its usage should its client leave before the end. */
  private body: Buffer[] | undefined;
  private bodyBytes = 0;
  /** The client left a JSON call: the rest of the answer is read for its usage only. */
  private orphaned = false;
  /** How the call ended, for the observer. */
  private readonly outcome: CallOutcome;
  /** A routed try's result was given to the router. */
  private resultTold = false;
  /** The routed try's translation as it was when the call started. */
  private readonly translation: AnswerTranslation | undefined;

  constructor(
    private readonly upstreamName: string,
    private readonly stream: boolean,
    private readonly res: Response,
    private readonly next: NextFunction,
    private readonly secrets: SecretRedactor | undefined,
    stop?: AbortSignal,
    observe?: UpstreamObserver,
    private readonly routed?: RoutedTry,
  ) {
    this.outcome = new CallOutcome(upstreamName, res, observe);
    this.translation = routed?.translation ? new AnswerTranslation(routed.translation, upstreamName, res) : undefined;
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

  /** A routed try: the router hears how it ended, once. */
  private tell(result: AttemptResult): void {
    if (this.resultTold || !this.routed) return;
    this.resultTold = true;
    this.routed.onResult(result);
  }

  /** A routed try was answered (its time to first byte is measured only then). */
  private tellAnswered(): void {
    if (this.routed) this.tell({ kind: 'answered', firstByteMs: performance.now() - this.outcome.startedAt });
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
      this.tell({ kind: 'failed', reason: 'the client left' });
      controller.abort(new errors.RequestAbortedError('The client left.'));
      this.settle();
    }
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (this.phase !== 'waiting' || statusCode < 200) return; // 1xx: the real answer follows
    const { res } = this;
    this.outcome.status = statusCode;
    if (res.req.tollgate) res.req.tollgate.upstreamStatus = statusCode;
    if (this.orphaned) {
      if (statusCode < 300) {
        this.phase = 'piping';
        this.tellAnswered();
        return;
      }
      this.tell({ kind: 'failed', reason: 'the client left' });
      // A failed answer bills nothing: the record says how it failed.
      res.statusCode = statusCode >= 400 ? statusCode : 502;
      this.phase = 'over';
      controller.abort(new errors.RequestAbortedError('The client left.'));
      this.settle();
      return;
    }
    if (this.routed && isRetryableStatus(statusCode)) {
      // Another try may follow: nothing reaches the client yet; the router decides (see `deferredResult`).
      this.phase = 'deferred';
      this.outcome.failure = 'status';
      this.collected = new CollectedAnswer(statusCode, headers);
      return;
    }
    if (statusCode >= 500 || (statusCode >= 300 && statusCode < 400)) {
      // A provider API never redirects: a 3xx is as much a failure as a 5xx.
      this.refuse('status', `HTTP ${statusCode}`, failedStatusError(this.upstreamName, statusCode));
      return;
    }
    if (statusCode === 401 || statusCode === 403 || statusCode === 407) {
      // The gateway's own key, refused: none of the answer is passed on.
      const reason = `credentials refused (HTTP ${statusCode})`;
      this.refuse('credentials', reason, refusedKeyError(this.upstreamName, statusCode));
      return;
    }
    if (statusCode >= 400) {
      // Other 4xx (429 included) reach the client as the provider wrote them, with their retry hints.
      this.phase = 'passing';
      this.collected = new CollectedAnswer(statusCode, headers);
      this.tellAnswered();
      return;
    }
    this.phase = 'piping';
    this.tellAnswered();
    res.statusCode = statusCode;
    const translation = this.translation;
    if (translation) {
      if (this.stream) translation.startStream();
      else this.body ??= [];
    }
    // A translated answer is in the client's API: the upstream's own content type says nothing of it.
    const contentType = translation ? undefined : headers['content-type'];
    res.setHeader(
      'content-type',
      typeof contentType === 'string' ? contentType : this.stream ? 'text/event-stream' : 'application/json',
    );
    // A JSON call answered from a stream (`jsonFromStream`) is held whole by the meter: its headers wait for it.
    if (this.stream && res.req.tollgate?.call?.jsonFromStream !== true) {
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
        if (this.translation) {
          // A translated JSON answer is rewritten whole, at its end.
          if (!this.stream) return;
          out = this.translation.streamChunk(chunk);
          if (out.length === 0) return;
        }
        if (!this.stream) {
          const previous = this.held;
          this.held = chunk;
          if (previous === undefined) return;
          out = previous;
        } else this.outcome.written();
        if (!this.res.write(out)) {
          controller.pause();
          this.res.once('drain', () => controller.resume());
        }
        return;
      }
      case 'passing':
      case 'deferred':
        if (!this.collected!.add(chunk)) {
          if (this.phase === 'deferred') this.deferredResult(true);
          else this.passErrorAnswer(true);
          controller.abort(new errors.ResponseExceededMaxSizeError('The upstream error body is over the cap.'));
        }
        return;
      case 'refused':
        this.discardedBytes += chunk.length;
        if (this.discardedBytes > MAX_DISCARDED_BYTES) {
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
    this.outcome.report();
    if (phase === 'piping' && this.orphaned) {
      this.recordOrphan();
    } else if (phase === 'piping' && this.translation) {
      if (this.stream) this.translation.endStream();
      else this.translation.endJson(this.body ?? [], (error) => this.next(error));
    } else if (phase === 'piping') {
      const last = this.held;
      this.held = undefined;
      if (last === undefined) this.res.end();
      else this.res.end(last);
    } else if (phase === 'passing') {
      this.passErrorAnswer(false);
    } else if (phase === 'deferred') {
      this.deferredResult(false);
    }
    this.body = undefined;
    this.settle();
  }

  /** An answer not passed on: the client gets `error`, the rest of the answer is dropped. */
  private refuse(failure: 'status' | 'credentials', reason: string, error: ApiError): void {
    this.phase = 'refused';
    this.outcome.failure = failure;
    this.tell({ kind: 'failed', reason });
    this.next(error);
    this.settle();
  }

  /** A routed try failed in a way worth a retry: the router gets it, with what to answer should no other try follow. */
  private deferredResult(cut: boolean): void {
    this.phase = 'over';
    const { status, headers } = this.collected!;
    this.tell({
      kind: 'retryable',
      reason: `HTTP ${status}`,
      ...(status === 429 || status === 503 ? { retryAfterMs: retryAfterMs(headers) } : {}),
      deliver: () => {
        if (this.clientGone || this.res.headersSent) return;
        if (status >= 500) {
          this.next(failedStatusError(this.upstreamName, status));
          return;
        }
        this.passErrorAnswer(cut);
      },
    });
  }

  /** The whole answer of a client that left: its usage goes on the record, as if it had been delivered. */
  private recordOrphan(): void {
    const ctx = this.res.req.tollgate;
    if (this.translation) {
      this.translation.json(this.body ?? []);
      this.body = undefined;
      return;
    }
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
      this.outcome.failure ??= isTimeout(error) ? 'timeout' : phase === 'waiting' ? 'unreachable' : 'cut';
      const ctx = this.res.req.tollgate;
      if (ctx && phase === 'waiting') ctx.upstreamStatus = 0;
    }
    this.outcome.report();
    // Whatever happened, the meter may settle once this turn has set what it sets.
    queueMicrotask(() => this.settle());
    if (this.clientGone) this.tell({ kind: 'failed', reason: 'the client left' });
    if (phase === 'deferred' && !this.clientGone) {
      this.deferredResult(true);
      return;
    }
    // Already answered (or handed to `next`), or the client left and its response is closed.
    if (phase === 'over' || phase === 'refused' || this.clientGone) return;
    const { res } = this;
    if (phase === 'waiting' && this.routed) {
      // No answer at all: another try may follow; the router answers with this failure if none does.
      const failure = noAnswerError(this.upstreamName, error);
      this.tell({
        kind: 'retryable',
        reason: isTimeout(error) ? 'timed out' : 'unreachable',
        deliver: () => {
          if (!res.headersSent && !this.clientGone) this.next(failure);
        },
      });
      return;
    }
    this.tell({ kind: 'failed', reason: phase === 'piping' ? 'cut mid-answer' : 'failed' });
    // The provider cut an answer it had started: the record says so (and does not blame the client).
    if (phase === 'piping' && res.req.tollgate) res.req.tollgate.upstreamAborted = true;
    if (!res.headersSent) {
      this.next(
        phase === 'waiting' ? noAnswerError(this.upstreamName, error) : cutAnswerError(this.upstreamName, error),
      );
    } else if (!res.destroyed) {
      res.destroy();
    }
  }

  /** The collected 4xx answer, with its retry hints, as the provider wrote it but for the gateway's own key. */
  private passErrorAnswer(cut: boolean): void {
    this.phase = 'over';
    this.collected!.writeTo(this.res, this.secrets, this.translation, cut);
  }
}
