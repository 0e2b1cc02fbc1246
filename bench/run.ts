// `pnpm bench`: runs every benchmark in one go and writes bench/RESULTS.md (machine, date, command, figures, verdicts).
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createClient } from 'redis';
import { runAbuseBenchmark } from './abuse.js';
import { runBuildsBenchmark } from './builds.js';
import { runCacheBenchmark } from './cache.js';
import { runCapacityBenchmark } from './capacity.js';
import { runChainBenchmark } from './chain.js';
import { runChainCostBenchmark } from './chain-cost.js';
import { runDeploymentBenchmark } from './deployment.js';
import { runDeploymentMemoryBenchmark } from './deployment-memory.js';
import { runScaleBenchmark } from './scale.js';
import { runDeploymentLayersBenchmark } from './deployment-layers.js';
import { runDeploymentMinuteBenchmark, runDeploymentShortBenchmark } from './deployment-short.js';
import { runEstimationBenchmark } from './estimate.js';
import { runEstimateScriptsBenchmark } from './estimate-scripts.js';
import { runGuardCostBenchmark } from './guard-cost.js';
import { runGuardDetectionBenchmark } from './guard-detection.js';
import { runGuardStallBenchmark } from './guard-stall.js';
import { runGuardrailsBenchmark } from './guardrails.js';
import { runHardStopBenchmark } from './hard-stop.js';
import { runObservabilityBenchmark } from './observability.js';
import { runProxyBenchmark } from './proxy.js';
import { runRoundTripBenchmark } from './round-trips.js';
import { runRoutingBenchmark } from './routing.js';
import { runScopesBenchmark } from './scopes.js';
import { runStoreCostBenchmark } from './store-cost.js';
import { REDIS_URL } from './lib/fixtures.js';
import { describeMachine } from './lib/machine.js';
import { targetsTable, type BenchContext, type SectionResult } from './lib/section.js';

const BENCHMARKS: Record<string, (context: BenchContext) => Promise<SectionResult>> = {
  chain: runChainBenchmark,
  'chain-cost': runChainCostBenchmark,
  proxy: runProxyBenchmark,
  estimate: runEstimationBenchmark,
  'estimate-scripts': runEstimateScriptsBenchmark,
  'round-trips': runRoundTripBenchmark,
  'hard-stop': runHardStopBenchmark,
  'store-cost': runStoreCostBenchmark,
  observability: runObservabilityBenchmark,
  'guard-detection': runGuardDetectionBenchmark,
  'guard-cost': runGuardCostBenchmark,
  'guard-stall': runGuardStallBenchmark,
  abuse: runAbuseBenchmark,
  guardrails: runGuardrailsBenchmark,
  scopes: runScopesBenchmark,
  capacity: runCapacityBenchmark,
  cache: runCacheBenchmark,
  routing: runRoutingBenchmark,
  deployment: runDeploymentBenchmark,
  'deployment-memory': runDeploymentMemoryBenchmark,
  'deployment-short': runDeploymentShortBenchmark,
  'deployment-minute': runDeploymentMinuteBenchmark,
  'deployment-layers': runDeploymentLayersBenchmark,
  builds: runBuildsBenchmark,
  scale: runScaleBenchmark,
};

/**
 * `pnpm bench:targets` (`--targets`): the sections whose verdicts are the performance issue's (65): the short rounds'
 * medians and CPU against the passthrough, the blocks' bookkeeping, the peer stack by CPU, the bare-host memory,
 * observability, and the scale workload's memory.
 */
const TARGET_SECTIONS = [
  'deployment-short',
  'deployment-layers',
  'deployment',
  'deployment-memory',
  'observability',
  'scale',
];

/** Run only when named in --only: `builds` checks out and builds another commit, `scale` fills a store of 100,000 keys (see README.md). */
const ON_REQUEST = new Set(['builds', 'scale']);

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
    targets: { type: 'boolean', default: false },
  },
});

async function redisVersion(): Promise<string> {
  const client = createClient({ url: REDIS_URL });
  try {
    await client.connect();
    const info = await client.info('server');
    return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  } catch (error) {
    return `unreachable (${error instanceof Error ? error.message : String(error)})`;
  } finally {
    if (client.isOpen) await client.quit();
  }
}

