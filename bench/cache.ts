// The response cache: a hit against a miss on a zero-latency upstream (wall time), and what a miss costs over no cache (CPU per request).
import { fileURLToPath } from 'node:url';
import { forkAsking, startServer, type AskingChild } from './lib/child.js';
import { CACHE_CASES } from './lib/cache-child.js';
import type { CacheBlockCost, CacheCase, PairCosts } from './lib/cache-child.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtBytes, fmtNumber, fmtSigned, median, quantile, table, withQuartiles } from './lib/stats.js';

const ENTRY = fileURLToPath(new URL('./lib/cache-child.ts', import.meta.url));
/** The targets of issue 18. */
const HIT_SPEEDUP_TARGET = 5;
const MISS_OVERHEAD_TARGET_US = 10;

const NAMES: Record<CacheCase, string> = {
  none: 'proxy, no cache',
  miss: 'proxy, memory cache, every request a miss (looked up, answer kept and stored)',
  hit: 'proxy, memory cache, every request a hit',
};

type CaseChild = AskingChild;

const forkCase = (): CaseChild => forkAsking(ENTRY, 'cache');

/** One pair's verdict: the typical request's difference, the collection of the bytes it allocates more, and their sum. */
interface PairVerdict {
  typicalDiffs: number[];
  meanDiffs: number[];
  allocated: [number, number];
  gcOf(bytes: number): number;
  gcCost: number;
  total: number;
  unexpected: number;
}

function verdictOf(pair: PairCosts): PairVerdict {
  const typicalDiffs = pair.blockTypical.map(([bare, cached]) => cached - bare);
  const gcOf = (bytes: number) => bytes * pair.gcPerByte;
  const gcCost = gcOf(pair.allocatedBytes[1] - pair.allocatedBytes[0]);
  return {
    typicalDiffs,
    meanDiffs: pair.blockMeans.map(([bare, cached]) => cached - bare),
    allocated: pair.allocatedBytes,
    gcOf,
    gcCost,
    total: median(typicalDiffs) + gcCost,
    unexpected: pair.unexpected,
  };
}

const signed = (us: number) => fmtSigned(us);

