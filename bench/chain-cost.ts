// Benchmark 1b: what each piece of the chain costs, building it up one middleware at a time (in-process, memory stores).
import { fileURLToPath } from 'node:url';
import { askBenchChild } from './lib/child.js';
import type { ChainCostRequest, ChainCostSamples } from './lib/chain-cost-child.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, quantile, table } from './lib/stats.js';

const ENTRY = fileURLToPath(new URL('./lib/chain-cost-child.ts', import.meta.url));

/** The recommended (fused) chain, one piece more per row: see buildTollgateChain's steps. */
const STEPS = [
  'bare Express (no tollgate)',
  '+ apiKeyAuth',
  '+ meter',
  '+ combineLimits(tieredRateLimit)',
  '+ tokenRateLimit in combineLimits',
  '+ budgetGuard in combineLimits',
];

function mean(samples: readonly number[]): number {
  let sum = 0;
  for (const sample of samples) sum += sample;
  return sum / samples.length;
}

export async function runChainCostBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 12 : 120;
  const requestsPerBlock = 2_000;
  const { perRound, statuses } = await askBenchChild<ChainCostSamples>(
    ENTRY,
    {
      steps: STEPS.length,
      rounds,
      requestsPerBlock,
      warmupRequests: 5_000,
      concurrency: 32,
    } satisfies ChainCostRequest,
    'chain-cost',
  );
  statuses.forEach((answered, index) => {
    const others = Object.keys(answered).filter((code) => code !== '200');
    if (others.length > 0) throw new Error(`${STEPS[index]} answered ${JSON.stringify(answered)}`);
  });
  const means = perRound.map((samples) => mean(samples));
  // The whole chain less bare Express, round by round: its spread says how far the mean can be trusted.
  const totals = perRound.at(-1)!.map((sample, round) => sample - perRound[0]![round]!);
  const [q1, q3] = [quantile(totals, 0.25), quantile(totals, 0.75)];
  const sd = Math.sqrt(totals.reduce((sum, t) => sum + (t - mean(totals)) ** 2, 0) / (totals.length - 1));
  const halfInterval = (1.96 * sd) / Math.sqrt(totals.length);
  const total = means.at(-1)! - means[0]!;
  const rows = STEPS.map((step, index) => [
    step,
    fmtNumber(1e6 / means[index]!),
    `${fmtNumber(means[index]!, 1)} µs`,
    index === 0 ? '—' : `+${fmtNumber(means[index]! - means[index - 1]!, 1)} µs`,
    `${fmtNumber(means[index]! - means[0]!, 1)} µs`,
  ]);
  context.log(`chain cost: ${rounds} rounds done`);
  const body = [
    `Each row adds one piece to the one above, in the order of the recommended (fused) chain mounted as one layer (core's \`chain()\`), on createMemoryStores(). ` +
      `All six apps are built in one child process (one heap, one JIT, the tokenizers loaded) and driven in-process (no sockets, 32 in flight, ` +
      `the event loop turning after each block), in ${rounds} rounds of one ${fmtNumber(requestsPerBlock)}-request block per app, each round starting at another app. ` +
      "Each request brings a user message never sent before, after the same system prompt (the meter's count cache on: the system prompt is found, the new message counted). " +
      "CPU per request is the process's CPU time (user + system, garbage collection included) over all of an app's blocks / their requests, so other work on a shared " +
      'machine does not inflate it and a collection is paid by whichever app allocated its share; the marginal cost is what the row adds to the row above. ' +
      `The whole chain less bare Express, round by round: quartiles ${fmtNumber(q1, 1)} and ${fmtNumber(q3, 1)} µs, 95% interval of the mean ±${fmtNumber(halfInterval, 1)} µs.`,
    '',
    table(['chain', 'req/s of CPU', 'CPU per request', 'marginal cost', 'tollgate total'], rows),
  ].join('\n');
  const added = STEPS.slice(1).map((step, index) => ({
    step: step
      .slice(2)
      .replace(' in combineLimits', '')
      .replace(/^combineLimits\((\w+)\)$/, '$1'),
    us: means[index + 1]! - means[index]!,
  }));
  const findings = [
    `CPU: in-process on memory stores the full chain adds ${fmtNumber(total, 1)} µs per request (95% interval ±${fmtNumber(halfInterval, 1)} µs) to bare Express's ${fmtNumber(means[0]!, 1)} µs ` +
      `(${fmtNumber(means.at(-1)! / means[0]!, 2)}× the time): ${added
        .slice()
        .sort((a, b) => b.us - a.us)
        .map((a) => `${a.step} ${fmtNumber(a.us, 1)} µs`)
        .join(', ')} (§1b).`,
  ];
  // Held only when the whole 95% interval is under the target: a mean just under it on a noisy machine is not enough.
  const targets = [
    {
      target: 'Full chain in-process on memory stores: at most 30 µs of CPU per request over bare Express (§1b)',
      holds: total + halfInterval <= 30,
      figures: `+${fmtNumber(total, 1)} µs (95% interval ${fmtNumber(total - halfInterval, 1)} to ${fmtNumber(total + halfInterval, 1)} µs; bare Express ${fmtNumber(means[0]!, 1)} µs, the chain ${fmtNumber(means.at(-1)!, 1)} µs)`,
    },
  ];
  return { title: '1b. Cost of each middleware (in-process, memory stores)', body, targets, findings };
}
