// Child entry for benchmark 14: the example proxy four times in one process, observed more and more, requests alternating between them.
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Express } from 'express';
import { authHeaders, benchKey, CHAT_BODY, CHAT_PATH, sha256Hex } from './fixtures.js';
import { inject } from './inject.js';

interface RunMessage {
  type: 'run';
  upstream: string;
  requests: number;
  warmup: number;
  runId: string;
}

/** CPU µs of each request, per case, in the order they ran. */
export interface ObservabilitySamples {
  cases: string[];
  samples: number[][];
}

export const OBSERVED_CASES = ['none', 'log', 'log+metrics', 'log+metrics+tracing'] as const;

const HUGE = { usd: 1_000_000, period: 'day' as const };

async function run(message: RunMessage): Promise<ObservabilitySamples> {
  const [{ createProxyApp }, { validateConfig }, api, core, sdk] = await Promise.all([
    import('../../examples/proxy/src/app.js'),
    import('../../examples/proxy/src/config.js'),
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
    import('@opentelemetry/sdk-trace-base'),
  ]);
  // The SDK as the proxy's startTracing registers it, with an exporter that drops every batch. Only the
  // tracing case is handed its tracer; the others meet the global API, a no-op as without an SDK.
  const discard: import('@opentelemetry/sdk-trace-base').SpanExporter = {
    export: (_spans, done) => done({ code: core.ExportResultCode.SUCCESS }),
    shutdown: async () => undefined,
  };
  const provider = new sdk.BasicTracerProvider({ spanProcessors: [new sdk.BatchSpanProcessor(discard)] });
  api.propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
  const logFiles = OBSERVED_CASES.map((_, index) => join(tmpdir(), `tollgate-bench-${message.runId}-${index}.log`));
  const apps = OBSERVED_CASES.map((observed, index) => {
    const config = validateConfig({
      upstreams: { openai: { baseUrl: `${message.upstream}/v1`, apiKey: 'upstream-bench-key' } },
      tiers: { pro: { requestsPerMinute: 1_000_000_000, tokensPerMinute: 1_000_000_000_000, models: ['*'] } },
      tenants: { 'bench-tenant': { tier: 'pro', budget: HUGE } },
      keys: [{ id: 'bench-key-0', sha256: sha256Hex(benchKey(0)), tenant: 'bench-tenant', user: 'bench-user', feature: 'bench', scopes: ['chat'], budget: HUGE }],
      global: { requestsPerMinute: 1_000_000_000, budget: HUGE },
      log: observed === 'none' ? { level: 'silent' } : { level: 'info', destination: logFiles[index]! },
    });
    return createProxyApp(config, {
      log: () => undefined,
      metrics: observed.includes('metrics'),
      ...(observed.includes('tracing') ? { tracer: provider.getTracer('bench') } : {}),
    });
  });
  const body = Buffer.from(CHAT_BODY);
  const headers = authHeaders(benchKey(0));
  const one = async (app: Express): Promise<void> => {
    const status = await inject(app, { method: 'POST', url: CHAT_PATH, headers, body });
    if (status !== 200) throw new Error(`the proxy answered ${status}`);
    // What runs after the answer (the settle, the access line, the counts) belongs to the request.
    await new Promise((resolve) => setImmediate(resolve));
  };
  try {
    for (let i = 0; i < message.warmup; i++) for (const app of apps) await one(app);
    const samples: number[][] = apps.map(() => []);
    for (let i = 0; i < message.requests; i++) {
      // One request of each case in turn, the first case rotating: whatever the machine does meanwhile hits them all alike.
      for (let k = 0; k < apps.length; k++) {
        const index = (i + k) % apps.length;
        const started = process.cpuUsage();
        await one(apps[index]!);
        const used = process.cpuUsage(started);
        samples[index]!.push(used.user + used.system);
      }
    }
    return { cases: [...OBSERVED_CASES], samples };
  } finally {
    for (const app of apps) await app.close();
    await provider.shutdown();
    await Promise.all(logFiles.map((file) => rm(file, { force: true })));
  }
}

process.on('message', (message: RunMessage) => {
  if (message.type !== 'run') return;
  run(message).then(
    (value) => process.send?.({ ok: true, value }),
    (error: unknown) => process.send?.({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
