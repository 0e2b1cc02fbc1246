// `pnpm start` with the standard OTEL_* variables exports the GenAI spans over OTLP/HTTP to a collector; a protocol it cannot speak stops the start.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startOtlpCollector } from './helpers/otlp-collector.js';
import type { OtlpCollector } from './helpers/otlp-collector.js';
import { runProxyExpectingExit, spawnProxy, waitFor } from './helpers/proxy.js';

let collector: OtlpCollector;
let collectorUrl: string;
let exports: OtlpCollector['exports'];

beforeAll(async () => {
  collector = await startOtlpCollector();
  ({ url: collectorUrl, exports } = collector);
});

afterAll(async () => {
  await collector.close();
});

describe('OpenTelemetry export from pnpm start', () => {
  it('sends each provider call as a span to OTEL_EXPORTER_OTLP_ENDPOINT, named by OTEL_SERVICE_NAME, with no key in it', async () => {
    const proxy = await spawnProxy({
      TOLLGATE_CONFIG: '',
      REDIS_URL: '',
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
      OTEL_SERVICE_NAME: 'gateway-under-test',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    let key: string | undefined;
    try {
      key = /demo-pro\s+tier pro\s+(tgk_\w+)/.exec(proxy.output())?.[1];
      expect(key).toBeDefined();
      const response = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'Hello!' }] }),
      });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
      await waitFor(
        async () => exports.some((sent) => sent.body.includes('gen_ai.usage.output_tokens')) || undefined,
        'the span of the call at the collector',
      );
    } finally {
      await proxy.stop();
    }
    const traces = exports.filter((sent) => sent.path === '/v1/traces');
    expect(traces.length).toBeGreaterThan(0);
    expect(traces[0]!.headers['content-type']).toBe('application/x-protobuf');
    // Protobuf keeps strings as they are: the names of the attributes and the resource are readable in the bytes.
    const bytes = Buffer.concat(traces.map((sent) => sent.body));
    for (const text of [
      'gateway-under-test',
      '@tollgate/metering',
      'chat gpt-4o-mini',
      'gen_ai.operation.name',
      'gen_ai.provider.name',
      'gen_ai.request.model',
      'gen_ai.usage.input_tokens',
      'tollgate.tenant.id',
      'demo-pro',
      'tollgate.cost.nano_usd',
    ]) {
      expect(bytes.includes(text)).toBe(true);
    }
    expect(bytes.includes(key!)).toBe(false);
  }, 40_000);

  it('refuses to start with a protocol it does not speak, saying which to use', async () => {
    const { code, output } = await runProxyExpectingExit({
      TOLLGATE_CONFIG: '',
      REDIS_URL: '',
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    });
    expect(code).toBe(1);
    expect(output).toContain(
      'OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported by the proxy: use http/protobuf (the default) or http/json',
    );
  }, 30_000);
});