/** Deletes every key this run wrote (its own prefix only: the Redis server is shared). */
async function removeRunKeys(prefix: string): Promise<number> {
  const client = createClient({ url: REDIS_URL });
  let removed = 0;
  try {
    await client.connect();
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
      if (keys.length > 0) removed += await client.unlink(keys);
    }
  } catch {
    // Cleaning up is best effort; keys also carry TTLs.
  } finally {
    if (client.isOpen) await client.quit();
  }
  return removed;
}

async function main(): Promise<void> {
  const quick = values.quick ?? false;
  const selected = values.targets
    ? TARGET_SECTIONS
    : values.only
      ? values.only.split(',').map((name) => name.trim())
      : Object.keys(BENCHMARKS).filter((name) => !ON_REQUEST.has(name));
  for (const name of selected)
    if (!BENCHMARKS[name])
      throw new Error(`unknown benchmark "${name}" (known: ${Object.keys(BENCHMARKS).join(', ')})`);
  const runId = randomBytes(6).toString('hex');
  const context: BenchContext = {
    quick,
    runId,
    redisPrefix: `tg-bench:${runId}:`,
    log: (message) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`),
  };
  const started = new Date();
  const machine = describeMachine();
  const redis = await redisVersion();
  const sections: SectionResult[] = [];
  const command = `pnpm bench${process.argv.slice(2).length > 0 ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  // A run of some benchmarks only writes beside RESULTS.md: that file keeps every round's sections.
  const defaultOut = quick
    ? './RESULTS.quick.md'
    : values.targets
      ? './RESULTS.targets.md'
      : values.only
        ? './RESULTS.only.md'
        : './RESULTS.md';
  const out = values.out ?? fileURLToPath(new URL(defaultOut, import.meta.url));

  // Written after every benchmark, so a run stopped half-way still leaves what it measured.
  const writeReport = async (pending: string[]) => {
    const fromSource = /(?:--conditions|-C)[= ]source\b/.test(process.execArgv.join(' '));
    const minutes = ((Date.now() - started.getTime()) / 60_000).toFixed(1);
    const targets = sections.flatMap((s) => s.targets);
    const findings = sections.flatMap((s) => s.findings ?? []);
    const report = [
      '# tollgate benchmarks',
      '',
      ...(quick ? ['**Quick run (`--quick`): fewer rounds and smaller counts; not the figures to quote.**', ''] : []),
      ...(pending.length > 0 ? [`**Incomplete: still to run or stopped before: ${pending.join(', ')}.**`, ''] : []),
      `- Date: ${started.toISOString()} (took ${minutes} min)`,
      `- Command: \`${command}\``,
      `- Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memory} RAM, ${machine.platform}`,
      `- Node ${machine.node}, Redis ${redis} on 127.0.0.1 (shared with other work: the machine was not idle)`,
      `- tollgate packages: ${fromSource ? 'their TypeScript sources, transpiled by tsx (--conditions=source)' : 'their built dist/ (what an npm install runs), built by `pnpm build` before the run'}`,
      '',
      'Absolute figures on a shared machine mean little; compare the ratios, measured in the same run with the cases alternating. ' +
        'How each figure is made: [README.md](./README.md).',
      '',
      '## Targets',
      '',
      targetsTable(targets),
      '',
      ...(findings.length > 0
        ? ['### Where the time and the round trips go', '', ...findings.map((f) => `- ${f}`), '']
        : []),
      ...sections.flatMap((s) => [`## ${s.title}`, '', s.body, '']),
    ].join('\n');
    await writeFile(out, report);
  };

  for (const [index, name] of selected.entries()) {
    context.log(`${name}: start`);
    // A section ends by stopping its processes: the load then says little; the more of its start's and end's is kept.
    const [loadAtStart] = os.loadavg();
    try {
      const section = await BENCHMARKS[name]!(context);
      const load = Math.max(loadAtStart!, os.loadavg()[0]!);
      sections.push({ ...section, targets: section.targets.map((target) => ({ ...target, load })) });
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      context.log(`${name}: failed\n${message}`);
      sections.push({ title: name, body: `The benchmark failed:\n\n\`\`\`\n${message}\n\`\`\``, targets: [] });
    }
    await writeReport(selected.slice(index + 1));
  }
  context.log(`removed ${await removeRunKeys(context.redisPrefix)} Redis keys of this run`);
  await writeReport([]);
  context.log(`wrote ${out}`);
  if (values.targets) console.log(`\n${targetsTable(sections.flatMap((s) => s.targets))}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
