// Child entry for benchmark 14: the example proxy five times in one process, observed more and more, driven in short blocks in turn.
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import type { Express } from 'express';
import { authHeaders, benchKey, benchKeyEntry, CHAT_BODY, CHAT_PATH } from './fixtures.js';
import { inject } from './inject.js';
import { answerParent } from './child-answers.js';

export const OBSERVED_CASES = ['none', 'log', 'log+metrics', 'log+metrics+tracing', 'log+metrics+unsampled'] as const;

/** The case each one is measured against: the one it adds a single thing to. */
export const MEASURED_FROM: Readonly<Record<(typeof OBSERVED_CASES)[number], number>> = {
  none: 0,
  log: 0,
  'log+metrics': 1,
  'log+metrics+tracing': 2,
  'log+metrics+unsampled': 2,
};

interface RunMessage {
  type: 'run';
  upstream: string;
  rounds: number;
  block: number;
  warmup: number;
  runId: string;
}

/** One block of requests of one case: the process's CPU over it, the collection pauses inside it, the heap's growth. */
export interface BlockCost {
  cpuUs: number;
  gcUs: number;
  /** Bytes the heap grew by; only a block without a collection tells what its requests allocated. */
  heapGrowth: number;
  collected: boolean;
}

export interface ObservabilityRun {
  cases: string[];
  block: number;
  /** blocks[case][round] */
  blocks: BlockCost[][];
  /** Over every measured block: the collection pauses, and the bytes allocated (V8's heap statistics around each collection). */
  collectorUs: number;
  allocatedBytes: number;
}

const HUGE = { usd: 1_000_000, period: 'day' as const };

async function run(message: RunMessage): Promise<ObservabilityRun> {
  const [{ createGatewayApp }, { validateConfig }, { sampleFirstProvider }, api, core, sdk] = await Promise.all([
    import('../../packages/gateway/src/app.js'),
    import('../../packages/gateway/src/config/index.js'),
    import('../../packages/metering/src/observe/head-sampling.js'),
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
    import('@opentelemetry/sdk-trace-base'),
  ]);
  // The SDK as the proxy's startTracing registers it (sampling decided before each span, from the standard
  // variables), with an exporter that drops every batch. Only the tracing cases are handed a tracer; the others
  // meet the global API, a no-op as without an SDK. The default sampler (parent-based, always on) samples every
  // call; `parentbased_traceidratio` at 0 samples none, as a deployment sampling a small share sees most calls.
  const discard: import('@opentelemetry/sdk-trace-base').SpanExporter = {
    export: (_spans, done) => done({ code: core.ExportResultCode.SUCCESS }),
    shutdown: async () => undefined,
  };
  const sampled = sampleFirstProvider(sdk, {}, { spanProcessors: [new sdk.BatchSpanProcessor(discard)] });
  const unsampled = sampleFirstProvider(
    sdk,
    { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' },
    { spanProcessors: [new sdk.BatchSpanProcessor(discard)] },
  );
  api.propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
  const logFiles = OBSERVED_CASES.map((_, index) => join(tmpdir(), `tollgate-bench-${message.runId}-${index}.log`));
  const apps = OBSERVED_CASES.map((observed, index) => {
    const config = validateConfig({
      upstreams: { openai: { baseUrl: `${message.upstream}/v1`, apiKey: 'upstream-bench-key' } },
      tiers: { pro: { requestsPerMinute: 1_000_000_000, tokensPerMinute: 1_000_000_000_000, models: ['*'] } },
      tenants: { 'bench-tenant': { tier: 'pro', budget: HUGE } },
      keys: [{ ...benchKeyEntry(), budget: HUGE }],
      global: { requestsPerMinute: 1_000_000_000, budget: HUGE },
      log: observed === 'none' ? { level: 'silent' } : { level: 'info', destination: logFiles[index]! },
    });
    return createGatewayApp(config, {
      log: () => undefined,
      metrics: observed.includes('metrics'),
      ...(observed.endsWith('tracing') ? { tracer: sampled.tracers.getTracer('bench') } : {}),
      ...(observed.endsWith('unsampled') ? { tracer: unsampled.tracers.getTracer('bench') } : {}),
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
  const pauses: { start: number; duration: number }[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) pauses.push({ start: entry.startTime, duration: entry.duration });
  });
  try {
    for (let i = 0; i < message.warmup; i++) for (const app of apps) await one(app);
    const windows: { start: number; end: number; cpuUs: number; heapGrowth: number }[][] = apps.map(() => []);
    observer.observe({ entryTypes: ['gc'] });
    const profiler = new v8.GCProfiler();
    const heapBefore = v8.getHeapStatistics().used_heap_size;
    profiler.start();
    for (let round = 0; round < message.rounds; round++) {
      // A block of each case in turn, the first case rotating: whatever the machine does meanwhile meets them all alike.
      for (let k = 0; k < apps.length; k++) {
        const index = (round + k) % apps.length;
        const heap = v8.getHeapStatistics().used_heap_size;
        const start = performance.now();
        const cpu = process.cpuUsage();
        for (let i = 0; i < message.block; i++) await one(apps[index]!);
        const used = process.cpuUsage(cpu);
        const end = performance.now();
        windows[index]!.push({
          start,
          end,
          cpuUs: used.user + used.system,
          heapGrowth: v8.getHeapStatistics().used_heap_size - heap,
        });
      }
    }
    const data = profiler.stop();
    let allocatedBytes = v8.getHeapStatistics().used_heap_size - heapBefore;
    for (const entry of data.statistics)
      allocatedBytes += entry.beforeGC.heapStatistics.usedHeapSize - entry.afterGC.heapStatistics.usedHeapSize;
    // The last pauses' entries arrive on a later turn.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const blocks = windows.map((ofCase) =>
      ofCase.map(({ start, end, cpuUs, heapGrowth }) => {
        let gcMs = 0;
        let collected = false;
        for (const pause of pauses) {
          if (pause.start < start || pause.start >= end) continue;
          gcMs += pause.duration;
          collected = true;
        }
        return { cpuUs, gcUs: gcMs * 1000, heapGrowth, collected };
      }),
    );
    const collectorUs = blocks.reduce(
      (sum, ofCase) => sum + ofCase.reduce((caseSum, block) => caseSum + block.gcUs, 0),
      0,
    );
    return { cases: [...OBSERVED_CASES], block: message.block, blocks, collectorUs, allocatedBytes };
  } finally {
    observer.disconnect();
    for (const app of apps) await app.close();
    await sampled.provider.shutdown();
    await unsampled.provider.shutdown();
    await Promise.all(logFiles.map((file) => rm(file, { force: true })));
  }
}

answerParent<RunMessage>((message) => (message.type === 'run' ? run(message) : undefined));