/** A pair's table: each case's typical request and block mean, what it allocates and the collection of that, and their differences. */
function pairTable(pair: PairCosts, verdict: PairVerdict, names: [string, string]): string {
  const column = (index: 0 | 1) => [
    withQuartiles(pair.blockTypical.map((costs) => costs[index])),
    withQuartiles(pair.blockMeans.map((costs) => costs[index])),
    fmtBytes(pair.allocatedBytes[index]),
    fmtNumber(verdict.gcOf(pair.allocatedBytes[index]), 1),
  ];
  return table(
    ['case', 'typical request, µs', 'block mean, µs', 'allocated per request', 'its collection, µs'],
    [
      [names[0], ...column(0)],
      [names[1], ...column(1)],
      [
        'cache − none (per-block differences)',
        withQuartiles(verdict.typicalDiffs),
        withQuartiles(verdict.meanDiffs),
        fmtBytes(pair.allocatedBytes[1] - pair.allocatedBytes[0]),
        fmtNumber(verdict.gcCost, 1),
      ],
    ],
  );
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
  const pairRounds = { blocks: context.quick ? 10 : 40, roundsPerBlock: 250, warmupRounds: 2_000 };
  let chain: PairCosts | undefined;
  let proxy: PairCosts | undefined;
  try {
    for (const mode of cases) {
      const child = forkCase();
      children.push(child);
      await child.ask({ type: 'start', mode, upstream: upstream.url, bodies: warmup + rounds * blockSize });
    }
    context.log(
      `cache: ${cases.length} processes, ${fmtNumber(warmup)} requests each to warm up, then ${rounds} rounds of ${blockSize} per case`,
    );
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
    for (const subject of ['chain', 'proxy'] as const) {
      context.log(
        `cache: the ${subject === 'chain' ? 'minimal chain' : 'example proxy'} with and without the cache, in one process`,
      );
      const child = forkCase();
      children.push(child);
      const costs = await child.ask<PairCosts>({ type: 'pair', subject, upstream: upstream.url, ...pairRounds });
      if (subject === 'chain') chain = costs;
      else proxy = costs;
    }
  } finally {
    for (const child of children) child.kill();
    await upstream.close();
  }
  const [none, miss, hit] = [0, 1, 2];
  const perRound = (values: number[][], a: number, b: number, combine: (x: number, y: number) => number) =>
    median(values[a]!.map((value, round) => combine(value, values[b]![round]!)));
  const speedup = perRound(wall, miss, hit, (x, y) => x / y);
  const chainVerdict = verdictOf(chain!);
  const shareOfChain = median(chainVerdict.typicalDiffs) / median(chain!.blockTypical.map((costs) => costs[0]));
  const proxyVerdict = verdictOf(proxy!);
  const rows = cases.map((name, index) => [
    NAMES[name],
    `${fmtNumber(median(cpu[index]!), 1)} µs`,
    `${fmtNumber(median(wall[index]!), 1)} µs`,
    index === none ? '—' : signed(perRound(cpu, index, none, (x, y) => x - y)),
  ]);
  const pairsValid = chainVerdict.unexpected === 0 && proxyVerdict.unexpected === 0;
  const voided = (n: number) => (n > 0 ? ` **${n} answers lacked the cache header their case expects: void.**` : '');
  const body = [
    `Three processes (no cache; a memory cache, every request new; the same, one body repeated), ${rounds} rounds of ` +
      `one block of ${blockSize} requests per case after ${fmtNumber(warmup)} to warm up, the first case rotating; ` +
      `medians over rounds.${voided(unexpected)}`,
    '',
    table(['case', 'CPU per request', 'wall per request', 'CPU over no cache'], rows),
    '',
    `A hit answers ${fmtNumber(speedup, 1)}× faster than a miss (wall time per request).`,
    '',
    '**What a miss costs, each pair in one process** (lib/paired-requests.ts: one request to each in turn, each ' +
      `request's CPU a sample, ${pairRounds.blocks} blocks of ${pairRounds.roundsPerBlock} rounds; a block's typical ` +
      'request is the mean of its middle half; collection shared out per byte allocated). The minimal chain (JSON, an ' +
      `identity, meter()) judges the target.${pairsValid ? '' : voided(chainVerdict.unexpected + proxyVerdict.unexpected)}`,
    '',
    pairTable(chain!, chainVerdict, ['minimal metered chain', 'the same with the cache, every request a miss']),
    '',
    `The cache's own work per miss: **${signed(chainVerdict.total)}**, ${fmtNumber(100 * shareOfChain, 1)}% of the ` +
      "chain's typical request. The whole example proxy, both apps in one process:",
    '',
    pairTable(proxy!, proxyVerdict, ['proxy, no cache', 'proxy, memory cache, every request a miss']),
    '',
    `In the whole proxy a miss costs **${signed(proxyVerdict.total)}**.`,
  ].join('\n');
  const valid = unexpected === 0;
  const figuresOf = (verdict: PairVerdict) =>
    `${signed(verdict.total)} (typical request ${signed(median(verdict.typicalDiffs))}, quartiles over blocks ` +
    `${fmtNumber(quantile(verdict.typicalDiffs, 0.25), 1)}, ${fmtNumber(quantile(verdict.typicalDiffs, 0.75), 1)}; collection ` +
    `${signed(verdict.gcCost)} for ${fmtBytes(verdict.allocated[1] - verdict.allocated[0])} more allocated)`;
  return {
    title: '13. Response cache: hit, miss and no cache (memory store)',
    body,
    targets: [
      {
        target: `A cache hit answers at least ${HIT_SPEEDUP_TARGET}× faster than a miss against a zero-latency upstream (the example proxy)`,
        holds: valid ? speedup >= HIT_SPEEDUP_TARGET : undefined,
        figures: `${fmtNumber(speedup, 1)}× (${fmtNumber(median(wall[hit]!), 1)} µs against ${fmtNumber(median(wall[miss]!), 1)} µs per request)`,
      },
      {
        target: `A cache miss costs at most ${MISS_OVERHEAD_TARGET_US} µs of CPU more than no cache (its own work per miss, minimal chain)`,
        holds: pairsValid ? chainVerdict.total <= MISS_OVERHEAD_TARGET_US : undefined,
        figures:
          `${figuresOf(chainVerdict)} in a minimal chain (${fmtNumber(100 * shareOfChain, 1)}% of its typical request); ` +
          `${figuresOf(proxyVerdict)} in the whole proxy`,
      },
    ],
    findings: [
      `Response cache: a hit answers ${fmtNumber(speedup, 1)}× faster than a miss; its CPU (${fmtNumber(median(cpu[hit]!), 1)} µs) is the chain a hit ` +
        `still runs (auth, body, validation, scopes and tier rules, the key and lookup, suspensions, request limits, the record; not the estimate); ` +
        `a miss adds ${signed(chainVerdict.total)} of the cache's own work (key, lookup, keeping the answer, storing it) in a minimal chain, ` +
        `${signed(proxyVerdict.total)} in the whole proxy (§13).`,
    ],
  };
}
