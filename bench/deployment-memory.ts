// Benchmark: the example proxy's resident memory under a steady realistic load (1,000 tenants on Redis, 200 req/s).
import { readFile } from 'node:fs/promises';
import { startServer } from './lib/child.js';
import { startCompiledProxy, type RunningProxy } from './lib/compiled-proxy.js';
import { DEPLOYMENT, deploymentProxyConfig, rotatingLoad } from './lib/deployment-config.js';
import { CHAT_PATH } from './lib/fixtures.js';
import { runLoad, type LoadResult } from './lib/load.js';
import { PrivateRedis } from './lib/private-redis.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtBytes, fmtMs, fmtNumber, quantile, table } from './lib/stats.js';

const RATE = 200;
const CONNECTIONS = 32;
const SAMPLE_EVERY_MS = 10_000;
const RSS_TARGET_BYTES = 150 * 1024 * 1024;
const TITLE = 'Deployment memory: the example proxy on Redis at a steady 200 req/s';

interface RssSample {
  seconds: number;
  /** VmRSS of the proxy's process, from /proc/<pid>/status. */
  rss: number;
}

async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib) * 1024;
}

async function sample(proxy: RunningProxy, started: number): Promise<RssSample> {
  return { seconds: (performance.now() - started) / 1000, rss: await residentBytes(proxy.pid) };
}

export async function runDeploymentMemoryBenchmark(context: BenchContext): Promise<SectionResult> {
  const durationS = context.quick ? 60 : 600;
  const redis = new PrivateRedis();
  try {
    await redis.start();
  } catch (error) {
    await redis.stop();
    return { title: TITLE, body: `Could not start a redis-server of its own: ${String(error)}`, targets: [] };
  }
  const upstream = await startServer({ app: 'mock-upstream' });
  let proxy: RunningProxy | undefined;
  try {
    proxy = await startCompiledProxy({
      ...deploymentProxyConfig(),
      upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'upstream-bench-key' } },
      redisUrl: redis.url,
      redisPrefix: `${context.redisPrefix}dep-mem:`,
      log: { level: 'silent' },
    });
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
    await redis.stop();
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
  const peak = samples.reduce((most, s) => Math.max(most, s.rss), 0);
  const body = [
    `The example proxy (\`node examples/proxy/dist/main.js\`, compiled by \`pnpm build\`, with the \`deployment\` section's config in TOLLGATE_CONFIG: ${fmtNumber(DEPLOYMENT.tenants)} tenants with one key each, ` +
      `${DEPLOYMENT.requestsPerMinute} requests and ${fmtNumber(DEPLOYMENT.tokensPerMinute)} tokens a minute per tenant, $${DEPLOYMENT.tenantBudgetUsdPerDay}/day per tenant, ` +
      `$${fmtNumber(DEPLOYMENT.globalBudgetUsdPerDay)}/day global; Redis stores on a redis-server of its own, blocks on; metrics on, access log silent), ` +
      `driven at a steady ${RATE} req/s (autocannon \`overallRate\`, ${CONNECTIONS} connections) for ${durationS / 60} min: each key in turn sends a JSON request, then a streamed one, ` +
      `to the zero-latency mock upstream. The proxy's resident set (VmRSS of its process, /proc/<pid>/status) is read every ${SAMPLE_EVERY_MS / 1000} s. ` +
      'The proxy runs as a deployment runs it: compiled JavaScript, the tollgate packages from their dist/, nothing else in its process ' +
      '(`pnpm start` runs the TypeScript sources through tsx, whose compiler and source maps add about 100 MiB: a way to try it, not to deploy it).',
    '',
    `${fmtNumber(result.requests)} answers at ${fmtNumber(result.rps)} req/s, p50 ${fmtMs(quantile(result.latencies, 0.5))}, p99 ${fmtMs(quantile(result.latencies, 0.99))}; ` +
      `${non2xx} non-2xx, ${result.errors} errors. Peak RSS ${fmtBytes(peak)} over ${samples.length} samples.`,
    '',
    table(['when', 'seconds', 'RSS'], rows),
  ].join('\n');
  const target =
    "Deployment: the example proxy's RSS at most 150 MiB after 10 minutes at 200 req/s (1,000 tenants, Redis)";
  const figures = `RSS ${fmtBytes(first.rss)} at the start, ${fmtBytes(last.rss)} after ${fmtNumber(last.seconds / 60, 1)} min (peak ${fmtBytes(peak)})`;
  let verdict: TargetVerdict;
  if (non2xx > 0 || result.errors > 0)
    verdict = {
      target,
      holds: undefined,
      figures: `${figures}; ${non2xx} non-2xx, ${result.errors} errors: not valid`,
    };
  else if (quick)
    verdict = {
      target,
      holds: undefined,
      figures: `${figures}; a quick run lasts 1 minute, the target is judged after 10`,
    };
  else verdict = { target, holds: last.rss <= RSS_TARGET_BYTES, figures };
  return { title: TITLE, body, targets: [verdict] };
}
