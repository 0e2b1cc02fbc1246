// toolMeter(): meters calls priced per call (MCP tools): the estimate at the price before the call, one record after it.
import { getContext } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { TollgateContext } from '@tollgate/core';
import type { MeteredToolCall, PricedToolCall, ToolCallOutcome } from '@tollgate/core/provider-call';
import type { Request, Response } from 'express';
import { HeldCharge } from './held-charge.js';
import type { ChargeSettling } from './held-charge.js';
import { newRecord, tellUsage, usageDeliverer } from './meter.js';
import { invalidOption, resolveDestination } from './meter-options.js';
import type { MeterOptions } from './meter-options.js';

type ToolMeterOptions = Pick<MeterOptions, 'sinks' | 'spool' | 'onUsage'>;

const KNOWN_OPTIONS = ['sinks', 'spool', 'onUsage'] as const;

/**
 * Meters calls that cost a fixed price each (an MCP server's tools) rather than tokens. `charge(req, res, call)`
 * sets `req.tollgate.estimate` at the call's price (no tokens: budgets reserve the price, token limits count
 * nothing) and takes charge of the request's record: one `UsageRecord` with `kind: "tool"` and `tool`, written
 * when the call's outcome is known and the response closed, to the same sinks (or spool) and `onUsage` as
 * `meter()`'s. The record charges the price only for a call the server answered (`billed`); a call refused
 * before it ran, failed, or never made (its client left) is recorded at 0.
 */
export function toolMeter(options: ToolMeterOptions = {}) {
  // Mount no meter() on the same route: the request's one record is this one's.
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_METERING_UNKNOWN_OPTION', 'toolMeter');
  const { sinks, spool } = resolveDestination(options, 'toolMeter()');
  if (options.onUsage !== undefined && typeof options.onUsage !== 'function')
    throw invalidOption('toolMeter() option onUsage must be a function (record, req) => void');
  const settling: ChargeSettling = { deliver: usageDeliverer(spool, sinks), onUsage: options.onUsage };

  return function chargeToolCall(req: Request, res: Response, call: PricedToolCall): MeteredToolCall {
    const ctx = getContext(req, res);
    ctx.setEstimate(
      {
        provider: 'mcp',
        model: call.tool,
        inputTokens: 0,
        maxOutputTokens: 0,
        costNanoUsd: call.costNanoUsd,
        totalTokens: 0,
      },
      undefined,
    );
    const metered = new ToolCallCharge(settling, req, res, ctx, call);
    ctx.metered = true;
    ctx.meterCharge = metered;
    return metered;
  };
}

/** One tool call's charge: the route reports its outcome; its record bills the price when the server answered it. */
class ToolCallCharge extends HeldCharge<ToolCallOutcome> implements MeteredToolCall {
  constructor(
    private readonly settling: ChargeSettling,
    req: Request,
    res: Response,
    ctx: TollgateContext,
    private readonly call: PricedToolCall,
  ) {
    super(req, res, ctx);
  }

  protected settle(): void {
    const { ctx, res, call, outcome } = this;
    const record = newRecord(ctx, this.recordId, this.route, this.conversationId, 'provider');
    record.kind = 'tool';
    record.tool = call.tool;
    record.provider = 'mcp';
    record.costNanoUsd = outcome?.billed ? call.costNanoUsd : 0;
    record.estimatedCostNanoUsd = call.costNanoUsd;
    const refusal = ctx.refusal;
    record.status = outcome?.status ?? refusal?.status ?? res.statusCode;
    record.aborted = !res.writableFinished;
    record.latencyMs = Math.max(0, Date.now() - ctx.startedAt);
    if (!outcome && refusal !== undefined && refusal.layer !== 'upstream') record.refusedBy = refusal.layer;
    void ctx.settle(record);
    this.settling.deliver(record);
    tellUsage(this.settling.onUsage, record, this.req);
  }
}
