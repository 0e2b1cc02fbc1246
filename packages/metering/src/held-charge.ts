// A charge whose record waits for an outcome the route reports (a tool's result, a Realtime response's usage): the
// settle is held past the response's close until then, and the record written once, to the meter's sinks.
import type { TollgateContext, UsageRecord } from '@tollgate/core';
import type { MeterCharge } from '@tollgate/core/provider-call';
import type { Request, Response } from 'express';
import { conversationOf, nextRecordId, routeOf } from './meter.js';
import type { MeterOptions } from './meter-options.js';

/** Where a held charge's record goes: the meter's sinks (or spool) and its usage feed. */
export interface ChargeSettling {
  deliver: (record: UsageRecord) => void;
  onUsage: MeterOptions['onUsage'];
}

/** Core's 'close' listener calls `responseClosed`; the route reports `Outcome` through the function `start` returns. */
export abstract class HeldCharge<Outcome> implements MeterCharge {
  protected outcome: Outcome | undefined = undefined;
  /** True once the route started the work (the call went out): its record bills it. */
  protected started = false;
  protected readonly recordId = nextRecordId();
  protected readonly route: string;
  protected readonly conversationId: string | null;

  constructor(
    protected readonly req: Request,
    protected readonly res: Response,
    protected readonly ctx: TollgateContext,
  ) {
    this.route = routeOf(req);
    this.conversationId = conversationOf(req);
  }

  /**
   * Right before the work goes out: the function that reports its outcome (call it on every path), or undefined when
   * the request settled already (its client left): then the work must not be started.
   */
  start(): ((outcome: Outcome) => void) | undefined {
    if (this.ctx.settled) return undefined;
    this.started = true;
    // The response may close (its client left) while the work runs: the record waits for the outcome.
    const release = this.ctx.holdSettle();
    return (outcome) => {
      this.outcome ??= outcome;
      release();
    };
  }

  responseClosed(): void {
    const held = this.ctx.settleHeld();
    if (held) void held.then(() => this.settle());
    else this.settle();
  }

  /** Writes the request's one record from what is known now. */
  protected abstract settle(): void;
}
