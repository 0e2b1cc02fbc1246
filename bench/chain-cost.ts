// Benchmark 1b: what each piece of the chain costs, building it up one middleware at a time (in-process, memory stores).
import { driveBlock, startTogether } from './lib/child.js';
import { rotatingRounds } from './lib/load.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, mean, quantile, table } from './lib/stats.js';

/** The recommended (fused) chain, one piece more per row: see buildTollgateChain's steps. */
const STEPS = [
  'bare Express (no tollgate)',
  '+ apiKeyAuth',
  '+ meter',
  '+ combineLimits(tieredRateLimit)',
  '+ tokenRateLimit in combineLimits',
  '+ budgetGuard in combineLimits',
];
const BLOCK = { requests: 2_000, concurrency: 32, keys: 1, freshPrompts: true };

export async function runChainCostBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 12 : Number(process.env.BENCH_CHAIN_COST_ROUNDS ?? 120);
  // Every step in one process (one heap and JIT, the tokenizers loaded), the meter's count cache on.
  const specs = STEPS.map((_, upTo) => ({
    app: 'tollgate-chain',
    options: { store: 'memory', upTo, freshPrompts: true },
  }));
  const child = await startTogether(specs);
  const perRound = STEPS.map(() => [] as number[]);
  try {
    for (const [app] of STEPS.entries()) await driveBlock(child, { ...BLOCK, requests: 5_000, app });
    await rotatingRounds(STEPS.length, rounds, async (app) => {
      const cost = await driveBlock(child, { ...BLOCK, app });
      if (cost.non2xx > 0) throw new Error(`${STEPS[app]} answered ${cost.non2xx} non-2xx`);
      perRound[app]!.push(cost.cpuUs / cost.requests);
    });
  } finally {
    await child.close();
  }
  const means = perRound.map((samples) => mean(samples));
  // The whole chain less bare Express, round by round: its spread says how far the mean can be trusted.
  const totals = perRound.at(-1)!.map((sample, round) => sample - perRound[0]![round]!);
  const sd = Math.sqrt(totals.reduce((sum, t) => sum + (t - mean(totals)) ** 2, 0) / (totals.length - 1));
  const half = (1.96 * sd) / Math.sqrt(totals.length);
  const total = means.at(-1)! - means[0]!;
  const rows = STEPS.map((step, index) => [
    step,
    fmtNumber(1e6 / means[index]!),
    `${fmtNumber(means[index]!, 1)} µs`,
    index === 0 ? '—' : `+${fmtNumber(means[index]! - means[index - 1]!, 1)} µs`,
    `${fmtNumber(means[index]! - means[0]!, 1)} µs`,
  ]);
  const body = [
    `${rounds} rounds of one ${fmtNumber(BLOCK.requests)}-request block per app, all six in one child, each round starting ` +
      `at another app. The whole chain less bare Express, round by round: quartiles ${fmtNumber(quantile(totals, 0.25), 1)} ` +
      `and ${fmtNumber(quantile(totals, 0.75), 1)} µs, 95% interval of the mean ±${fmtNumber(half, 1)} µs.`,
    '',
    table(['chain', 'req/s of CPU', 'CPU per request', 'marginal cost', 'tollgate total'], rows),
  ].join('\n');
  const added = STEPS.slice(1)
    .map((step, index) => ({
      step: step.slice(2).replace(' in combineLimits', ''),
      us: means[index + 1]! - means[index]!,
    }))
    .sort((a, b) => b.us - a.us);
  const findings = [
    `CPU: in-process on memory stores the full chain adds ${fmtNumber(total, 1)} µs per request (95% interval ` +
      `±${fmtNumber(half, 1)} µs) to bare Express's ${fmtNumber(means[0]!, 1)} µs: ` +
      `${added.map((a) => `${a.step} ${fmtNumber(a.us, 1)} µs`).join(', ')} (§1b).`,
  ];
  // Held only when the whole 95% interval is under the target: a mean just under it on a noisy machine is not enough.
  const targets = [
    {
      target: 'Full chain in-process on memory stores: at most 30 µs of CPU per request over bare Express (§1b)',
      holds: total + half <= 30,
      figures: `+${fmtNumber(total, 1)} µs (95% interval ${fmtNumber(total - half, 1)} to ${fmtNumber(total + half, 1)} µs; bare Express ${fmtNumber(means[0]!, 1)} µs, the chain ${fmtNumber(means.at(-1)!, 1)} µs)`,
    },
  ];
  return { title: '1b. Cost of each middleware (in-process, memory stores)', body, targets, findings };
}
