// One OpenTelemetry span per provider call, named and filled after the GenAI semantic conventions, through @opentelemetry/api alone.
import type { IncomingHttpHeaders } from 'node:http';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Attributes, Span, Tracer } from '@opentelemetry/api';
import type { TollgateContext, UsageRecord } from '@tollgate/core';
import type { ProviderAdapter } from '@tollgate/providers';

/** The tracer's name: what a span's instrumentation scope says. */
export const METERING_TRACER_NAME = '@tollgate/metering';

/** The metering tracer of the global provider: a no-op until an OpenTelemetry SDK registers one. */
export function meteringTracer(): Tracer {
  return trace.getTracer(METERING_TRACER_NAME);
}

/**
 * Starts the span of a call about to leave for the provider. Only what a sampler may decide on is
 * set at the start (operation, provider, model); the rest only when the span records, so that
 * without an SDK a call costs a few property reads. The parent is the active span (an HTTP
 * instrumentation's), else the caller's `traceparent`.
 */
export function startCallSpan(
  tracer: Tracer,
  ctx: TollgateContext,
  adapter: ProviderAdapter,
  headers: IncomingHttpHeaders,
): Span {
  const call = ctx.call;
  const estimate = ctx.estimate;
  const operation = adapter.genAi?.operation ?? 'chat';
  const model = call?.model ?? estimate?.model ?? '';
  const provider = adapter.genAi?.provider ?? estimate?.provider ?? adapter.provider;
  const active = context.active();
  // The registered propagator reads only its own headers, and hands the context back as it is when they are absent.
  const parent = trace.getSpan(active) ? active : propagation.extract(active, headers);
  const span = tracer.startSpan(
    model ? `${operation} ${model}` : operation,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'gen_ai.operation.name': operation,
        'gen_ai.provider.name': provider,
        'gen_ai.request.model': model,
      },
    },
    parent,
  );
  if (!span.isRecording()) return span;
  const attributes: Attributes = { 'tollgate.request.id': ctx.requestId };
  if (call) {
    attributes['gen_ai.request.stream'] = call.stream;
    if (call.outputCap !== undefined) attributes['gen_ai.request.max_tokens'] = call.outputCap;
    if (call.choices > 1) attributes['gen_ai.request.choice.count'] = call.choices;
  }
  if (ctx.requestedModel !== undefined && ctx.requestedModel !== model)
    attributes['tollgate.requested_model'] = ctx.requestedModel;
  if (estimate) attributes['tollgate.estimated_cost.nano_usd'] = estimate.costNanoUsd;
  const identity = ctx.identity;
  // Ids only: a key's id names it, never the key itself.
  if (identity?.tenantId !== undefined) attributes['tollgate.tenant.id'] = identity.tenantId;
  if (identity?.feature !== undefined) attributes['tollgate.feature'] = identity.feature;
  if (identity?.keyId !== undefined) attributes['tollgate.key.id'] = identity.keyId;
  span.setAttributes(attributes);
  return span;
}

/** Why a call failed, as `error.type` says it: the refusal's code, else the status, else how it was cut. */
function errorType(record: UsageRecord | undefined, ctx: TollgateContext): string | undefined {
  if (!record) return 'metering_failed';
  if (ctx.refusal) return ctx.refusal.code;
  if (record.status >= 400) return String(record.status);
  return record.upstreamAborted ? 'upstream_aborted' : undefined;
}

/** Ends a call's span with what the usage record says: tokens, the model that answered, the cost. */
export function endCallSpan(span: Span, record: UsageRecord | undefined, ctx: TollgateContext): void {
  if (!span.isRecording()) {
    span.end();
    return;
  }
  // One call into the span for everything the end knows.
  const attributes: Attributes = {};
  if (record) {
    attributes['gen_ai.usage.input_tokens'] = record.inputTokens;
    attributes['gen_ai.usage.output_tokens'] = record.outputTokens;
    attributes['tollgate.cost.nano_usd'] = record.costNanoUsd;
    attributes['tollgate.usage_source'] = record.usageSource;
    if (record.cachedInputTokens > 0) attributes['gen_ai.usage.cache_read.input_tokens'] = record.cachedInputTokens;
    if (record.cacheWriteTokens > 0) attributes['gen_ai.usage.cache_creation.input_tokens'] = record.cacheWriteTokens;
    if (record.reasoningTokens > 0) attributes['gen_ai.usage.reasoning.output_tokens'] = record.reasoningTokens;
    // The model the provider named in its answer (the billed one); a model counted by tollgate is not an answer's.
    if (record.usageSource === 'provider' && record.model !== null) attributes['gen_ai.response.model'] = record.model;
    if (record.aborted) attributes['tollgate.aborted'] = true;
    if (record.outputOverCap) attributes['tollgate.output_over_cap'] = true;
  }
  if (ctx.upstreamStatus !== undefined && ctx.upstreamStatus > 0)
    attributes['http.response.status_code'] = ctx.upstreamStatus;
  const failure = errorType(record, ctx);
  if (failure !== undefined) attributes['error.type'] = failure;
  span.setAttributes(attributes);
  if (failure !== undefined)
    span.setStatus({ code: SpanStatusCode.ERROR, ...(ctx.refusal ? { message: ctx.refusal.message } : {}) });
  span.end();
}
