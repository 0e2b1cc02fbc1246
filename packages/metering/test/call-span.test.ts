// The meter's span per provider call, read with the SDK's in-memory exporter: GenAI attribute names, tollgate's own, failures, and no secret.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { ApiError, createPricing, getContext, renderApiError } from '@tollgate/core';
import type { Identity, UsageRecord } from '@tollgate/core';
import { meter, METERING_TRACER_NAME } from '@tollgate/metering';
import type { MeterOptions } from '@tollgate/metering';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';

const pricing = createPricing();
const identity: Identity = {
  keyId: 'key-1',
  tenantId: 'acme',
  userId: 'alice',
  tier: 'pro',
  feature: 'support-bot',
  scopes: ['chat'],
  authMethod: 'api_key',
};
const CLIENT_KEY = 'tgk_ClientKeyThatMustNeverBeInASpan0123456789';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const servers: http.Server[] = [];

afterEach(() => exporter.reset());
afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  await provider.shutdown();
});

type Answer = (req: Request, res: Response, next: NextFunction) => void;

/** A chat route behind meter(): the answer is the handler's; it marks the call sent first, as a proxy does. */
async function serve(answer: Answer, options: MeterOptions = {}): Promise<{ url: string; records: UsageRecord[] }> {
  const records: UsageRecord[] = [];
  const app = express();
  app.use(express.json());
  app.use((req: Request, res: Response, next: NextFunction) => {
    getContext(req, res).identity = identity;
    next();
  });
  app.post(
    '/v1/chat/completions',
    meter({
      pricing,
      api: 'openai.chat',
      tracer: provider.getTracer('test'),
      onUsage: (record) => records.push(record),
      ...options,
    }),
    (req, res, next) => {
      if (req.headers['x-refuse'] === 'yes') {
        renderApiError(new ApiError('insufficient_quota', 'Budget exhausted for tenant acme.'), req, res);
        return;
      }
      req.tollgate.markSending();
      answer(req, res, next);
    },
  );
  app.use((error: unknown, req: Request, res: Response, next: NextFunction) => {
    if (error instanceof ApiError) renderApiError(error, req, res);
    else next(error);
  });
  const server = http.createServer(app);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, records };
}

async function call(url: string, headers: Record<string, string> = {}): Promise<number> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`, ...headers },
    body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 64, messages: [{ role: 'user', content: 'Say hello.' }] }),
  });
  await response.arrayBuffer();
  return response.status;
}

/** The spans once the response settled (the span ends with the usage record, on the response's close). */
async function spansAfter(records: UsageRecord[], count = 1): Promise<ReadableSpan[]> {
  for (let i = 0; i < 200 && (records.length < count || exporter.getFinishedSpans().length < count); i++)
    await new Promise((resolve) => setTimeout(resolve, 5));
  return exporter.getFinishedSpans();
}

const completion = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  model: 'gpt-4o-mini-2024-07-18',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello!' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 20, completion_tokens: 3, total_tokens: 23, prompt_tokens_details: { cached_tokens: 8 } },
};

describe('the span of a provider call', () => {
  it('follows the GenAI semantic conventions, with the tenant, feature and cost in nano-USD', async () => {
    const { url, records } = await serve((_req, res) => void res.json(completion));
    expect(await call(url)).toBe(200);
    const [span] = await spansAfter(records);
    const record = records[0]!;
    expect(span!.name).toBe('chat gpt-4o-mini');
    expect(span!.kind).toBe(SpanKind.CLIENT);
    expect(span!.instrumentationScope.name).toBe('test');
    expect(span!.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-4o-mini',
      'gen_ai.request.max_tokens': 64,
      'gen_ai.request.stream': false,
      'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
      'gen_ai.usage.input_tokens': 20,
      'gen_ai.usage.output_tokens': 3,
      'gen_ai.usage.cache_read.input_tokens': 8,
      'tollgate.tenant.id': 'acme',
      'tollgate.feature': 'support-bot',
      'tollgate.key.id': 'key-1',
      'tollgate.request.id': record.requestId,
      'tollgate.cost.nano_usd': record.costNanoUsd,
      'tollgate.estimated_cost.nano_usd': record.estimatedCostNanoUsd,
      'tollgate.usage_source': 'provider',
    });
    expect(record.costNanoUsd).toBeGreaterThan(0);
    expect(span!.status.code).toBe(SpanStatusCode.UNSET);
    expect(JSON.stringify(span!.attributes)).not.toContain(CLIENT_KEY);
  });

  it("continues the caller's trace from its traceparent", async () => {
    const { url, records } = await serve((_req, res) => void res.json(completion));
    const { W3CTraceContextPropagator } = await import('@opentelemetry/core');
    const { propagation } = await import('@opentelemetry/api');
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    try {
      await call(url, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
      const [span] = await spansAfter(records);
      expect(span!.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
      expect(span!.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
    } finally {
      propagation.disable();
    }
  });

  it('marks a failed call as an error with its error.type, and still ends it', async () => {
    const { url, records } = await serve((req, _res, next) => {
      req.tollgate.upstreamStatus = 503;
      next(new ApiError('upstream_error', 'The openai upstream failed (HTTP 503).'));
    });
    expect(await call(url)).toBe(502);
    const [span] = await spansAfter(records);
    expect(span!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'The openai upstream failed (HTTP 503).' });
    expect(span!.attributes['error.type']).toBe('upstream_error');
    expect(span!.attributes['http.response.status_code']).toBe(503);
    expect(span!.attributes['gen_ai.usage.output_tokens']).toBe(0);
  });

  it('makes no span for a request refused before it was sent, nor with tracer: false', async () => {
    const refused = await serve((_req, res) => void res.json(completion));
    expect(await call(refused.url, { 'x-refuse': 'yes' })).toBe(429);
    const off = await serve((_req, res) => void res.json(completion), { tracer: false });
    expect(await call(off.url)).toBe(200);
    await spansAfter(off.records);
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });

  it('goes to the global tracer provider by default, a no-op until one is registered', async () => {
    const unregistered = await serve((_req, res) => void res.json(completion), { tracer: undefined });
    expect(await call(unregistered.url)).toBe(200);
    await spansAfter(unregistered.records);
    expect(exporter.getFinishedSpans()).toHaveLength(0);

    trace.setGlobalTracerProvider(provider);
    try {
      const registered = await serve((_req, res) => void res.json(completion), { tracer: undefined });
      expect(await call(registered.url)).toBe(200);
      const [span] = await spansAfter(registered.records);
      expect(span!.instrumentationScope.name).toBe(METERING_TRACER_NAME);
    } finally {
      trace.disable();
    }
  });
});
