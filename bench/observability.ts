// Benchmark 8: what the proxy's access log, metrics and tracing cost per request, built up one at a time (in-process, memory stores).
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type BenchChild } from './lib/child.js';
import type { DriveResult } from './lib/server.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, median, table } from './lib/stats.js';

/** The target of issue 19: logging, metrics and tracing together, in CPU per request. */
const TARGET_US = 15;

const CASES = [
  { observe: 'none', name: 'proxy, nothing observed (no log, no metrics, no tracing SDK)' },
  { observe: 'log', name: '+ access log (pino-http, info, to a file)' },
  { observe: 'log+metrics', name: '+ metrics (usage sink and the proxy\'s)' },
  { observe: 'log+metrics+tracing', name: '+ tracing (SDK, batch processor, discarding exporter)' },
] as const;

export async function runObservabilityBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 5 : 15;
  const requests = context.quick ? 3_000 : 8_000;
  const logFiles = CASES.map((benchCase, index) => join(tmpdir(), `tollgate-bench-${context.runId}-${index}.log`));
  const upstream = await startServer({ app: 'mock-upstream' });
  const children: BenchChild[] = [];
  try {
    for (const [index, benchCase] of CASES.entries()) {
      children.push(await startServer({ app: 'proxy', options: { upstream: upstream.url, store: 'memory', observe: benchCase.observe, logFile: logFiles[index] } }));
    }
    const drive = { requests, concurrency: 32, keys: 1, checkpoints: 1 };
    for (const child of children) await child.call<DriveResult>('drive', { drive: { ...drive, requests: 5_000 } });
    const perRequestUs: number[][] = CASES.map(() => []);
    for (let round = 0; round < rounds; round++) {
      // A different case leads each round, so warm-up and drift do not favour one side.
      const order = CASES.map((_, index) => (index + round) % CASES.length);
      for (const index of order) {
        const result = await children[index]!.call<DriveResult>('drive', { drive });
        const non200 = Object.entries(result.statuses).filter(([code]) => code !== '200');
        if (non200.length > 0) throw new Error(`${CASES[index]!.name} answered ${JSON.stringify(result.statuses)}`);
        perRequestUs[index]!.push((result.cpuSeconds * 1e6) / requests);
      }
      context.log(`observability round ${round + 1}/${rounds} done`);
    }
    // Paired per round (the cases of a round ran back to back), then the median over rounds.
    const overBase = (index: number) => median(perRequestUs[index]!.map((us, round) => us - perRequestUs[0]![round]!));
    const overPrevious = (index: number) => median(perRequestUs[index]!.map((us, round) => us - perRequestUs[index - 1]![round]!));
    const medians = perRequestUs.map((samples) => median(samples));
    const rows = CASES.map((benchCase, index) => [
      benchCase.name,
      `${fmtNumber(medians[index]!)} µs`,
      index === 0 ? '—' : `${overPrevious(index) >= 0 ? '+' : ''}${fmtNumber(overPrevious(index), 1)} µs`,
      index === 0 ? '—' : `${overBase(index) >= 0 ? '+' : ''}${fmtNumber(overBase(index), 1)} µs`,
    ]);
    const total = overBase(CASES.length - 1);
    const spread = perRequestUs[CASES.length - 1]!.map((us, round) => us - perRequestUs[0]![round]!).sort((a, b) => a - b);
    const body = [
      'The example proxy (createProxyApp, memory stores, one pro key, limits far above the load) forwarding to the zero-latency mock upstream ' +
        '(a child process of its own), driven in-process (no client sockets, 32 in flight), one child per case. Each row turns one more ' +
        `thing on. ${fmtNumber(requests)} requests per case and round, ${rounds} rounds, the cases in a rotated order each round. CPU per request ` +
        'is the CPU time (user + system) of the proxy\'s process over the round / requests; the added cost is the median over rounds of the ' +
        'difference to the row above (and to the first row) in the same round. The log goes to a file on local disk (asynchronous pino ' +
        'destination); tracing is the SDK as the proxy starts it (BasicTracerProvider, BatchSpanProcessor, W3C propagator) with an exporter ' +
        'that drops every batch, so an OTLP exporter\'s encoding and network are not counted. With no SDK the meter still calls the ' +
        'OpenTelemetry API, which answers with a non-recording span: that is in every row.',
      '',
      table(['case', 'CPU per request', 'added by the row', 'added over nothing observed'], rows),
      '',
      `Spread of "all three over nothing observed" over the ${rounds} rounds: ${fmtNumber(spread[0]!, 1)} to ${fmtNumber(spread.at(-1)!, 1)} µs.`,
    ].join('\n');
    return {
      title: '8. Observability: access log, metrics and tracing (in-process, memory stores)',
      body,
      targets: [{
        target: `Access log, metrics and tracing together cost at most ${TARGET_US} µs of CPU per request (proxy, in-process)`,
        holds: total <= TARGET_US,
        figures: `+${fmtNumber(total, 1)} µs over ${fmtNumber(medians[0]!)} µs (log ${fmtNumber(overPrevious(1), 1)}, metrics ${fmtNumber(overPrevious(2), 1)}, tracing ${fmtNumber(overPrevious(3), 1)})`,
      }],
      findings: [
        `Observability: the access log, the metrics and the tracing SDK add ${fmtNumber(total, 1)} µs of CPU per proxied request to ` +
          `${fmtNumber(medians[0]!)} µs (log ${fmtNumber(overPrevious(1), 1)} µs, metrics ${fmtNumber(overPrevious(2), 1)} µs, tracing ${fmtNumber(overPrevious(3), 1)} µs) (§8).`,
      ],
    };
  } finally {
    await Promise.all([...children.map((child) => child.close()), upstream.close()]);
    await Promise.all(logFiles.map((file) => rm(file, { force: true })));
  }
}
