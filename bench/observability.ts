// Benchmark 14: what the proxy's access log, metrics and tracing cost per request, turned on one at a time (in-process, memory stores).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startServer } from './lib/child.js';
import type { OBSERVED_CASES, ObservabilityRun } from './lib/observability-child.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, quantile, table } from './lib/stats.js';

const ENTRY = fileURLToPath(new URL('./lib/observability-child.ts', import.meta.url));
/** The target of issue 19: logging, metrics and tracing together, in CPU per request. */
const TARGET_US = 15;
/** Requests per block: one block of each case per round, so whatever else the machine does meets every case alike. */
const BLOCK = 20;
/** The share of rounds left out at each end of the paired differences (a neighbour's burst, a stray page fault). */
const TRIM = 0.1;
const BOOTSTRAP_RESAMPLES = 1_000;

type ObservedCase = (typeof OBSERVED_CASES)[number];

const NAMES: Record<ObservedCase, string> = {
  none: 'proxy, nothing observed (log silent, `metrics: false`, no tracing SDK)',
  log: '+ access log (pino-http, info, to a file)',
  'log+metrics': "+ metrics (the usage sink's and the proxy's)",
  'log+metrics+tracing': '+ tracing (SDK, batch span processor, discarding exporter)',
};

/**
 * The child runs with the collector on the main thread (`--single-threaded-gc`): its pauses are then all of its CPU,
 * so a block's CPU less the pauses inside it is the requests' own work, and the collection is charged apart.
 */
