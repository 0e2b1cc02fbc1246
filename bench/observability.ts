// Benchmark 14: what the proxy's access log, metrics and tracing cost per request, turned on one at a time (in-process, memory stores).
import { fileURLToPath } from 'node:url';
import { askBenchChild, startServer } from './lib/child.js';
import { MEASURED_FROM } from './lib/observability-child.js';
import type { OBSERVED_CASES, ObservabilityRun } from './lib/observability-child.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { bootstrapInterval, fmtNumber, fmtSigned, table, TRIM, trimmedMean } from './lib/stats.js';

const ENTRY = fileURLToPath(new URL('./lib/observability-child.ts', import.meta.url));
/**
 * Issue 65's targets, as shares of the unobserved proxy's CPU per request (the base): the access log and the metrics
 * together; a sampled call's span. Issue 31's for an unsampled span, in µs.
 */
const LOG_METRICS_TARGET_SHARE = 0.05;
const SAMPLED_TARGET_SHARE = 0.05;
const UNSAMPLED_TARGET_US = 1;
/** Requests per block: one block of each case per round, so whatever else the machine does meets every case alike. */
const BLOCK = 20;

type ObservedCase = (typeof OBSERVED_CASES)[number];

const NAMES: Record<ObservedCase, string> = {
  none: 'proxy, nothing observed (log silent, `metrics: false`, no tracing SDK)',
  log: '+ access log (pino, info, to a file)',
  'log+metrics': "+ metrics (the usage sink's and the proxy's)",
  'log+metrics+tracing':
    'log + metrics + tracing, every call sampled (SDK default sampler, batch span processor, discarding exporter)',
  'log+metrics+unsampled':
    'log + metrics + tracing, no call sampled (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `_ARG=0`)',
};

/**
 * The child runs with the collector on the main thread (`--single-threaded-gc`): its pauses are then all of its CPU,
 * so a block's CPU less the pauses inside it is the requests' own work, and the collection is charged apart.
 */
function runChild(message: Record<string, unknown>): Promise<ObservabilityRun> {
  return askBenchChild(ENTRY, { type: 'run', ...message }, 'observability', { execArgv: ['--single-threaded-gc'] });
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
  const signed = (us: number) => fmtSigned(us);
  const rows = cases.map((name, index) => {
    const ownUs = trimmedMean(own[index]!);
    const row = [
      NAMES[name],
      `${fmtNumber(ownUs + collection[index]!, 1)} µs`,
      `${fmtNumber(ownUs, 1)} + ${fmtNumber(collection[index]!, 1)} µs`,
      `${fmtNumber(bytes[index]! / 1024, 2)} KiB`,
    ];
    if (index === 0) return [...row, '—', '—'];
    const from = MEASURED_FROM[name];
    const step = added(index, from);
    return [
      ...row,
      `${signed(step.total)} (${signed(step.low)} to ${signed(step.high)}) over ${cases[from]}`,
      signed(added(index, 0).total),
    ];
  });
  const logMetrics = added(cases.indexOf('log+metrics'), 0);
  const sampled = added(cases.indexOf('log+metrics+tracing'), cases.indexOf('log+metrics'));
  const unsampledSpan = added(cases.indexOf('log+metrics+unsampled'), cases.indexOf('log+metrics'));
  const interval = (figure: ReturnType<typeof added>) =>
    `${signed(figure.total)} (95% interval ${signed(figure.low)} to ${signed(figure.high)})`;
  const body = [
    `The example proxy five times in one child (lib/observability-child.ts), each observed in one more way; after ` +
      `${fmtNumber(warmup)} requests each, ${fmtNumber(rounds)} rounds of a block of ${BLOCK} requests per case, the first ` +
      "rotating. The collector runs on the main thread (`--single-threaded-gc`): a block's CPU less its pauses is the " +
      `requests' own work, compared within each round (trimmed mean, ${TRIM * 100}% off each end, 95% bootstrap interval); ` +
      "the run's collection time is charged per byte allocated. Tracing's exporter drops every batch.",
    '',
    table(
      [
        'case',
        'CPU per request',
        'own work + collection',
        'allocated per request',
        'added by the row (95% interval), over',
        'added over nothing observed',
      ],
      rows,
    ),
    '',
    `The access log and the metrics over nothing observed: ${interval(logMetrics)}, of which ${signed(logMetrics.own)} the ` +
      `requests' own work (first and second half of the rounds apart: ${signed(logMetrics.halves[0])} and ` +
      `${signed(logMetrics.halves[1])}) and ${signed(logMetrics.collection)} collection (${fmtNumber(collectorUsPerByte * 1024, 2)} µs ` +
      `per KiB allocated in this run). A sampled call's span: ${interval(sampled)}; an unsampled one: ${interval(unsampledSpan)}.`,
  ].join('\n');
  const baseline = trimmedMean(own[0]!) + collection[0]!;
  const share = (us: number) => `${fmtNumber((100 * us) / baseline, 1)}%`;
  return {
    title: '14. Observability: access log, metrics and tracing (in-process, memory stores)',
    body,
    targets: [
      {
        target: `Access log and metrics together cost at most ${LOG_METRICS_TARGET_SHARE * 100}% of the unobserved proxy's CPU per request`,
        holds: logMetrics.total <= LOG_METRICS_TARGET_SHARE * baseline,
        figures: `${share(logMetrics.total)}: ${interval(logMetrics)} over ${fmtNumber(baseline, 1)} µs`,
      },
      {
        target: `A sampled call's span costs at most ${SAMPLED_TARGET_SHARE * 100}% of the unobserved proxy's CPU per request`,
        holds: sampled.total <= SAMPLED_TARGET_SHARE * baseline,
        figures: `${share(sampled.total)}: ${interval(sampled)}`,
      },
      {
        target: `An unsampled call's span costs at most ${UNSAMPLED_TARGET_US} µs of CPU`,
        holds: unsampledSpan.total <= UNSAMPLED_TARGET_US,
        figures: interval(unsampledSpan),
      },
    ],
    findings: [
      `Observability: the access log and the metrics add ${signed(logMetrics.total)} of CPU per proxied request to ` +
        `${fmtNumber(baseline, 1)} µs; a sampled span ${signed(sampled.total)}, an unsampled one ${signed(unsampledSpan.total)} (§14).`,
    ],
  };
}
