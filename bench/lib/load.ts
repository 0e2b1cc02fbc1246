// Drives one server with autocannon and keeps every response time (autocannon's own histogram rounds to whole ms).
import autocannon, { type AutocannonRequest } from 'autocannon';
import { CHAT_PATH } from './fixtures.js';
import { fmtMs, fmtNumber, fmtRatio, non2xx, SampleBuffer, median, quantile } from './stats.js';

interface LoadOptions {
  url: string;
  path: string;
  body: string;
  headers: Record<string, string>;
  connections: number;
  durationS: number;
  /** Rewrites each request (e.g. to rotate API keys). */
  setupRequest?: AutocannonRequest['setupRequest'];
  /** A steady rate over all connections (req/s) instead of as fast as the server answers. */
  overallRate?: number;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Response times in ms (2xx and others alike). */
  latencies: Float64Array;
  statuses: Record<string, number>;
  errors: number;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const latencies = new SampleBuffer();
  const statuses: Record<string, number> = {};
  const started = process.hrtime.bigint();
  const instance = autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationS,
    timeout: 10,
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
    requests: [
      {
        method: 'POST',
        path: options.path,
        headers: options.headers,
        body: options.body,
        ...(options.setupRequest ? { setupRequest: options.setupRequest } : {}),
      },
    ],
  });
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    latencies.push(responseTime);
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
  });
  const result = await instance;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    latencies: latencies.values().slice(),
    statuses,
    errors: result.errors + result.timeouts,
  };
}

export interface CaseSummary {
  name: string;
  rounds: LoadResult[];
  /** Median over rounds. */
  rps: number;
  /** Over the samples of every round. */
  p50: number;
  p99: number;
  /** Median over rounds of this case's rps divided by the baseline's rps in the same round. */
  ratio: number;
  non2xx: number;
  errors: number;
}

/** Runs the cases in alternating rounds (A B C A B C ...) so drifting machine noise lands on every side. */
export async function alternateRounds(
  cases: { name: string; run: () => Promise<LoadResult> }[],
  rounds: number,
  onRound?: (round: number, name: string, result: LoadResult) => void,
): Promise<CaseSummary[]> {
  const results = new Map<string, LoadResult[]>(cases.map((c) => [c.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const benchCase of cases) {
      const result = await benchCase.run();
      results.get(benchCase.name)!.push(result);
      onRound?.(round, benchCase.name, result);
    }
  }
  const baseline = results.get(cases[0]!.name)!;
  return cases.map(({ name }) => {
    const list = results.get(name)!;
    const pooled = new Float64Array(list.reduce((sum, r) => sum + r.latencies.length, 0));
    let offset = 0;
    for (const r of list) {
      pooled.set(r.latencies, offset);
      offset += r.latencies.length;
    }
    return {
      name,
      rounds: list,
      rps: median(list.map((r) => r.rps)),
      p50: quantile(pooled, 0.5),
      p99: quantile(pooled, 0.99),
      ratio: median(list.map((r, i) => r.rps / baseline[i]!.rps)),
      non2xx: list.reduce((sum, r) => sum + non2xx(r.statuses), 0),
      errors: list.reduce((sum, r) => sum + r.errors, 0),
    };
  });
}

/** `rounds` rounds of every case in turn, each round starting at the next case: none always runs after the same one. */
export async function rotatingRounds(
  cases: number,
  rounds: number,
  run: (index: number, round: number) => Promise<void>,
): Promise<void> {
  for (let round = 0; round < rounds; round++)
    for (let turn = 0; turn < cases; turn++) await run((turn + round) % cases, round);
}

/** The columns a throughput table gives each case (THROUGHPUT_COLUMNS), or `not available`. */
export const THROUGHPUT_COLUMNS = ['req/s', '× baseline', 'p50', 'p99', 'non-2xx/errors'];
export function throughputCells(summary: CaseSummary | undefined): string[] {
  if (!summary) return ['not available', '', '', '', ''];
  const { rps, ratio, p50, p99, errors } = summary;
  return [fmtNumber(rps), fmtRatio(ratio), fmtMs(p50), fmtMs(p99), `${summary.non2xx}/${errors}`];
}

/** A server a section loads: its URL, and what every request of a case sends. */
interface LoadedCase {
  name: string;
  url: string;
  body: string;
  headers: Record<string, string>;
}

/**
 * Each case loaded `warmUpS` first (JIT, connections, scripts), then `rounds` alternating rounds of `durationS` over
 * `connections`; `around` wraps a measured round (e.g. to read Redis's counters before and after it).
 */
export async function throughputRounds(
  cases: readonly LoadedCase[],
  setup: { rounds: number; durationS: number; connections: number; warmUpS: number },
  log: (message: string) => void,
  around: (name: string, run: () => Promise<LoadResult>) => Promise<LoadResult> = (_name, run) => run(),
): Promise<CaseSummary[]> {
  const load = (c: LoadedCase, durationS: number) => () =>
    runLoad({
      url: c.url,
      path: CHAT_PATH,
      body: c.body,
      headers: c.headers,
      connections: setup.connections,
      durationS,
    });
  for (const c of cases) await load(c, setup.warmUpS)();
  return alternateRounds(
    cases.map((c) => ({ name: c.name, run: () => around(c.name, load(c, setup.durationS)) })),
    setup.rounds,
    (round, name, result) => log(`round ${round + 1}/${setup.rounds} ${name}: ${fmtNumber(result.rps)} req/s`),
  );
}
