// Sampling decided before the span: the standard samplers keep their meaning, decided once, and an unsampled call makes no SDK span.
import { describe, expect, it } from '@jest/globals';
import { context, propagation, ROOT_CONTEXT, SpanKind, trace, TraceFlags } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import * as sdk from '@opentelemetry/sdk-trace-base';
import { sampleFirstProvider, samplerFromEnv } from '../src/observe/head-sampling.js';

function traced(env: NodeJS.ProcessEnv) {
  const exporter = new sdk.InMemorySpanExporter();
  const { tracers, provider } = sampleFirstProvider(sdk, env, {
    spanProcessors: [new sdk.SimpleSpanProcessor(exporter)],
  });
  return { tracer: tracers.getTracer('test'), exporter, provider };
}

const W3C = new W3CTraceContextPropagator();
const parentContext = (flags: string) =>
  W3C.extract(
    ROOT_CONTEXT,
    { traceparent: `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-${flags}` },
    {
      get: (carrier: Record<string, string>, key) => carrier[key],
      keys: (carrier) => Object.keys(carrier),
    },
  );

describe('sampleFirstProvider', () => {
  it('samples every call by default (parent-based, always on), through the SDK, with the attributes given', () => {
    const { tracer, exporter } = traced({});
    const span = tracer.startSpan('chat gpt-4o', {
      kind: SpanKind.CLIENT,
      attributes: { 'gen_ai.request.model': 'gpt-4o' },
    });
    expect(span.isRecording()).toBe(true);
    span.end();
    const [finished] = exporter.getFinishedSpans();
    expect(finished?.name).toBe('chat gpt-4o');
    expect(finished?.attributes['gen_ai.request.model']).toBe('gpt-4o');
    expect(finished!.spanContext().traceFlags & TraceFlags.SAMPLED).toBe(TraceFlags.SAMPLED);
  });

  it('makes no span for an unsampled root, and one without the SDK for an unsampled child of a caller', () => {
    const { tracer, exporter } = traced({
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0',
    });
    const root = tracer.startSpan('chat');
    expect(root.isRecording()).toBe(false);
    expect(trace.isSpanContextValid(root.spanContext())).toBe(false);
    root.end();
    // A caller that did not sample: the span carries its trace, not sampled, so what is propagated says so.
    const child = tracer.startSpan('chat', {}, parentContext('00'));
    expect(child.isRecording()).toBe(false);
    expect(child.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(child.spanContext().spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(child.spanContext().traceFlags).toBe(TraceFlags.NONE);
    const carrier: Record<string, string> = {};
    propagation.setGlobalPropagator(W3C);
    try {
      propagation.inject(trace.setSpan(context.active(), child), carrier);
    } finally {
      propagation.disable();
    }
    expect(carrier.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-00$/);
    child.end();
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });

  it("follows a sampled caller under a ratio of 0, in the caller's trace", () => {
    const { tracer, exporter } = traced({
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0',
    });
    const span = tracer.startSpan('chat', {}, parentContext('01'));
    expect(span.isRecording()).toBe(true);
    span.end();
    const [finished] = exporter.getFinishedSpans();
    expect(finished?.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(finished?.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
  });

  it('decides once: a ratio of 0.5 samples about half the roots, not a quarter', () => {
    const { tracer, exporter } = traced({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5' });
    for (let i = 0; i < 4000; i++) tracer.startSpan('chat').end();
    const sampled = exporter.getFinishedSpans().length;
    // Binomial(4000, 0.5): 2000 ± 32 (one standard deviation); a double decision would give about 1000.
    expect(sampled).toBeGreaterThan(1800);
    expect(sampled).toBeLessThan(2200);
  });

  it('runs startActiveSpan with the span it made, and returns what the function returns', () => {
    const { tracer, exporter } = traced({});
    const result = tracer.startActiveSpan('outer', { attributes: { a: 1 } }, (span) => {
      span.end();
      return span.isRecording() ? 'no longer recording expected' : 'ended';
    });
    expect(result).toBe('ended');
    expect(exporter.getFinishedSpans().map((span) => [span.name, span.attributes.a])).toEqual([['outer', 1]]);
  });
});

describe('samplerFromEnv', () => {
  it('names the standard samplers and refuses what the specification does not list', () => {
    expect(samplerFromEnv({}, sdk).toString()).toMatch(/ParentBased\{root=AlwaysOnSampler/);
    expect(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'always_off' }, sdk).toString()).toBe('AlwaysOffSampler');
    expect(
      samplerFromEnv({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }, sdk).toString(),
    ).toMatch(/0\.25/);
    expect(() => samplerFromEnv({ OTEL_TRACES_SAMPLER: 'jaeger_remote' }, sdk)).toThrow(/not supported/);
    expect(() => samplerFromEnv({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }, sdk)).toThrow(
      /from 0 to 1/,
    );
  });
});
