// Test harness: a stand-in for meter() (estimate before, one settle after) and a fake provider handler behind budgetGuard.
import { randomUUID } from 'node:crypto';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { apiErrorHandler, createPricing, getContext } from '@tollgate/core';
import { costNanoUsd, maxCostNanoUsd } from '@tollgate/core/costs';
import type { Identity, Pricing, ProviderApi, UsageRecord } from '@tollgate/core';
import type { ReservationLedger } from '@tollgate/core/store-contracts';
import type { CallerFilter, SpendSource } from '@tollgate/budget';
import { adapterFor } from '@tollgate/providers';

/** input $1/MTok = 1000 nano-USD a token, output $2/MTok = 2000 nano-USD a token: easy arithmetic. */
export const pricing: Pricing = createPricing({
  models: {
    'test-model': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 2 },
    'test-mini': { provider: 'openai', inputPerMTok: 0.1, outputPerMTok: 0.2 },
  },
});

export const INPUT_NANO = 1000;
export const OUTPUT_NANO = 2000;

/** Request body fields the fake provider understands besides the real ones. */
export interface TestBody {
  model?: string;
  max_tokens?: number;
  max_completion_tokens?: number;
  max_output_tokens?: number;
  stream?: boolean;
  /** Input tokens the stand-in meter counts. */
  input_tokens?: number;
  /** Output tokens the fake provider produces (capped by the output cap it is sent). */
  produce?: number;
  /** Make the fake provider fail: `502` answers 502 (nothing billed), `throw` throws in the handler. */
  fail?: '502' | 'throw';
}

/**
 * Stand-in for @tollgate/metering's meter(): sets ctx.estimate from the body and settles once on
 * close with what the handler reported (res.locals.outputTokens), like the real one will.
 */
export function fakeMeter(
  options: { defaultOutputCap?: number; settles?: boolean; api?: ProviderApi } = {},
): RequestHandler {
  return function fakeMeterMiddleware(req: Request, res: Response, next: NextFunction) {
    const ctx = getContext(req, res);
    const body = req.body as TestBody;
    body.model ??= 'test-model';
    // The route's API, declared as the real chain does (createApp mounts one per provider path).
    const call = ctx.declareCall(
      adapterFor(options.api ?? (res.locals.api as ProviderApi | undefined) ?? 'openai.chat'),
      { body },
    );
    const model = call.model!;
    const price = pricing.get(model);
    const inputTokens = body.input_tokens ?? 100;
    const maxOutputTokens = call.outputCap ?? options.defaultOutputCap ?? 1000;
    ctx.identity = identityOf(req);
    ctx.setEstimate(
      {
        provider: price.provider,
        model,
        inputTokens,
        maxOutputTokens,
        costNanoUsd: maxCostNanoUsd(inputTokens, maxOutputTokens, price),
        totalTokens: inputTokens + maxOutputTokens,
      },
      price,
    );
    if (options.settles === false) return next();
    ctx.metered = true;
    res.once('close', () => {
      const estimate = ctx.estimate!;
      const outputTokens = (res.locals.outputTokens as number | undefined) ?? 0;
      const billed = res.statusCode < 500 || outputTokens > 0;
      const usage = {
        inputTokens: billed ? estimate.inputTokens : 0,
        cachedInputTokens: 0,
        cacheWriteTokens: 0,
        outputTokens,
        reasoningTokens: 0,
      };
      const record: UsageRecord = {
        ...usage,
        id: randomUUID(),
        requestId: ctx.requestId,
        timestamp: new Date(ctx.startedAt).toISOString(),
        keyId: ctx.identity?.keyId ?? null,
        tenantId: ctx.identity?.tenantId ?? null,
        userId: ctx.identity?.userId ?? null,
        feature: ctx.identity?.feature ?? null,
        route: req.path,
        provider: estimate.provider,
        model: estimate.model,
        requestedModel: ctx.requestedModel ?? estimate.model,
        costNanoUsd: costNanoUsd(usage, pricing.get(estimate.model)),
        estimatedCostNanoUsd: estimate.costNanoUsd,
        status: res.statusCode,
        stream: call.stream,
        aborted: !res.writableFinished,
        latencyMs: Date.now() - ctx.startedAt,
        usageSource: 'counted',
      };
      void ctx.settle(record);
    });
    next();
  };
}

