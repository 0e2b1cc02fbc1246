// Benchmark: the example proxy's resident memory under a steady realistic load (1,000 tenants, memory stores, 200 req/s
// half streamed), as peers report it: the most over the last minute of ten, and the peak, start included.
import { startServer } from './lib/child.js';
import { startCompiledProxy, type RunningProxy } from './lib/compiled-proxy.js';
import { DEPLOYMENT, deployedProxyConfig } from './lib/deployment-config.js';
import { CONNECTIONS, deploymentLoad } from './lib/deployment-load.js';
import { makeMemoryCgroup, manifestMemoryLimit, type MemoryCgroup } from './lib/memory-limit.js';
import type { LoadResult } from './lib/load.js';
import { processMemory } from './lib/process-cpu.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtBytes, fmtMs, fmtNumber, non2xx as non2xxOf, quantile, table } from './lib/stats.js';

const RATE = 200;
const SAMPLE_EVERY_MS = 10_000;
const MIB = 1024 * 1024;
/** Issue 47: the most RSS over the last minute of ten, and the peak (the kernel's high-water mark, start included). */
const STEADY_TARGET_BYTES = 130 * MIB;
const PEAK_TARGET_BYTES = 160 * MIB;
/** Flat: the last five minutes' least-squares slope, at most this much a minute either way. */
const FLAT_BYTES_PER_MINUTE = 1 * MIB;
const TITLE = 'Deployment memory: the example proxy on memory stores at a steady 200 req/s, half streamed';

interface RssSample {
  seconds: number;
  /** VmRSS of the proxy's process, from /proc/<pid>/status. */
  rss: number;
  /** VmHWM: the most it was resident since it started, as the kernel counts it (no sample can miss it). */
  peak: number;
}

async function sample(proxy: RunningProxy, started: number): Promise<RssSample> {
  return { seconds: (performance.now() - started) / 1000, ...(await processMemory(proxy.pid)) };
}

/** One proxy of the run: how it is placed, what its samples and its load gave. */
interface Placement {
  name: string;
  cgroup?: MemoryCgroup;
  proxy?: RunningProxy;
  samples: RssSample[];
  result?: LoadResult;
}

/**
 * Two proxies at once, each with a load of its own: one under the memory limit deploy/kubernetes/statefulset.yaml sets
 * (a cgroup of the bench's own, so Node sizes V8's heap as the pod does), judged; one on the bare host, for comparison.
 */
export async function runDeploymentMemoryBenchmark(context: BenchContext): Promise<SectionResult> {
  const durationS = context.quick ? 60 : 600;
  const limit = await manifestMemoryLimit();
  const limited: Placement = { name: `under the manifest's memory limit (${limit.text})`, samples: [] };
  const bare: Placement = { name: 'on the bare host (no limit)', samples: [] };
  // The first is judged against the targets: the process as the manifests deploy it.
  const placements = [limited, bare];
  let unlimitedWhy: string | undefined;
  try {
    limited.cgroup = await makeMemoryCgroup(limit.bytes, `tollgate-bench-${process.pid}`);
  } catch (error) {
    unlimitedWhy = `no cgroup could be made here (${String(error)})`;
    context.log(`deployment-memory: ${unlimitedWhy}; the judged proxy runs without the manifest's limit`);
  }
  const upstream = await startServer({ app: 'mock-upstream' });
  try {
    for (const placement of placements)
      placement.proxy = await startCompiledProxy(deployedProxyConfig(upstream.url), { cgroup: placement.cgroup });
    const started = performance.now();
    for (const placement of placements) placement.samples.push(await sample(placement.proxy!, started));
    const timer = setInterval(() => {
      for (const placement of placements)
        sample(placement.proxy!, started).then(
          (s) => {
            placement.samples.push(s);
            if (Math.round(s.seconds) % 60 < SAMPLE_EVERY_MS / 1000)
              context.log(`deployment-memory: ${fmtNumber(s.seconds)} s, ${placement.name}: RSS ${fmtBytes(s.rss)}`);
          },
          (error: unknown) => context.log(`deployment-memory: sample failed (${String(error)})`),
        );
    }, SAMPLE_EVERY_MS);
    try {
      const results = await Promise.all(
        placements.map((placement) => deploymentLoad(placement.proxy!.url, 'mixed', durationS, RATE)),
      );
      placements.forEach((placement, i) => (placement.result = results[i]));
    } finally {
      clearInterval(timer);
    }
    for (const placement of placements) placement.samples.push(await sample(placement.proxy!, started));
    return describe(placements, durationS, context.quick, unlimitedWhy);
  } finally {
    for (const placement of placements) await placement.proxy?.close();
    await upstream.close();
    await limited.cgroup?.remove().catch((error: unknown) => context.log(`deployment-memory: ${String(error)}`));
  }
}

interface Summary {
  peak: number;
  steady: number;
  slope: number;
  non2xx: number;
  shown: RssSample[];
}

