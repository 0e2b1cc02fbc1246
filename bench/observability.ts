// Benchmark 8: what the proxy's access log, metrics and tracing cost per request, turned on one at a time (in-process, memory stores).
import { fileURLToPath } from 'node:url';
import { forkBench, startServer } from './lib/child.js';
import type { ObservabilitySamples } from './lib/observability-child.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, table } from './lib/stats.js';

const ENTRY = fileURLToPath(new URL('./lib/observability-child.ts', import.meta.url));
/** The target of issue 19: logging, metrics and tracing together, in CPU per request. */
const TARGET_US = 15;
/** The samples are cut into this many stretches of consecutive requests, to show how much the figure moves. */
const BLOCKS = 10;

const NAMES: Record<string, string> = {
  none: 'proxy, nothing observed (log silent, `metrics: false`, no tracing SDK)',
  log: '+ access log (pino-http, info, to a file)',
  'log+metrics': "+ metrics (the usage sink's and the proxy's)",
  'log+metrics+tracing': '+ tracing (SDK, batch span processor, discarding exporter)',
};

/** The mean of the middle 90%: a request that met a garbage collection or a preemption weighs no more than the others. */
function trimmedMean(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const low = Math.floor(sorted.length * 0.05);
  const high = Math.ceil(sorted.length * 0.95);
  let sum = 0;
  for (let i = low; i < high; i++) sum += sorted[i]!;
  return sum / (high - low);
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
  const means = samples.map(trimmedMean);
  const added = (index: number, from: number) => means[index]! - means[from]!;
  const blockSize = Math.floor(requests / BLOCKS);
  const blockTotals = Array.from({ length: BLOCKS }, (_, block) => {
    const slice = (index: number) => samples[index]!.slice(block * blockSize, (block + 1) * blockSize);
    return trimmedMean(slice(cases.length - 1)) - trimmedMean(slice(0));
  }).sort((a, b) => a - b);
  const last = cases.length - 1;
  const total = added(last, 0);
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
      `Requests go one at a time, one to each case in turn (${fmtNumber(requests)} per case, after ${fmtNumber(2_000)} each to warm up), so whatever ` +
      'else the machine does meets every case alike; each request\'s CPU time (user + system of the process, from its start to a turn of the ' +
      'event loop after its answer, so the settle, the access line and the counts are in it) is one sample, and a case\'s figure is the mean of ' +
      'its middle 90% of samples. The log goes to a file on local disk; tracing is an OpenTelemetry SDK as `pnpm start` registers it ' +
      '(BasicTracerProvider, BatchSpanProcessor, W3C propagator) with an exporter that drops every batch, so an OTLP exporter\'s encoding and ' +
      'network are not counted. The cases without an SDK call the OpenTelemetry API, which answers with a non-recording span.',
    '',
    table(['case', 'CPU per request', 'added by the row', 'added over nothing observed'], rows),
    '',
    `All three over nothing observed, in ${BLOCKS} stretches of ${fmtNumber(blockSize)} consecutive requests: ${fmtNumber(blockTotals[0]!, 1)} to ` +
      `${fmtNumber(blockTotals.at(-1)!, 1)} µs (median ${fmtNumber((blockTotals[BLOCKS / 2 - 1]! + blockTotals[BLOCKS / 2]!) / 2, 1)} µs).`,
  ].join('\n');
  const parts = `log ${signed(added(1, 0))}, metrics ${signed(added(2, 1))}, tracing ${signed(added(3, 2))}`;
  return {
    title: '8. Observability: access log, metrics and tracing (in-process, memory stores)',
    body,
    targets: [{
      target: `Access log, metrics and tracing together cost at most ${TARGET_US} µs of CPU per request (the example proxy)`,
      holds: total <= TARGET_US,
      figures: `${signed(total)} over ${fmtNumber(means[0]!, 1)} µs (${parts})`,
    }],
    findings: [`Observability: the access log, the metrics and a tracing SDK add ${signed(total)} of CPU per proxied request to ${fmtNumber(means[0]!, 1)} µs (${parts}) (§8).`],
  };
}
