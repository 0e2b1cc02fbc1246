// Benchmark 1b: what each piece of the chain costs, building it up one middleware at a time (in-process, memory stores).
import { startServer, type BenchChild } from './lib/child.js';
import type { DriveResult } from './lib/server.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, median, table } from './lib/stats.js';

/** The recommended (fused) chain, one piece more per row: see buildTollgateChain's steps. */
const STEPS = [
  'bare Express (no tollgate)',
  '+ apiKeyAuth',
  '+ meter',
  '+ combineLimits(tieredRateLimit)',
  '+ tokenRateLimit in combineLimits',
  '+ budgetGuard in combineLimits',
];

export async function runChainCostBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 3 : 5;
  const requests = context.quick ? 4_000 : 8_000;
  const children: BenchChild[] = [];
  try {
    for (let upTo = 0; upTo < STEPS.length; upTo++) children.push(await startServer({ app: 'tollgate-chain', options: { store: 'memory', upTo } }));
    const drive = { requests, concurrency: 32, keys: 1, checkpoints: 1 };
    for (const child of children) await child.call<DriveResult>('drive', { drive: { ...drive, requests: 5_000 } });
    const perRequestUs: number[][] = STEPS.map(() => []);
    for (let round = 0; round < rounds; round++) {
      for (const [index, child] of children.entries()) {
        const result = await child.call<DriveResult>('drive', { drive });
        const non200 = Object.entries(result.statuses).filter(([code]) => code !== '200');
        if (non200.length > 0) throw new Error(`${STEPS[index]} answered ${JSON.stringify(result.statuses)}`);
        perRequestUs[index]!.push((result.cpuSeconds * 1e6) / requests);
      }
      context.log(`chain cost round ${round + 1}/${rounds} done`);
    }
    const medians = perRequestUs.map((samples) => median(samples));
    const rows = STEPS.map((step, index) => [
      step,
      fmtNumber(1e6 / medians[index]!),
      `${fmtNumber(medians[index]!)} µs`,
      index === 0 ? '—' : `+${fmtNumber(medians[index]! - medians[index - 1]!)} µs`,
      `${fmtNumber(medians[index]! - medians[0]!)} µs`,
    ]);
    const body = [
      `Each row adds one piece to the one above, in the order of the recommended (fused) chain, on createMemoryStores(). ${fmtNumber(requests)} requests per case and round, ` +
        `${rounds} alternating rounds, driven in-process (no sockets, 32 in flight) so the figure is the CPU the middleware costs, not the network. ` +
        'Time per request is the median over rounds of the CPU time (user + system) the server process used / requests, so other work on a shared ' +
        'machine does not inflate it; the marginal cost is what the row adds to the row above (GC lands unevenly, so differences of a few tens of µs are noise).',
      '',
      table(['chain', 'req/s of CPU', 'CPU per request', 'marginal cost', 'tollgate total'], rows),
    ].join('\n');
    const added = STEPS.slice(1).map((step, index) => ({ step: step.slice(2).replace(' in combineLimits', '').replace(/^combineLimits\((\w+)\)$/, '$1'), us: medians[index + 1]! - medians[index]! }));
    const total = medians.at(-1)! - medians[0]!;
    const findings = [
      `CPU: in-process on memory stores the full chain adds ${fmtNumber(total)} µs per request to bare Express's ${fmtNumber(medians[0]!)} µs ` +
        `(${fmtNumber(medians.at(-1)! / medians[0]!, 2)}× the time): ${added
          .slice()
          .sort((a, b) => b.us - a.us)
          .map((a) => `${a.step} ${fmtNumber(a.us)} µs`)
          .join(', ')} (§1b).`,
    ];
    return { title: '1b. Cost of each middleware (in-process, memory stores)', body, targets: [], findings };
  } finally {
    await Promise.all(children.map((child) => child.close()));
  }
}