function summarise(samples: readonly RssSample[], result: LoadResult): Summary {
  const first = samples[0]!;
  const last = samples.at(-1)!;
  // Start, the sample nearest each whole minute, and the end.
  const shown: RssSample[] = [first];
  for (let minute = 1; minute * 60 < last.seconds - 5; minute++) {
    const nearest = samples.reduce((best, s) =>
      Math.abs(s.seconds - minute * 60) < Math.abs(best.seconds - minute * 60) ? s : best,
    );
    if (!shown.includes(nearest)) shown.push(nearest);
  }
  shown.push(last);
  const non2xx = non2xxOf(result.statuses);
  const peak = samples.reduce((most, s) => Math.max(most, s.peak), 0);
  const steady = Math.max(...samples.filter((s) => s.seconds >= last.seconds - 60).map((s) => s.rss));
  // Flat: the last five minutes' samples, least squares, in bytes a minute.
  const slope = slopePerMinute(samples.filter((s) => s.seconds >= last.seconds - 300));
  return { peak, steady, slope, non2xx, shown };
}

function describe(
  placements: readonly Placement[],
  durationS: number,
  quick: boolean,
  unlimitedWhy: string | undefined,
): SectionResult {
  const summaries = placements.map((placement) => summarise(placement.samples, placement.result!));
  const lines = placements.map((placement, i) => {
    const { peak, steady, slope, non2xx } = summaries[i]!;
    const result = placement.result!;
    return (
      `- **${placement.name}**: ${fmtNumber(result.requests)} answers at ${fmtNumber(result.rps)} req/s, p50 ${fmtMs(quantile(result.latencies, 0.5))}, p99 ${fmtMs(quantile(result.latencies, 0.99))}; ` +
      `${non2xx} non-2xx, ${result.errors} errors. Peak RSS ${fmtBytes(peak)}; the most over the last minute ${fmtBytes(steady)}; ` +
      `over the last five minutes ${slope >= 0 ? '+' : ''}${fmtNumber(slope / MIB, 2)} MiB a minute.`
    );
  });
  const shown = summaries[0]!.shown;
  const rows = shown.map((s, row) => [
    row === 0 ? 'start (before the load)' : row === shown.length - 1 ? 'end' : `minute ${Math.round(s.seconds / 60)}`,
    fmtNumber(s.seconds),
    ...summaries.map((summary) => fmtBytes(summary.shown[row]?.rss ?? Number.NaN)),
  ]);
  const body = [
    `The compiled example proxy with the \`deployment\` config (${fmtNumber(DEPLOYMENT.tenants)} tenants, memory stores), ` +
      `${RATE} req/s (autocannon \`overallRate\`, ${CONNECTIONS} connections) for ${durationS / 60} min, each key in turn a ` +
      `JSON then a streamed request; VmRSS every ${SAMPLE_EVERY_MS / 1000} s, the peak VmHWM. Two proxies at once: the ` +
      "judged one under deploy/kubernetes/statefulset.yaml's memory limit (a cgroup of the bench's own, so V8 sizes its " +
      'heap as in the pod), the other on the bare host.' +
      (unlimitedWhy ? ` **This run could not place it: ${unlimitedWhy}.**` : ''),
    '',
    ...lines,
    '',
    table(['when', 'seconds', ...placements.map((placement) => `RSS, ${placement.name}`)], rows),
  ].join('\n');
  // The first placement is the judged one (under the manifest's limit).
  const { peak, steady, slope, non2xx } = summaries[0]!;
  const judged = placements[0]!;
  const result = judged.result!;
  const first = judged.samples[0]!;
  const last = judged.samples.at(-1)!;
  const figures = `RSS ${fmtBytes(first.rss)} at the start, the most over the last minute ${fmtBytes(steady)} (after ${fmtNumber(last.seconds / 60, 1)} min), peak ${fmtBytes(peak)}, last five minutes ${slope >= 0 ? '+' : ''}${fmtNumber(slope / MIB, 2)} MiB a minute`;
  const targets: { target: string; holds: boolean }[] = [
    {
      target:
        "Deployment: the example proxy's RSS at most 130 MiB over the last minute of 10 at 200 req/s (1,000 tenants, memory stores, half streamed)",
      holds: steady <= STEADY_TARGET_BYTES,
    },
    {
      target: "Deployment: the example proxy's peak RSS at most 160 MiB, start included (the same run)",
      holds: peak <= PEAK_TARGET_BYTES,
    },
    {
      target: "Deployment: the example proxy's RSS flat over the last five minutes (at most 1 MiB a minute either way)",
      holds: Math.abs(slope) <= FLAT_BYTES_PER_MINUTE,
    },
  ];
  const verdicts: TargetVerdict[] = targets.map(({ target, holds }) => {
    if (unlimitedWhy)
      return { target, holds: undefined, figures: `${figures}; not under the manifest's limit: ${unlimitedWhy}` };
    if (non2xx > 0 || result.errors > 0)
      return { target, holds: undefined, figures: `${figures}; ${non2xx} non-2xx, ${result.errors} errors: not valid` };
    if (quick)
      return {
        target,
        holds: undefined,
        figures: `${figures}; a quick run lasts 1 minute, the target is judged after 10`,
      };
    return { target, holds, figures };
  });
  return { title: TITLE, body, targets: verdicts };
}

/** The least-squares slope of RSS over time, in bytes a minute. */
function slopePerMinute(samples: readonly RssSample[]): number {
  if (samples.length < 2) return 0;
  const meanT = samples.reduce((sum, s) => sum + s.seconds, 0) / samples.length;
  const meanR = samples.reduce((sum, s) => sum + s.rss, 0) / samples.length;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.seconds - meanT) * (s.rss - meanR);
    den += (s.seconds - meanT) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60;
}