function runChild(message: Record<string, unknown>): Promise<ObservabilityRun> {
  const child = fork(ENTRY, [], {
    execArgv: [...process.execArgv, '--single-threaded-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise<ObservabilityRun>((resolve, reject) => {
    child.once('message', (reply: { ok: boolean; value?: ObservabilityRun; error?: string }) => {
      if (reply.ok) resolve(reply.value!);
      else reject(new Error(reply.error ?? 'the observability child failed'));
    });
    child.once('exit', (code, signal) => reject(new Error(`the observability child exited (${code ?? signal})`)));
    child.send({ type: 'run', ...message });
  }).finally(() => child.kill());
}

/** The mean of the values between the TRIM and 1 - TRIM quantiles. */
function trimmedMean(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const cut = Math.floor(sorted.length * TRIM);
  let sum = 0;
  for (let i = cut; i < sorted.length - cut; i++) sum += sorted[i]!;
  return sum / (sorted.length - 2 * cut);
}

/** A 95% interval of the trimmed mean, resampling the rounds (a fixed seed: the same samples give the same interval). */
function bootstrapInterval(values: readonly number[]): [number, number] {
  let seed = 0x2545f491;
  const random = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const estimates: number[] = [];
  const resample = new Array<number>(values.length);
  for (let r = 0; r < BOOTSTRAP_RESAMPLES; r++) {
    for (let i = 0; i < values.length; i++) resample[i] = values[Math.floor(random() * values.length)]!;
    estimates.push(trimmedMean(resample));
  }
  return [quantile(estimates, 0.025), quantile(estimates, 0.975)];
}

export async function runObservabilityBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 150 : 1_000;
  const warmup = 2_000;
  const upstream = await startServer({ app: 'mock-upstream' });
  let result: ObservabilityRun;
  try {
    context.log(
      `observability: ${fmtNumber(warmup)} requests per case to warm up, then ${fmtNumber(rounds)} rounds of a block of ${BLOCK} per case`,
    );
    result = await runChild({ upstream: upstream.url, rounds, block: BLOCK, warmup, runId: context.runId });
  } finally {
    await upstream.close();
  }
  const { blocks } = result;
  const cases = result.cases as ObservedCase[];
  /** own[case][round]: CPU per request in that round's block, collection pauses taken out. */
  const own = blocks.map((ofCase) => ofCase.map((block) => (block.cpuUs - block.gcUs) / BLOCK));
  /**
   * Bytes per request, from the blocks no collection met (their heap grew by exactly what they allocated): their mean,
   * so the blocks that wrote the log file or handed over a batch of spans count with the others.
   */
  const bytes = blocks.map((ofCase) => {
    const clean = ofCase.filter((block) => !block.collected);
    return clean.reduce((sum, block) => sum + block.heapGrowth, 0) / (clean.length * BLOCK);
  });
  // The collection of the whole run charged to each case by the bytes its requests allocate.
  const collectorUsPerByte = result.collectorUs / result.allocatedBytes;
  const collection = bytes.map((perRequest) => perRequest * collectorUsPerByte);

  const added = (index: number, from: number) => {
    const differences = own[index]!.map((value, round) => value - own[from]![round]!);
    const half = Math.floor(differences.length / 2);
    const collected = collection[index]! - collection[from]!;
    const [low, high] = bootstrapInterval(differences);
    return {
      own: trimmedMean(differences),
      low: low + collected,
      high: high + collected,
      halves: [trimmedMean(differences.slice(0, half)), trimmedMean(differences.slice(half))] as const,
      collection: collected,
      total: trimmedMean(differences) + collected,
    };
  };
  const signed = (us: number) => `${us >= 0 ? '+' : ''}${fmtNumber(us, 1)} µs`;
  const last = cases.length - 1;
  const total = added(last, 0);
  const rows = cases.map((name, index) => {
    const ownUs = trimmedMean(own[index]!);
    const row = [
      NAMES[name],
      `${fmtNumber(ownUs + collection[index]!, 1)} µs`,
      `${fmtNumber(ownUs, 1)} + ${fmtNumber(collection[index]!, 1)} µs`,
      `${fmtNumber(bytes[index]! / 1024, 2)} KiB`,
    ];
    if (index === 0) return [...row, '—', '—'];
    const all = added(index, 0);
    return [
      ...row,
      signed(added(index, index - 1).total),
      `${signed(all.total)} (${signed(all.low)} to ${signed(all.high)})`,
    ];
  });
  const body = [
    'The example proxy (createProxyApp, memory stores, one pro key, key, tenant and global budgets, limits far above the load) in front of the ' +
      'zero-latency mock upstream (a child process of its own, over HTTP), four times in one process, observed more and more from one to the ' +
      `next. After ${fmtNumber(warmup)} requests each to warm up, round after round each case runs a block of ${BLOCK} requests one at a time, ` +
      `in turn, the first case rotating (${fmtNumber(rounds)} rounds, ${fmtNumber(rounds * BLOCK)} requests per case), so whatever else the ` +
      'machine does meets every case alike. A request runs to a turn of the event loop after its answer, so the settle, the access line and ' +
      'the counts are in it. The collector runs on the main thread (`--single-threaded-gc`) and is counted apart, since a pause lands on ' +
      "whichever case is running: a block's CPU (user + system) less the collection pauses inside it is the requests' own work, compared case " +
      `to case within each round (the mean of the differences, ${TRIM * 100}% of rounds left out at each end, with a 95% bootstrap interval); ` +
      "each case is then charged the run's collection time per byte allocated times its own bytes per request (the heap's growth over the " +
      'blocks no collection met: exact). The log goes to a file on local disk; tracing is an OpenTelemetry SDK as `pnpm start` registers it ' +
      "(BasicTracerProvider, BatchSpanProcessor, W3C propagator) with an exporter that drops every batch, so an OTLP exporter's encoding and " +
      'network are not counted. The cases without an SDK call the OpenTelemetry API, which answers with a non-recording span.',
    '',
    table(
      [
        'case',
        'CPU per request',
        'own work + collection',
        'allocated per request',
        'added by the row',
        'added over nothing observed (95% interval)',
      ],
      rows,
    ),
    '',
    `All three over nothing observed: ${signed(total.total)}, of which ${signed(total.own)} the requests' own work (first and second half ` +
      `of the rounds apart: ${signed(total.halves[0])} and ${signed(total.halves[1])}) and ${signed(total.collection)} collection ` +
      `(${fmtNumber(collectorUsPerByte * 1024, 2)} µs per KiB allocated in this run).`,
  ].join('\n');
  const parts = `log ${signed(added(1, 0).total)}, metrics ${signed(added(2, 1).total)}, tracing ${signed(added(3, 2).total)}`;
  const baseline = trimmedMean(own[0]!) + collection[0]!;
  return {
    title: '14. Observability: access log, metrics and tracing (in-process, memory stores)',
    body,
    targets: [
      {
        target: `Access log, metrics and tracing together cost at most ${TARGET_US} µs of CPU per request (the example proxy)`,
        holds: total.total <= TARGET_US,
        figures: `${signed(total.total)} (95% interval ${signed(total.low)} to ${signed(total.high)}) over ${fmtNumber(baseline, 1)} µs (${parts})`,
      },
    ],
    findings: [
      `Observability: the access log, the metrics and a tracing SDK add ${signed(total.total)} of CPU per proxied request to ${fmtNumber(baseline, 1)} µs (${parts}) (§14).`,
    ],
  };
}
