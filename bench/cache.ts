// The response cache: a hit against a miss on a zero-latency upstream (wall time), and what a miss costs over no cache (CPU per request).
import { fileURLToPath } from 'node:url';
import { forkBench, startServer } from './lib/child.js';
import { CACHE_CASES } from './lib/cache-child.js';
import type { CacheBlockCost, CacheCase, ChainCosts } from './lib/cache-child.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, table } from './lib/stats.js';

const ENTRY = fileURLToPath(new URL('./lib/cache-child.ts', import.meta.url));
/** The targets of issue 18. */
const HIT_SPEEDUP_TARGET = 5;
const MISS_OVERHEAD_TARGET_US = 10;

const NAMES: Record<CacheCase, string> = {
  none: 'proxy, no cache',
  miss: 'proxy, memory cache, every request a miss (looked up, answer kept and stored)',
  hit: 'proxy, memory cache, every request a hit',
};

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

interface CaseChild {
  ask<T>(message: Record<string, unknown>): Promise<T>;
  kill(): void;
}

function forkCase(): CaseChild {
  const child = forkBench(ENTRY);
  let exit: Error | undefined;
  child.once('exit', (code, signal) => (exit = new Error(`the cache child exited (${code ?? signal})`)));
  return {
    ask<T>(message: Record<string, unknown>) {
      if (exit) return Promise.reject(exit);
      return new Promise<T>((resolve, reject) => {
        const onExit = () => reject(exit ?? new Error('the cache child exited'));
        child.once('exit', onExit);
        child.once('message', (reply: { ok: boolean; value?: T; error?: string }) => {
          child.off('exit', onExit);
          if (reply.ok) resolve(reply.value!);
          else reject(new Error(reply.error ?? 'the cache child failed'));
        });
        child.send(message);
      });
    },
    kill: () => child.kill(),
  };
}

