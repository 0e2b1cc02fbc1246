// Benchmark: the event loop's longest stall under load with 100,000 subjects in the abuse watch (issue 58): the
// watch as shipped (model in a worker thread, its own work sliced), the same scoring on the loop (before), and none.
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_ARGS } from '../packages/gateway/src/v8-flags.js';
import type { BackgroundStall } from './lib/background-stall.js';
import type { BackgroundRequest } from './lib/background-stall-child.js';
import { askBenchChild, forkAsking } from './lib/child.js';
import type { LoopStats, StallMessage, StallMode } from './lib/guard-stall-child.js';
import { CHAT_BODY } from './lib/guard-stall-child.js';
import { runLoad, type LoadResult } from './lib/load.js';
import {
  aloneContext,
  runAlone,
  verdictMark,
  type BenchContext,
  type SectionResult,
  type TargetVerdict,
} from './lib/section.js';
import { fmtNumber, median, quantile, table } from './lib/stats.js';

const ENTRY = fileURLToPath(new URL('./lib/guard-stall-child.ts', import.meta.url));
const BACKGROUND_ENTRY = fileURLToPath(new URL('./lib/background-stall-child.ts', import.meta.url));
/** V8 as it comes (`BENCH_STALL_V8_DEFAULTS=1`), else as the gateway is started (SERVER_NODE_ARGS) and sets it. */
const V8_DEFAULTS = process.env.BENCH_STALL_V8_DEFAULTS === '1';
const NODE_ARGS = V8_DEFAULTS ? [] : [...SERVER_NODE_ARGS];
const SUBJECTS = Number(process.env.BENCH_STALL_SUBJECTS ?? 100_000);
/** A steady rate well under what one process serves: latency, not throughput, is what a stall moves. */
const RATE = 400;
const CONNECTIONS = 8;
/** The stall target (ms) and how far the p99 may move from the control's (ms, or a share of it). */
const STALL_TARGET_MS = 10;
const P99_NOISE = { ms: 2, share: 0.25 };
const ALL_MODES: StallMode[] = ['control', 'worker', 'redis-control', 'redis', 'on-loop'];
/**
 * `BENCH_STALL_MODES=on-loop` (a comma list) runs some cases only; the verdicts need `control` and `worker`, and on
 * Redis `redis-control` and `redis`.
 */
const MODES = (process.env.BENCH_STALL_MODES?.split(',') ?? ALL_MODES) as StallMode[];
const LABELS: Record<StallMode, string> = {
  control: 'no abuse watch',
  worker: `abuse watch, ${SUBJECTS.toLocaleString('en')} subjects (after: worker thread + slices)`,
  'redis-control': 'no abuse watch, Redis stores',
  redis: `the same on Redis stores (the sums read back from Redis each round)`,
  'on-loop': `the same scoring on the loop, ${SUBJECTS.toLocaleString('en')} subjects (before, a lower bound)`,
};

interface Round {
  loop: LoopStats;
  load: LoadResult;
}

async function measure(mode: StallMode, durationS: number, log: (line: string) => void): Promise<Round> {
  const child = forkAsking(ENTRY, 'guard-stall', { execArgv: NODE_ARGS });
  const ask = <T>(message: StallMessage) => child.ask<T>(message);
  try {
    const started = Date.now();
    const { port } = await ask<{ port: number }>({ type: 'start', mode, subjects: SUBJECTS });
    log(`guard-stall: ${mode} ready in ${Math.round((Date.now() - started) / 1000)} s`);
    await ask({ type: 'monitor' });
    const load = await runLoad({
      url: `http://127.0.0.1:${port}`,
      path: '/v1/chat',
      body: CHAT_BODY,
      headers: {
        authorization: 'Bearer k1',
        'content-type': 'application/json',
        'x-forwarded-for': '10.250.0.1',
      },
      connections: CONNECTIONS,
      durationS,
      overallRate: RATE,
    });
    const loop = await ask<LoopStats>({ type: 'stats' });
    await ask({ type: 'exit' }).catch(() => undefined);
    return { loop, load };
  } finally {
    child.kill();
  }
}

