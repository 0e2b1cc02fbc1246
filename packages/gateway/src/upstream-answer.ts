// One provider call as an undici dispatch handler: the answer goes straight into the client's response, without a stream in between.
import { errors } from 'undici';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { NextFunction, Response } from 'express';
import { ApiError } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import {
  createStreamTranslator,
  isRetryableStatus,
  retryAfterMs,
  translateError,
  translateResponse,
} from '@tollgate/router';
import type { AttemptResult, StreamTranslator } from '@tollgate/router';
import type { UpstreamOutcome } from './proxy-metrics.js';
import type { SecretRedactor } from './redact.js';

/** A call a router makes as one try among several: its failures worth a retry are handed back, not answered. */
export interface RoutedTry {
  /** Told once how the try ended (see AttemptResult). */
  onResult(result: AttemptResult): void;
  /**
   * Set when the target speaks another API than the client: the answer is translated on its way.
   * Read once, when the call starts: the router may prepare another try on the same object.
   */
  translation?: { clientApi: ProviderApi; targetApi: ProviderApi; clientModel: string } | undefined;
}

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
 * - deferred: a routed try's failure worth a retry (408, 409, 429, 5xx); collected, handed to the router.
 * - over: the exchange is finished (answered, failed or left).
 */
type Phase = 'waiting' | 'piping' | 'passing' | 'refused' | 'deferred' | 'over';

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
  /** A stream's first bytes written to the client (`performance.now()`), for the time to first token. */
  private firstWrittenAt: number | undefined;
  /** The provider's status (0 until it answered), and how the call failed, for the observer. */
  private answeredStatus = 0;
  private failure: UpstreamOutcome['error'];
  private observed = false;
  /** A routed try's result was given to the router. */
  private resultTold = false;
  /** Rewrites a translated stream as it passes. */
  private streamTranslator: StreamTranslator | undefined;
  /** The translated stream's ending went out with the target's usage on the record. */
  private targetUsageRecorded = false;
  /** The routed try's translation as it was when the call started. */
  private readonly translation: RoutedTry['translation'];

  constructor(
    private readonly upstreamName: string,
    private readonly stream: boolean,
    private readonly res: Response,
    private readonly next: NextFunction,
    private readonly secrets: SecretRedactor | undefined,
    stop?: AbortSignal,
    private readonly observe?: UpstreamObserver,
    private readonly routed?: RoutedTry,
  ) {
    this.translation = routed?.translation;
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
    if (this.routed) this.tell({ kind: 'answered', firstByteMs: performance.now() - this.startedAt });
  }

  /** The call is over: the observer hears how it ended, once. */
  private report(): void {
    if (this.observed) return;
    this.observed = true;
    const { observe } = this;
    if (!observe) return;
    const outcome: UpstreamOutcome = {
      status: this.answeredStatus,
      seconds: (performance.now() - this.startedAt) / 1000,
    };
    if (this.failure) outcome.error = this.failure;
    if (this.firstWrittenAt !== undefined) outcome.firstTokenSeconds = (this.firstWrittenAt - this.startedAt) / 1000;
    observe(this.upstreamName, this.res.req.tollgate?.call?.model ?? 'unknown', outcome);
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
    this.answeredStatus = statusCode;
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
      this.failure = 'status';
      this.statusCode = statusCode;
      this.headers = headers;
      return;
    }
    if (statusCode >= 500 || (statusCode >= 300 && statusCode < 400)) {
      // A provider API never redirects: a 3xx is as much a failure as a 5xx.
      this.phase = 'refused';
      this.failure = 'status';
      this.tell({ kind: 'failed', reason: `HTTP ${statusCode}` });
      this.next(new ApiError('upstream_error', `The ${this.upstreamName} upstream failed (HTTP ${statusCode}).`));
      this.settle();
      return;
    }
    if (statusCode === 401 || statusCode === 403 || statusCode === 407) {
      // The upstream refused the gateway's own credentials: not the client's fault, and its body
      // may name the gateway's key (OpenAI shows it masked but for its ends), so none of it is passed on.
      this.phase = 'refused';
      this.failure = 'credentials';
      this.tell({ kind: 'failed', reason: `credentials refused (HTTP ${statusCode})` });
      this.next(
        new ApiError(
          'upstream_error',
          `The ${this.upstreamName} upstream refused the gateway's credentials (HTTP ${statusCode}).`,
        ),
      );
      this.settle();
      return;
    }
    if (statusCode >= 400) {
      // Other 4xx (429 included) reach the client as the provider wrote them, with their retry hints.
      this.phase = 'passing';
      this.statusCode = statusCode;
      this.headers = headers;
      this.tellAnswered();
      return;
    }
    this.phase = 'piping';
    this.tellAnswered();
    res.statusCode = statusCode;
    const contentType = headers['content-type'];
    const translation = this.translation;
    if (translation) {
      if (this.stream)
        this.streamTranslator = createStreamTranslator(
          translation.targetApi,
          translation.clientApi,
          translation.clientModel,
        );
      else this.body ??= [];
    }
    res.setHeader(
      'content-type',
      translation
        ? this.stream
          ? 'text/event-stream'
          : 'application/json'
        : typeof contentType === 'string'
          ? contentType
          : this.stream
            ? 'text/event-stream'
            : 'application/json',
    );
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
        if (this.streamTranslator) {
          out = Buffer.from(this.streamTranslator.push(chunk));
          if (out.length === 0) return;
          // The client's ending (with its usage event) is in `out`: the target's usage goes on the record first, so
          // that the cost written into that event is the one the record bills.
          if (this.streamTranslator.finished && !this.targetUsageRecorded) {
            this.targetUsageRecorded = true;
            this.recordTargetUsage(this.streamTranslator.usage());
          }
        } else if (this.translation) {
          // A translated JSON answer is rewritten whole, at its end.
          return;
        }
        if (!this.stream) {
          const previous = this.held;
          this.held = chunk;
          if (previous === undefined) return;
          out = previous;
        } else this.firstWrittenAt ??= performance.now();
        if (!this.res.write(out)) {
          controller.pause();
          this.res.once('drain', () => controller.resume());
        }
        return;
      }
      case 'passing':
      case 'deferred':
        this.collectedBytes += chunk.length;
        if (this.collectedBytes > MAX_ERROR_BODY_BYTES) {
          if (this.phase === 'deferred') this.deferredResult(true);
          else this.passErrorAnswer(true);
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
    } else if (phase === 'piping' && this.streamTranslator) {
      const rest = this.streamTranslator.end();
      this.recordTargetUsage(this.streamTranslator.usage());
      if (rest.length > 0) this.res.end(rest);
      else this.res.end();
    } else if (phase === 'piping' && this.translation) {
      this.endTranslatedJson();
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

  /** A routed try failed in a way worth a retry: the router gets it, with what to answer should no other try follow. */
  private deferredResult(cut: boolean): void {
    this.phase = 'over';
    const status = this.statusCode;
    this.tell({
      kind: 'retryable',
      reason: `HTTP ${status}`,
      ...(status === 429 || status === 503 ? { retryAfterMs: retryAfterMs(this.headers) } : {}),
      deliver: () => {
        if (this.clientGone || this.res.headersSent) return;
        if (status >= 500) {
          this.next(new ApiError('upstream_error', `The ${this.upstreamName} upstream failed (HTTP ${status}).`));
          return;
        }
        this.passErrorAnswer(cut);
      },
    });
  }

  /** The target's own usage of a translated answer: exact (cache writes included), whatever the client's shape can carry. */
  private recordTargetUsage(
    usage: Parameters<NonNullable<Response['req']['tollgate']>['recordUsage']>[0] | undefined,
  ): void {
    const ctx = this.res.req.tollgate;
    if (!usage || !ctx) return;
    try {
      ctx.recordUsage(usage);
    } catch {
      // Usage the meter cannot price: it counts from what passed instead.
    }
  }

  /** The target's whole JSON answer, rewritten in the client's API. */
  private translatedJson(): Buffer | undefined {
    const translation = this.translation!;
    const chunks = this.body ?? [];
    try {
      const json: unknown = JSON.parse((chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8'));
      this.recordTargetUsage(adapterFor(translation.targetApi).readUsage(json));
      return Buffer.from(
        JSON.stringify(translateResponse(json, translation.targetApi, translation.clientApi, translation.clientModel)),
      );
    } catch {
      return undefined;
    }
  }

  private endTranslatedJson(): void {
    const body = this.translatedJson();
    const { res } = this;
    if (body) {
      res.setHeader('content-length', body.length);
      res.end(body);
    } else if (!res.headersSent) {
      this.next(
        new ApiError('upstream_error', `The ${this.upstreamName} upstream answered with JSON that could not be read.`),
      );
    } else {
      res.destroy();
    }
  }

  /** The whole answer of a client that left: its usage goes on the record, as if it had been delivered. */
  private recordOrphan(): void {
    const ctx = this.res.req.tollgate;
    if (this.translation) {
      this.translatedJson();
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
      this.failure ??= isTimeout(error) ? 'timeout' : phase === 'waiting' ? 'unreachable' : 'cut';
      const ctx = this.res.req.tollgate;
      if (ctx && phase === 'waiting') ctx.upstreamStatus = 0;
    }
    this.report();
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
      const failure = this.waitingFailure(error);
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
        phase === 'waiting'
          ? this.waitingFailure(error)
          : isTimeout(error)
            ? new ApiError('upstream_timeout', `The ${this.upstreamName} upstream stopped answering.`, { cause: error })
            : new ApiError('upstream_error', `The ${this.upstreamName} upstream failed mid-answer.`, { cause: error }),
      );
    } else if (!res.destroyed) {
      res.destroy();
    }
  }

  /** The error of a call that got no answer at all. */
  private waitingFailure(error: Error): ApiError {
    return isTimeout(error)
      ? new ApiError('upstream_timeout', `The ${this.upstreamName} upstream did not answer in time.`, { cause: error })
      : new ApiError('upstream_error', `The ${this.upstreamName} upstream could not be reached.`, { cause: error });
  }

  /** The collected 4xx answer, with its retry hints, as the provider wrote it but for the gateway's own key. */
  private passErrorAnswer(cut: boolean): void {
    this.phase = 'over';
    const { res, headers } = this;
    for (const header of PASSED_THROUGH_HEADERS) {
      const value = headers[header];
      if (typeof value === 'string') res.setHeader(header, this.redact(value));
    }
    const translation = this.translation;
    if (translation) {
      // In the client's own API's error shape, whatever the target speaks.
      const translated = translateError(
        this.statusCode,
        this.errorBody(cut).toString('utf8'),
        translation.targetApi,
        translation.clientApi,
      );
      const body = Buffer.from(JSON.stringify(translated.body));
      res.statusCode = translated.status;
      res.setHeader('content-type', 'application/json');
      res.setHeader('content-length', body.length);
      res.end(body);
      return;
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