export async function runCacheBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 10 : 40;
  const blockSize = 300;
  const warmup = 2_000;
  const cases = [...CACHE_CASES];
  const upstream = await startServer({ app: 'mock-upstream' });
  const children: CaseChild[] = [];
  const cpu: number[][] = cases.map(() => []);
  const wall: number[][] = cases.map(() => []);
  let unexpected = 0;
  let chain: ChainCosts = { bare: [], miss: [] };
  try {
    for (const mode of cases) {
      const child = forkCase();
      children.push(child);
      await child.ask({ type: 'start', mode, upstream: upstream.url, bodies: warmup + rounds * blockSize });
    }
    context.log(`cache: ${cases.length} processes, ${fmtNumber(warmup)} requests each to warm up, then ${rounds} rounds of ${blockSize} per case`);
    for (const child of children) await child.ask<CacheBlockCost>({ type: 'block', requests: warmup });
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < cases.length; k++) {
        const index = (round + k) % cases.length;
        const cost = await children[index]!.ask<CacheBlockCost>({ type: 'block', requests: blockSize });
        cpu[index]!.push(cost.cpuUs / cost.requests);
        wall[index]!.push(cost.wallUs / cost.requests);
        unexpected += cost.unexpected;
      }
    }
    for (const child of children) await child.ask({ type: 'stop' });
    context.log('cache: the minimal chain with and without the cache, in one process');
    const chainChild = forkCase();
    children.push(chainChild);
    chain = await chainChild.ask<ChainCosts>({ type: 'chain', rounds: rounds * 2, blockSize: 500, warmup: 3_000 });
  } finally {
    for (const child of children) child.kill();
    await upstream.close();
  }
  const [none, miss, hit] = [0, 1, 2];
  const perRound = (values: number[][], a: number, b: number, combine: (x: number, y: number) => number) =>
    median(values[a]!.map((value, round) => combine(value, values[b]![round]!)));
  const missOverCpu = perRound(cpu, miss, none, (x, y) => x - y);
  const speedup = perRound(wall, miss, hit, (x, y) => x / y);
  const signed = (us: number) => `${us >= 0 ? '+' : ''}${fmtNumber(us, 1)} µs`;
  const chainMiss = median(chain.miss.map((value, round) => value - chain.bare[round]!));
  const chainSorted = chain.miss.map((value, round) => value - chain.bare[round]!).sort((a, b) => a - b);
  const chainQuartile = (q: number) => chainSorted[Math.min(chainSorted.length - 1, Math.floor(q * chainSorted.length))]!;
  const rows = cases.map((name, index) => [
    NAMES[name],
    `${fmtNumber(median(cpu[index]!), 1)} µs`,
    `${fmtNumber(median(wall[index]!), 1)} µs`,
    index === none ? '—' : signed(perRound(cpu, index, none, (x, y) => x - y)),
  ]);
  const body = [
    'The example proxy (createProxyApp, memory stores, one pro key, key, tenant and global budgets, limits far above the load, metrics off, ' +
      'log silent) in front of the zero-latency mock upstream (a child process of its own, over HTTP), driven in-process one request at a ' +
      'time, as in §8. Three processes, one per case: no `cache` in the config; `cache: { store: "memory" }` with every request a body it has ' +
      'not seen (same size, a counter in the prompt), so each one is looked up, kept as it passes and stored after the settle; the same cache ' +
      'with one body repeated, so every request after the first is a hit. The bodies are built before the blocks. ' +
      `After ${fmtNumber(warmup)} requests each to warm up, ${rounds} rounds of one block of ${blockSize} requests per case, the first case ` +
      'rotating. CPU is the process\'s user + system time over the block; wall is the block\'s elapsed time; both divided by its requests. ' +
      'Each comparison is the median over rounds of the comparison within a round.' +
      (unexpected > 0 ? ` **${unexpected} answers did not carry the cache header their case expects: the figures are void.**` : ''),
    '',
    table(['case', 'CPU per request', 'wall per request', 'CPU over no cache'], rows),
    '',
    `A hit answers ${fmtNumber(speedup, 1)}× faster than a miss (wall time per request); a miss costs ${signed(missOverCpu)} of CPU over no cache.`,
    '',
    'The cache\'s own work on a miss, away from the rest of the proxy: a minimal chain (express.json, an identity, `meter()`) answering ' +
      'a chat completion at once, without and with the cache\'s three steps (`lookup`, `chooseLimits` with nothing to choose, `answer`; ' +
      'the default 64 MiB memory store, every body new, so every request is keyed, looked up, kept and stored), in one process, ' +
      `blocks of 500 alternating A B / B A over ${chain.bare.length} rounds after 3,000 requests each to warm up.`,
    '',
    table(['case', 'CPU per request'], [
      ['minimal metered chain', `${fmtNumber(median(chain.bare), 1)} µs`],
      ['the same with the cache, every request a miss', `${fmtNumber(median(chain.miss), 1)} µs`],
      ['the cache\'s own work per miss (median of the paired differences)', `${signed(chainMiss)} (quartiles ${fmtNumber(chainQuartile(0.25), 1)}, ${fmtNumber(chainQuartile(0.75), 1)} µs)`],
    ]),
  ].join('\n');
  const valid = unexpected === 0;
  return {
    title: '13. Response cache: hit, miss and no cache (a process per case, memory store)',
    body,
    targets: [
      {
        target: `A cache hit answers at least ${HIT_SPEEDUP_TARGET}× faster than a miss against a zero-latency upstream (the example proxy)`,
        holds: valid ? speedup >= HIT_SPEEDUP_TARGET : undefined,
        figures: `${fmtNumber(speedup, 1)}× (${fmtNumber(median(wall[hit]!), 1)} µs against ${fmtNumber(median(wall[miss]!), 1)} µs per request)`,
      },
      {
        // Judged on the minimal chain: in the whole proxy the same difference moves by ±20 µs from run to run on this machine.
        target: `A cache miss costs at most ${MISS_OVERHEAD_TARGET_US} µs of CPU more than no cache (its own work per miss, minimal chain)`,
        holds: chain.bare.length > 0 ? chainMiss <= MISS_OVERHEAD_TARGET_US : undefined,
        figures: `${signed(chainMiss)} in a minimal chain (quartiles ${fmtNumber(chainQuartile(0.25), 1)}, ${fmtNumber(chainQuartile(0.75), 1)} µs); ${signed(missOverCpu)} over ${fmtNumber(median(cpu[none]!), 1)} µs in the whole proxy`,
      },
    ],
    findings: [
      `Response cache: a hit answers ${fmtNumber(speedup, 1)}× faster than a miss; its CPU (${fmtNumber(median(cpu[hit]!), 1)} µs) is the chain a hit ` +
        `still runs (auth, body, validation, scopes and tier rules, the key and lookup, suspensions, request limits, the record; not the estimate); ` +
        `a miss adds ${signed(chainMiss)} of the cache's own work (key, lookup, keeping the answer, storing it) (§13).`,
    ],
  };
}
