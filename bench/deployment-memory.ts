// Benchmark: the example proxy's resident memory under a steady realistic load (1,000 tenants, memory stores, 200 req/s
// half streamed), as peers report it: the most over the last minute of ten, and the peak, start included.
import { readFile } from 'node:fs/promises';
import { startServer } from './lib/child.js';
import { startCompiledProxy, type RunningProxy } from './lib/compiled-proxy.js';
import { DEPLOYMENT, deployedProxyConfig, rotatingLoad } from './lib/deployment-config.js';
import { CHAT_PATH } from './lib/fixtures.js';
import { runLoad, type LoadResult } from './lib/load.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtBytes, fmtMs, fmtNumber, quantile, table } from './lib/stats.js';

const RATE = 200;
const CONNECTIONS = 32;
const SAMPLE_EVERY_MS = 10_000;
const MIB = 1024 * 1024;
/** Issue 47: the most RSS over the last minute of ten, and the peak (the kernel's high-water mark, start included). */
const STEADY_TARGET_BYTES = 130 * MIB;
const PEAK_TARGET_BYTES = 160 * MIB;
const TITLE = 'Deployment memory: the example proxy on memory stores at a steady 200 req/s, half streamed';

interface RssSample {
  seconds: number;
  /** VmRSS of the proxy's process, from /proc/<pid>/status. */
  rss: number;
  /** VmHWM: the most it was resident since it started, as the kernel counts it (no sample can miss it). */
  peak: number;
}

async function sample(proxy: RunningProxy, started: number): Promise<RssSample> {
  const status = await readFile(`/proc/${proxy.pid}/status`, 'utf8');
  const kib = (field: string) => {
    const value = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1];
    if (value === undefined) throw new Error(`no ${field} in /proc/${proxy.pid}/status`);
    return Number(value) * 1024;
  };
  return { seconds: (performance.now() - started) / 1000, rss: kib('VmRSS'), peak: kib('VmHWM') };
}

export async function runDeploymentMemoryBenchmark(context: BenchContext): Promise<SectionResult> {
  const durationS = context.quick ? 60 : 600;
  const upstream = await startServer({ app: 'mock-upstream' });
  let proxy: RunningProxy | undefined;
  try {
    proxy = await startCompiledProxy(deployedProxyConfig(upstream.url));
    const started = performance.now();
    const samples: RssSample[] = [await sample(proxy, started)];
    const running = proxy;
    const timer = setInterval(() => {
      sample(running, started).then(
        (s) => {
          samples.push(s);
          if (Math.round(s.seconds) % 60 < SAMPLE_EVERY_MS / 1000)
            context.log(`deployment-memory: ${fmtNumber(s.seconds)} s, RSS ${fmtBytes(s.rss)}`);
        },
        (error: unknown) => context.log(`deployment-memory: sample failed (${String(error)})`),
      );
    }, SAMPLE_EVERY_MS);
    let result: LoadResult;
    try {
      result = await runLoad({
        url: proxy.url,
        path: CHAT_PATH,
        ...rotatingLoad('mixed'),
        connections: CONNECTIONS,
        durationS,
        overallRate: RATE,
      });
    } finally {
      clearInterval(timer);
    }
    samples.push(await sample(proxy, started));
    return describe(samples, result, durationS, context.quick);
  } finally {
    await proxy?.close();
    await upstream.close();
  }
}

function describe(samples: RssSample[], result: LoadResult, durationS: number, quick: boolean): SectionResult {
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
  const non2xx = Object.entries(result.statuses)
    .filter(([code]) => !code.startsWith('2'))
    .reduce((sum, [, n]) => sum + n, 0);
  const rows = shown.map((s, i) => [
    i === 0 ? 'start (before the load)' : s === last ? 'end' : `minute ${Math.round(s.seconds / 60)}`,
    fmtNumber(s.seconds),
    fmtBytes(s.rss),
  ]);
  const peak = samples.reduce((most, s) => Math.max(most, s.peak), 0);
  const lastMinute = samples.filter((s) => s.seconds >= last.seconds - 60);
  const steady = Math.max(...lastMinute.map((s) => s.rss));
  // Flat: the last five minutes' samples, least squares, in MiB per minute.
  const tail = samples.filter((s) => s.seconds >= last.seconds - 300);
  const slope = slopePerMinute(tail);
  const body = [
    `The example proxy (\`node examples/proxy/dist/main.js\`, compiled by \`pnpm build\`, with the \`deployment\` section's config in TOLLGATE_CONFIG: ${fmtNumber(DEPLOYMENT.tenants)} tenants with one key each, ` +
      `${DEPLOYMENT.requestsPerMinute} requests and ${fmtNumber(DEPLOYMENT.tokensPerMinute)} tokens a minute per tenant, $${DEPLOYMENT.tenantBudgetUsdPerDay}/day per tenant, ` +
      `$${fmtNumber(DEPLOYMENT.globalBudgetUsdPerDay)}/day global; memory stores; metrics on, access log silent), ` +
      `driven at a steady ${RATE} req/s (autocannon \`overallRate\`, ${CONNECTIONS} connections) for ${durationS / 60} min: each key in turn sends a JSON request, then a streamed one, ` +
      `to the zero-latency mock upstream. The proxy's resident set (VmRSS of its process, /proc/<pid>/status) is read every ${SAMPLE_EVERY_MS / 1000} s, and its peak ` +
      "is the kernel's high-water mark (VmHWM), start included. " +
      'The proxy runs as a deployment runs it: compiled JavaScript, the tollgate packages from their dist/, nothing else in its process ' +
      '(`pnpm start` runs the TypeScript sources through tsx, whose compiler and source maps add about 100 MiB: a way to try it, not to deploy it).',
    '',
    `${fmtNumber(result.requests)} answers at ${fmtNumber(result.rps)} req/s, p50 ${fmtMs(quantile(result.latencies, 0.5))}, p99 ${fmtMs(quantile(result.latencies, 0.99))}; ` +
      `${non2xx} non-2xx, ${result.errors} errors. Peak RSS ${fmtBytes(peak)}; the most over the last minute ${fmtBytes(steady)}; ` +
      `over the last five minutes ${slope >= 0 ? '+' : ''}${fmtNumber(slope / MIB, 2)} MiB a minute.`,
    '',
    table(['when', 'seconds', 'RSS'], rows),
  ].join('\n');
  const figures = `RSS ${fmtBytes(first.rss)} at the start, the most over the last minute ${fmtBytes(steady)} (after ${fmtNumber(last.seconds / 60, 1)} min), peak ${fmtBytes(peak)}`;
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
  ];
  const verdicts: TargetVerdict[] = targets.map(({ target, holds }) => {
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