/**
 * Background work at `SUBJECTS`, each alone on this process's loop: the abuse watch's read of one bucket of sums from
 * the real Redis (`REDIS_URL`, under a prefix of its own, deleted after), a budget rebuild of as many scopes, and the
 * budget drift sampler's first tick over them (it learns every scope the usage ledger names).
 */
export async function backgroundStalls(log: (line: string) => void): Promise<string> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  // Each case in a child of its own, started as the gateway is (NODE_ARGS).
  const inChild = (work: BackgroundRequest['work']) => () =>
    askBenchChild<BackgroundStall>(
      BACKGROUND_ENTRY,
      { work, subjects: SUBJECTS, url, v8Defaults: V8_DEFAULTS } satisfies BackgroundRequest,
      'background-stall',
      { execArgv: NODE_ARGS },
    );
  const cases: [string, () => Promise<BackgroundStall>][] = [
    [`abuse tallies of one bucket from Redis (HSCAN pages)`, inChild('abuse-bucket-read')],
    [`budget rebuild of ${fmtNumber(SUBJECTS)} scopes (memory ledger)`, inChild('budget-rebuild')],
    [`drift sampler's first tick over ${fmtNumber(SUBJECTS)} scopes (memory ledger)`, inChild('drift-first-tick')],
  ];
  const rows: string[][] = [];
  for (const [label, run] of cases) {
    const stall = await run();
    log(`guard-stall: ${label}: ${JSON.stringify(stall)}`);
    rows.push([
      label,
      fmtNumber(stall.maxStallMs, 1),
      fmtNumber(stall.maxStallCpuMs, 1),
      fmtNumber(stall.gcMaxMs, 1),
      fmtNumber(stall.durationMs / 1000, 1),
      fmtNumber(stall.count),
    ]);
  }
  return [
    `Background work with ${fmtNumber(SUBJECTS)} subjects, each alone in a process of its own, while a 1 ms timer ` +
      'and `monitorEventLoopDelay` watch the loop (CPU: the most the process spent between two turns of the timer).',
    '',
    table(
      ['work', 'longest stall (ms)', 'longest stall in CPU (ms)', 'longest GC pause (ms)', 'took (s)', 'read'],
      rows,
    ),
  ].join('\n');
}

const p99Of = (round: Round) => quantile(round.load.latencies, 0.99);

/** The three verdicts on a watched case's rounds against the control's, paired by round. */
function watchTargets(on: string, watched: Round[], control: Round[], rounds: number): TargetVerdict[] {
  const measured = watched.length > 0 && control.length > 0;
  const worstStall = Math.max(...watched.map((r) => r.loop.maxMs));
  const worstCpu = Math.max(...watched.map((r) => r.loop.cpuMaxMs));
  const threadCpu = watched.every((r) => r.loop.cpuOf === 'thread');
  // Paired by round (each case in turn, the machine's pace alike): what the watch adds to the longest stall.
  const added = watched.map((r, i) => r.loop.maxMs - (control[i]?.loop.maxMs ?? NaN));
  const p99Watched = median(watched.map(p99Of));
  const p99Control = median(control.map(p99Of));
  const p99Holds = p99Watched - p99Control <= Math.max(P99_NOISE.ms, P99_NOISE.share * p99Control);
  const scored = measured && watched.every((r) => r.loop.model && r.loop.listed > 0);
  return [
    {
      target:
        `${on}The watch's longest stall of the loop in its own CPU (main thread) under load with ` +
        `${fmtNumber(SUBJECTS)} subjects ≤ ${STALL_TARGET_MS} ms`,
      holds: scored && threadCpu ? worstCpu <= STALL_TARGET_MS : undefined,
      figures: threadCpu
        ? `${fmtNumber(worstCpu, 1)} ms (worst of ${rounds} rounds; without the watch ${fmtNumber(
            Math.max(...control.map((r) => r.loop.cpuMaxMs)),
            1,
          )} ms)`
        : 'not judged: this Node has no process.threadCpuUsage (run the bench on Node 22 or 24)',
    },
    {
      target: `${on}What the watch adds to the longest wall-clock stall (median of rounds, paired) ≤ ${STALL_TARGET_MS} ms`,
      holds: scored && rounds >= 5 ? median(added) <= STALL_TARGET_MS : undefined,
      figures:
        `${fmtNumber(median(added), 1)} ms (each round: ${added.map((d) => fmtNumber(d, 1)).join(' / ')}; ` +
        `worst with the watch ${fmtNumber(worstStall, 1)} ms, without ${fmtNumber(
          Math.max(...control.map((r) => r.loop.maxMs)),
          1,
        )} ms)`,
    },
    {
      target: `${on}p99 request latency with the watch unchanged within noise (≤ 2 ms or 25% over no watch)`,
      holds: measured ? p99Holds : undefined,
      figures: `${fmtNumber(p99Watched, 1)} ms against ${fmtNumber(p99Control, 1)} ms`,
    },
  ];
}

