// How one upstream call ended: for a router, its try's result; for the metrics, its status, failure and times.
import type { Response } from 'express';
import type { UpstreamOutcome } from '@tollgate/core/provider-call';
import type { AttemptResult } from '../index.js';
import type { Translation } from './upstream-translation.js';

/** A call a router makes as one try among several: its failures worth a retry are handed back, not answered. */
export interface RoutedTry {
  /** Told once how the try ended (see AttemptResult). */
  onResult(result: AttemptResult): void;
  /**
   * Set when the target speaks another API than the client: the answer is translated on its way.
   * Read once, when the call starts: the router may prepare another try on the same object.
   */
  translation?: Translation | undefined;
}

/** Told once per call how it ended: the upstream's name, the model the call ran with, the outcome. */
export type UpstreamObserver = (upstream: string, model: string, outcome: UpstreamOutcome) => void;

/** One call's outcome, told to the observer once, when the call is over. */
export class CallOutcome {
  readonly startedAt = performance.now();
  /** A stream's first bytes written to the client (`performance.now()`), for the time to first token. */
  private firstWrittenAt: number | undefined;
  /** The provider's status (0 until it answered). */
  status = 0;
  /** How the call failed, when it did. */
  failure: UpstreamOutcome['error'];
  private told = false;

  constructor(
    private readonly upstreamName: string,
    private readonly res: Response,
    private readonly observe: UpstreamObserver | undefined,
  ) {}

  /** A stream's bytes were written to the client (the first time counts). */
  written(): void {
    this.firstWrittenAt ??= performance.now();
  }

  /** The call is over: the observer hears how it ended, once. */
  report(): void {
    if (this.told) return;
    this.told = true;
    const { observe } = this;
    if (!observe) return;
    const outcome: UpstreamOutcome = { status: this.status, seconds: (performance.now() - this.startedAt) / 1000 };
    if (this.failure) outcome.error = this.failure;
    const call = this.res.req.tollgate?.call;
    // A JSON call asked upstream as a stream (`jsonFromStream`) sends its client nothing until the end: no first token.
    if (this.firstWrittenAt !== undefined && !call?.jsonFromStream)
      outcome.firstTokenSeconds = (this.firstWrittenAt - this.startedAt) / 1000;
    observe(this.upstreamName, call?.model ?? 'unknown', outcome);
  }
}
