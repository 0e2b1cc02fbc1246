// Benchmark 1: the middleware chain with a handler that answers at once, tollgate against bare Express and the peers.
import { startServer, type BenchChild, type ServerSpec } from './lib/child.js';
import { authHeaders, CHAT_BODY, CHAT_PATH } from './lib/fixtures.js';
import { alternateRounds, runLoad, type CaseSummary } from './lib/load.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtMs, fmtNumber, fmtRatio, table } from './lib/stats.js';

interface ChainCase {
  name: string;
  what: string;
  spec: ServerSpec;
}

function chainCases(context: BenchContext): ChainCase[] {
  const redis = (suffix: string) => ({ prefix: `${context.redisPrefix}chain:${suffix}:` });
  return [
    { name: 'bare Express', what: 'express.json + handler', spec: { app: 'bare' } },
    {
      name: 'express-rate-limit + rate-limit-redis',
      what: 'one limiter keyed by API key, node-redis sendCommand',
      spec: { app: 'express-rate-limit-redis', options: redis('erl') },
    },
    {
      name: 'rate-limiter-flexible (Redis)',
      what: 'RateLimiterRedis.consume keyed by API key, node-redis',
      spec: { app: 'rate-limiter-flexible-redis', options: redis('rlf') },
    },
    {
      name: 'tollgate full chain (memory)',
      what: 'the recommended chain: apiKeyAuth, meter (no sink), combineLimits(tieredRateLimit, tokenRateLimit, budgetGuard with key, tenant, global budgets) on createMemoryStores()',
      spec: { app: 'tollgate-chain', options: { store: 'memory' } },
    },
    {
      name: 'tollgate full chain (Redis)',
      what: 'the same chain on createRedisStores() (key cache on, its default)',
      spec: { app: 'tollgate-chain', options: { store: 'redis', ...redis('tollgate') } },
    },
    {
      name: 'tollgate unfused chain (Redis)',
      what: 'the same pieces each mounted on its own (apiKeyAuth, tieredRateLimit, meter, tokenRateLimit, budgetGuard), for comparison',
      spec: { app: 'tollgate-chain', options: { store: 'redis', fused: false, ...redis('tollgate-unfused') } },
    },
  ];
}

export async function runChainBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 2 : 4;
  const durationS = context.quick ? 2 : 4;
  const connections = 32;
  const cases = chainCases(context);
  const servers = new Map<string, BenchChild>();
  const missing: string[] = [];
  try {
    for (const benchCase of cases) {
      try {
        servers.set(benchCase.name, await startServer(benchCase.spec));
      } catch (error) {
        missing.push(`${benchCase.name}: ${error instanceof Error ? error.message : String(error)}`);
        context.log(`chain: ${benchCase.name} unavailable (${String(error)})`);
      }
    }
    const running = cases.filter((c) => servers.has(c.name));
    const load = (name: string, seconds: number) => () =>
      runLoad({ url: servers.get(name)!.url, path: CHAT_PATH, body: CHAT_BODY, headers: authHeaders(), connections, durationS: seconds });
    // Warm up every side (JIT, connections, Lua scripts loaded) before anything is measured.
    for (const benchCase of running) await load(benchCase.name, 1)();
    const summaries = await alternateRounds(
      running.map((c) => ({ name: c.name, run: load(c.name, durationS) })),
      rounds,
      (round, name, result) => context.log(`chain round ${round + 1}/${rounds} ${name}: ${fmtNumber(result.rps)} req/s`),
    );
    for (const c of cases) {
      const note = servers.get(c.name)?.note;
      if (note) c.what = `${c.what} — **${note}**`;
    }
    return describe(context, cases, summaries, missing, { rounds, durationS, connections });
  } finally {
    await Promise.all([...servers.values()].map((server) => server.close()));
  }
}

function describe(
  _context: BenchContext,
  cases: ChainCase[],
  summaries: CaseSummary[],
  missing: string[],
  setup: { rounds: number; durationS: number; connections: number },
): SectionResult {
  const byName = new Map(summaries.map((s) => [s.name, s]));
  const erl = byName.get('express-rate-limit + rate-limit-redis');
  const rows = cases.map((c) => {
    const s = byName.get(c.name);
    if (!s) return [c.name, 'not available', '', '', '', '', '', c.what];
    const vsErl = erl ? fmtRatio(s.ratio / erl.ratio) : 'n/a';
    return [c.name, fmtNumber(s.rps), fmtRatio(s.ratio), vsErl, fmtMs(s.p50), fmtMs(s.p99), `${s.non2xx}/${s.errors}`, c.what];
  });
  const lines = [
    `${setup.rounds} alternating rounds of ${setup.durationS} s per case, ${setup.connections} connections, autocannon in the parent process, ` +
      'each server in its own child process. POST /v1/chat/completions with a small chat body (model, 2 messages, max_tokens 64); ' +
      'the handler answers a fixed chat completion with usage at once. Limits are set far above the load, so nothing is refused. ' +
      'req/s is the median over rounds; "× bare" is the median of per-round ratios to bare Express in the same round; p50/p99 pool every response of every round.',
    '',
    table(['case', 'req/s', '× bare', '× erl+redis', 'p50', 'p99', 'non-2xx/errors', 'what runs'], rows),
  ];
  if (missing.length > 0) lines.push('', 'Not measured:', ...missing.map((m) => `- ${m}`));
  const tollgateRedis = byName.get('tollgate full chain (Redis)');
  const targets: TargetVerdict[] = [];
  if (tollgateRedis && erl && tollgateRedis.non2xx === 0) {
    const relative = tollgateRedis.ratio / erl.ratio;
    targets.push({
      target: 'Full chain on Redis at least as fast as express-rate-limit + rate-limit-redis (one limiter)',
      holds: relative >= 1,
      figures: `${fmtNumber(tollgateRedis.rps)} vs ${fmtNumber(erl.rps)} req/s (${fmtRatio(relative)}); p99 ${fmtMs(tollgateRedis.p99)} vs ${fmtMs(erl.p99)}`,
    });
  } else {
    targets.push({
      target: 'Full chain on Redis at least as fast as express-rate-limit + rate-limit-redis (one limiter)',
      holds: undefined,
      figures: tollgateRedis && tollgateRedis.non2xx > 0 ? `${tollgateRedis.non2xx} non-2xx answers: the run is not valid` : 'a side is not available',
    });
  }
  return { title: '1. Middleware chain, handler answering at once', body: lines.join('\n'), targets };
}