export async function runGuardStallBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 1 : 5;
  const durationS = context.quick ? 15 : 40;
  const results = new Map<StallMode, Round[]>(ALL_MODES.map((mode) => [mode, []]));
  for (let round = 0; round < rounds; round++)
    for (const mode of MODES) results.get(mode)!.push(await measure(mode, durationS, context.log));

  const rows = MODES.map((mode) => {
    const all = results.get(mode)!;
    const non2xx = all.reduce((sum, r) => sum + r.load.requests - (r.load.statuses['200'] ?? 0), 0);
    return [
      LABELS[mode],
      all.map((r) => fmtNumber(r.loop.maxMs, 1)).join(' / '),
      all.map((r) => fmtNumber(r.loop.cpuMaxMs, 1)).join(' / '),
      fmtNumber(median(all.map((r) => r.loop.p99Ms)), 1),
      all.map((r) => fmtNumber(r.loop.gcMaxMs, 1)).join(' / '),
      fmtNumber(median(all.map((r) => quantile(r.load.latencies, 0.5))), 2),
      all.map((r) => fmtNumber(p99Of(r), 1)).join(' / '),
      fmtNumber(median(all.map((r) => r.load.rps))),
      String(non2xx),
      mode === 'worker' || mode === 'redis'
        ? all.map((r) => `${r.loop.listed}${r.loop.model ? '' : ' (no model)'}`).join(' / ')
        : '',
      mode === 'on-loop' ? all.map((r) => fmtNumber(r.loop.roundCpuMs)).join(' / ') : '',
    ];
  });
  const worker = results.get('worker')!;
  const control = results.get('control')!;
  const targets = [
    ...watchTargets('', worker, control, rounds),
    // Against no watch on Redis stores: a request's own store calls are not the watch's.
    ...(results.get('redis')!.length > 0
      ? watchTargets('On Redis stores: ', results.get('redis')!, results.get('redis-control')!, rounds)
      : []),
  ];
  const body = [
    `${rounds} round(s) of each case in turn, each a fresh process (V8 ${
      V8_DEFAULTS ? 'as it comes' : 'as the gateway ' + 'sets it'
    }): ${fmtNumber(SUBJECTS)} addresses one request each first, then ${durationS} s at ${RATE} req/s over ` +
      `${CONNECTIONS} connections while \`monitorEventLoopDelay\` (1 ms) watches the server's loop.`,
    '',
    table(
      [
        'case',
        'longest stall (ms, each round)',
        `longest stall in CPU (ms, ${worker[0]?.loop.cpuOf ?? control[0]?.loop.cpuOf ?? 'thread'}, each round)`,
        'loop delay p99 (ms)',
        'longest GC pause (ms)',
        'p50 (ms)',
        'p99 (ms, each round)',
        'req/s',
        'non-2xx',
        'subjects listed',
        'CPU of one scoring round on the loop (ms)',
      ],
      rows,
    ),
    '',
    targets.map((t) => `- ${verdictMark(t.holds)}: ${t.target}: ${t.figures}`).join('\n'),
    '',
    await backgroundStalls(context.log),
  ].join('\n');
  return { title: `Guard: the event loop with ${fmtNumber(SUBJECTS)} abuse subjects (issue 58)`, body, targets };
}

if (runAlone(import.meta.url) && process.argv.includes('--background')) {
  process.stdout.write(`${await backgroundStalls((line) => process.stderr.write(`${line}\n`))}\n`);
  process.exit(0);
} else if (runAlone(import.meta.url)) {
  const result = await runGuardStallBenchmark(aloneContext('guard-stall', process.argv.includes('--quick')));
  process.stdout.write(`## ${result.title}\n\n${result.body}\n`);
}
