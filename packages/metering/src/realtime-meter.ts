// realtimeMeter(): meters the responses of a Realtime session (docs/realtime.md): each one reserved at its worst case
// before it starts, then one record from its `response.done` usage, priced per class by the one pricer.
import { getContext } from '@tollgate/core';
import { costNanoUsd, maxCostNanoUsd } from '@tollgate/core/costs';
import type { MediaUsage, ResolvedPrice } from '@tollgate/core/costs';
import { assertKnownOptions } from '@tollgate/core/options';
import type { Pricing, TokenUsage, TollgateContext, UsageRecord } from '@tollgate/core';
import type { Request, Response } from 'express';
import { HeldCharge } from './held-charge.js';
import type { ChargeSettling } from './held-charge.js';
import { newRecord, tellUsage, usageDeliverer } from './meter.js';
import { invalidOption, resolveDestination } from './meter-options.js';
import type { MeterOptions } from './meter-options.js';

type RealtimeMeterOptions = Pick<MeterOptions, 'sinks' | 'spool' | 'onUsage'>;

const KNOWN_OPTIONS = ['sinks', 'spool', 'onUsage'] as const;

/** One response of a session, as known before it starts. */
export interface RealtimeResponseAsk {
  model: string;
  price: ResolvedPrice;
  /** The input tokens the session may bill this response for, at most (reserved as audio, the dearest input). */
  inputTokens: number;
  /** The response's output cap (reserved as audio, the dearest output). */
  maxOutputTokens: number;
}

/** How a response that started ended: the usage of its `response.done`, or none (the socket closed before it). */
export interface RealtimeOutcome {
  usage: TokenUsage | undefined;
  /** The status an HTTP route would have answered: 200 for a response the upstream finished. */
  status: number;
}

/** One metered response, from its charge to its record. */
export interface MeteredRealtimeResponse {
  /**
   * Right before the response goes upstream: the function that reports its outcome (call it on every path), or
   * undefined when the request settled already: then the response must not be started.
   */
  start(): ((outcome: RealtimeOutcome) => void) | undefined;
}

/** The worst case of `ask`: every input token as audio, the whole cap as audio output. */
function worstCase(ask: RealtimeResponseAsk): MediaUsage {
  return { audioInputTokens: ask.inputTokens, audioOutputTokens: ask.maxOutputTokens };
}

/**
 * Meters Realtime responses. `charge(req, res, ask)` sets `req.tollgate.estimate` at the response's worst case (budgets
 * reserve it whole, token limits count its input and cap) and takes charge of the request's record: one
 * `UsageRecord` per response, written when its outcome is known, to the same sinks (or spool) and `onUsage` as
 * `meter()`'s. A response that ended with `response.done` is billed its usage at `pricing`'s prices (text, audio,
 * cached and image tokens apart); one cut before it (the socket closed) is billed what was reserved for it.
 */
export function realtimeMeter(pricing: Pricing, options: RealtimeMeterOptions = {}) {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_METERING_UNKNOWN_OPTION', 'realtimeMeter');
  const { sinks, spool } = resolveDestination(options, 'realtimeMeter()');
  if (options.onUsage !== undefined && typeof options.onUsage !== 'function')
    throw invalidOption('realtimeMeter() option onUsage must be a function (record, req) => void');
  const settling: RealtimeSettling = { deliver: usageDeliverer(spool, sinks), onUsage: options.onUsage, pricing };

  return function chargeRealtimeResponse(
    req: Request,
    res: Response,
    ask: RealtimeResponseAsk,
  ): MeteredRealtimeResponse {
    const ctx = getContext(req, res);
    const media = worstCase(ask);
    ctx.requestedModel ??= ask.model;
    ctx.setEstimate(
      {
        provider: ask.price.provider,
        model: ask.model,
        inputTokens: 0,
        maxOutputTokens: 0,
        media,
        costNanoUsd: maxCostNanoUsd(0, 0, ask.price, { media }),
        totalTokens: ask.inputTokens + ask.maxOutputTokens,
      },
      ask.price,
    );
    const metered = new RealtimeCharge(settling, req, res, ctx, ask);
    ctx.metered = true;
    ctx.meterCharge = metered;
    return metered;
  };
}

interface RealtimeSettling extends ChargeSettling {
  pricing: Pricing;
}

/** The record's token counts: every modality summed (the record has no media columns; its cost prices them apart). */
function countsOf(usage: TokenUsage): Pick<UsageRecord, 'inputTokens' | 'cachedInputTokens' | 'outputTokens'> {
  const media = usage.media ?? {};
  return {
    inputTokens: usage.inputTokens + (media.audioInputTokens ?? 0) + (media.imageInputTokens ?? 0),
    cachedInputTokens: usage.cachedInputTokens + (media.cachedAudioInputTokens ?? 0),
    outputTokens: usage.outputTokens + (media.audioOutputTokens ?? 0),
  };
}

/** One response's charge: the session reports its outcome; its record bills the usage, else what was held. */
class RealtimeCharge extends HeldCharge<RealtimeOutcome> implements MeteredRealtimeResponse {
  constructor(
    private readonly settling: RealtimeSettling,
    req: Request,
    res: Response,
    ctx: TollgateContext,
    private readonly ask: RealtimeResponseAsk,
  ) {
    super(req, res, ctx);
  }

  protected settle(): void {
    const { ctx, res, ask, outcome } = this;
    const usage = outcome?.usage;
    const record = newRecord(ctx, this.recordId, this.route, this.conversationId, usage ? 'provider' : 'counted');
    const reserved = ctx.estimate?.costNanoUsd ?? 0;
    record.provider = ask.price.provider;
    record.model = ask.model;
    record.stream = true;
    record.estimatedCostNanoUsd = reserved;
    record.priceVersion = this.settling.pricing.version;
    if (usage) {
      Object.assign(record, countsOf(usage));
      record.costNanoUsd = costNanoUsd(usage, ask.price);
    } else if (this.started) {
      // Started, and no `response.done` came (the socket closed): what the upstream billed is not known; the
      // reservation is its bound, so that is what is billed.
      record.costNanoUsd = reserved;
      record.aborted = true;
    }
    const refusal = ctx.refusal;
    record.status = outcome?.status ?? refusal?.status ?? res.statusCode;
    record.latencyMs = Math.max(0, Date.now() - ctx.startedAt);
    if (!this.started && refusal !== undefined && refusal.layer !== 'upstream') record.refusedBy = refusal.layer;
    void ctx.settle(record);
    this.settling.deliver(record);
    tellUsage(this.settling.onUsage, record, this.req);
  }
}