/** Identity from test headers (what an auth middleware would set). */
function identityOf(req: Request): Identity {
  const header = (name: string) => req.get(name) || undefined;
  const sessionId = header('x-test-session');
  return {
    keyId: header('x-test-key') ?? 'key-1',
    tenantId: header('x-test-tenant'),
    userId: header('x-test-user'),
    feature: header('x-test-feature'),
    ...(sessionId === undefined ? {} : { sessionId }),
    scopes: [],
    authMethod: 'api_key',
  };
}

/** The fake provider: answers with the cap it was sent, produces `produce` tokens (or the whole cap). */
export function fakeProvider(req: Request, res: Response): void {
  const body = req.body as TestBody;
  const cap = req.tollgate.call?.outputCap ?? req.tollgate.estimate?.maxOutputTokens ?? 0;
  if (body.fail === 'throw') throw new Error('provider exploded');
  if (body.fail === '502') {
    res.status(502).json({ error: { message: 'upstream failed', code: 'upstream_error' } });
    return;
  }
  const outputTokens = Math.min(cap, body.produce ?? cap);
  res.locals.outputTokens = outputTokens;
  res.json({
    model: body.model,
    cap,
    outputTokens,
    requestedModel: req.tollgate.requestedModel ?? null,
    estimate: req.tollgate.estimate,
  });
}

/** express.json, the stand-in meter, the guard, the fake provider on the three provider routes. */
export function createApp(
  guard: RequestHandler,
  meter: RequestHandler = fakeMeter(),
  provider: RequestHandler = fakeProvider,
): express.Express {
  const app = express();
  app.use(express.json());
  const routes: [string, ProviderApi][] = [
    ['/v1/chat/completions', 'openai.chat'],
    ['/v1/responses', 'openai.responses'],
    ['/v1/messages', 'anthropic.messages'],
  ];
  for (const [path, api] of routes) {
    const declareApi: RequestHandler = (_req, res, next) => {
      res.locals.api = api;
      next();
    };
    app.post(path, declareApi, meter, guard, provider);
  }
  app.use(apiErrorHandler());
  return app;
}

/** Polls until `check` is true (settles run after the response); fails after `tries`. */
export async function eventually(check: () => Promise<boolean> | boolean, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('condition not reached');
}

export async function usageOf(ledger: ReservationLedger, key: string): Promise<{ spent: number; reserved: number }> {
  const [usage] = await ledger.usage([key]);
  return { spent: usage?.spent ?? 0, reserved: usage?.reserved ?? 0 };
}

/** A usage ledger in memory: one row per call, summed per caller the way the SQL ledger's reads sum them. */
export class RecordedCalls implements SpendSource {
  readonly rows: { keyId: string; tenantId: string; spentNanoUsd: number; at: number }[] = [];
  /** What each read kept to (`only`), in order: undefined for a read of every caller. */
  readonly asked: (CallerFilter | undefined)[] = [];

  record(tenantId: string, spentNanoUsd: number): void {
    this.rows.push({ keyId: `${tenantId}-key`, tenantId, spentNanoUsd, at: Date.now() });
  }

  async spentByCaller(
    since: number,
    until: number,
    finishedBefore?: number,
    finishedFrom?: number,
    only?: CallerFilter,
  ) {
    this.asked.push(only);
    const sums = new Map<string, number>();
    for (const row of this.rows) {
      if (row.at < since || row.at >= until) continue;
      if (only && !only.tenantIds.includes(row.tenantId) && !only.keyIds.includes(row.keyId)) continue;
      if (finishedBefore !== undefined && row.at >= finishedBefore) continue;
      if (finishedFrom !== undefined && row.at < finishedFrom) continue;
      sums.set(row.tenantId, (sums.get(row.tenantId) ?? 0) + row.spentNanoUsd);
    }
    return [...sums].map(([tenantId, spentNanoUsd]) => ({
      keyId: `${tenantId}-key`,
      userId: null,
      tenantId,
      feature: null,
      model: null,
      spentNanoUsd,
    }));
  }
}
