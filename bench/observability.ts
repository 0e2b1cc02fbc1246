// Benchmark 14: what the proxy's access log, metrics and tracing cost per request, turned on one at a time (in-process, memory stores).
import { fileURLToPath } from 'node:url';
import { forkBench, startServer } from './lib/child.js';
import type { ObservabilitySamples } from './lib/observability-child.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, table } from './lib/stats.js';

const ENTRY = fileURLToPath(new URL('./lib/observability-child.ts', import.meta.url));
/** The target of issue 19: logging, metrics and tracing together, in CPU per request. */
const TARGET_US = 15;
/**
 * Consecutive rounds (one request of each case) pooled into a block. A block's mean counts what is paid now
 * and then (a 4 KB write of the log, a batch of spans) with the requests it serves; the median over blocks
 * keeps a block that met a major garbage collection or a busy neighbour from moving the figure.
 */
const ROUNDS_PER_BLOCK = 200;

const NAMES: Record<string, string> = {
  none: 'proxy, nothing observed (log silent, `metrics: false`, no tracing SDK)',
  log: '+ access log (pino-http, info, to a file)',
  'log+metrics': "+ metrics (the usage sink's and the proxy's)",
  'log+metrics+tracing': '+ tracing (SDK, batch span processor, discarding exporter)',
};

function mean(values: readonly number[]): number {
  let sum = 0;
  for (const value of values) sum += value;
  return sum / values.length;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function runChild(upstream: string, requests: number, warmup: number, runId: string): Promise<ObservabilitySamples> {
  const child = forkBench(ENTRY);
  return new Promise<ObservabilitySamples>((resolve, reject) => {
    child.once('message', (message: { ok: boolean; value?: ObservabilitySamples; error?: string }) => {
      if (message.ok) resolve(message.value!);
      else reject(new Error(message.error ?? 'the observability child failed'));
    });
    child.once('exit', (code, signal) => reject(new Error(`the observability child exited (${code ?? signal})`)));
    child.send({ type: 'run', upstream, requests, warmup, runId });
  }).finally(() => child.kill());
}

export async function runObservabilityBenchmark(context: BenchContext): Promise<SectionResult> {
  const requests = context.quick ? 3_000 : 12_000;
  const upstream = await startServer({ app: 'mock-upstream' });
  let result: ObservabilitySamples;
  try {
    context.log(`observability: ${requests} requests per case, the cases alternating request by request`);
    result = await runChild(upstream.url, requests, 2_000, context.runId);
  } finally {
    await upstream.close();
  }
  const { cases, samples } = result;
  const blocks = Math.floor(requests / ROUNDS_PER_BLOCK);
  /** blockMeans[case][block]: the mean CPU per request of that case in that block of rounds. */
  const blockMeans = samples.map((values) => Array.from({ length: blocks }, (_, block) => mean(values.slice(block * ROUNDS_PER_BLOCK, (block + 1) * ROUNDS_PER_BLOCK))));
  const means = blockMeans.map(median);
  /** The median over blocks of case `index` minus case `from` in the same block. */
  const added = (index: number, from: number) => median(blockMeans[index]!.map((value, block) => value - blockMeans[from]![block]!));
  const last = cases.length - 1;
  const total = added(last, 0);
  const totals = blockMeans[last]!.map((value, block) => value - blockMeans[0]![block]!).sort((x, y) => x - y);
  const quartile = (q: number) => totals[Math.min(totals.length - 1, Math.floor(q * totals.length))]!;
  const plainTotal = mean(samples[last]!) - mean(samples[0]!);
  const signed = (us: number) => `${us >= 0 ? '+' : ''}${fmtNumber(us, 1)} µs`;
  const rows = cases.map((name, index) => [
    NAMES[name] ?? name,
    `${fmtNumber(means[index]!, 1)} µs`,
    index === 0 ? '—' : signed(added(index, index - 1)),
    index === 0 ? '—' : signed(added(index, 0)),
  ]);
  const body = [
    'The example proxy (createProxyApp, memory stores, one pro key, key, tenant and global budgets, limits far above the load) in front of the ' +
      'zero-latency mock upstream (a child process of its own, over HTTP), four times in one process: observed more and more from one to the next. ' +
      `Requests go one at a time, one to each case in turn, the first case rotating (${fmtNumber(requests)} per case, after ${fmtNumber(2_000)} ` +
      'each to warm up), so whatever else the machine does meets every case alike; each request\'s CPU time (user + system of the process, from ' +
      'its start to a turn of the event loop after its answer, so the settle, the access line and the counts are in it) is one sample. The ' +
      `samples are pooled in blocks of ${ROUNDS_PER_BLOCK} consecutive rounds: a block's mean counts every request, the one that writes 4 KB of ` +
      'log or hands over a batch of spans included; a case\'s figure is the median over blocks, and each difference the median over blocks of ' +
      'the difference within a block, so the blocks that met a major garbage collection or a busy neighbour do not move it. The log goes to a ' +
      'file on local disk; tracing is an OpenTelemetry SDK as `pnpm start` registers it (BasicTracerProvider, BatchSpanProcessor, W3C ' +
      'propagator) with an exporter that drops every batch, so an OTLP exporter\'s encoding and network are not counted. The cases without an ' +
      'SDK call the OpenTelemetry API, which answers with a non-recording span.',
    '',
    table(['case', 'CPU per request', 'added by the row', 'added over nothing observed'], rows),
    '',
    `All three over nothing observed, per block of ${ROUNDS_PER_BLOCK} rounds: quartiles ${fmtNumber(quartile(0.25), 1)}, ${fmtNumber(total, 1)}, ` +
      `${fmtNumber(quartile(0.75), 1)} µs (${blocks} blocks); the plain mean over every sample says ${signed(plainTotal)}.`,
  ].join('\n');
  const parts = `log ${signed(added(1, 0))}, metrics ${signed(added(2, 1))}, tracing ${signed(added(3, 2))}`;
  return {
    title: '14. Observability: access log, metrics and tracing (in-process, memory stores)',
    body,
    targets: [{
      target: `Access log, metrics and tracing together cost at most ${TARGET_US} µs of CPU per request (the example proxy)`,
      holds: total <= TARGET_US,
      figures: `${signed(total)} over ${fmtNumber(means[0]!, 1)} µs (${parts})`,
    }],
    findings: [`Observability: the access log, the metrics and a tracing SDK add ${signed(total)} of CPU per proxied request to ${fmtNumber(means[0]!, 1)} µs (${parts}) (§14).`],
  };
}
