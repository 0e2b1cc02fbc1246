// Benchmark 1: the middleware chain with a handler that answers at once, tollgate against bare Express and the peers.
import { setTimeout as sleep } from 'node:timers/promises';
import { startEach, startServer, type ServerSpec } from './lib/child.js';
import { authHeaders, CHAT_BODY } from './lib/fixtures.js';
import {
  throughputCells,
  THROUGHPUT_COLUMNS,
  throughputRounds,
  type CaseSummary,
  type LoadResult,
} from './lib/load.js';
import { CostLedger, costPerRequest, PrivateRedis } from './lib/private-redis.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtMs, fmtNumber, fmtRatio, notMeasured, table } from './lib/stats.js';

interface ChainCase {
  name: string;
  what: string;
  spec: ServerSpec;
}

const FULL_CHAIN = 'tollgate full chain (Redis)';
const BLOCKS_CHAIN = 'tollgate full chain (Redis, blocks)';
const ERL = 'express-rate-limit + rate-limit-redis';
const CPU_TARGET_US = 15;

function chainCases(context: BenchContext, redisUrl: string | undefined): ChainCase[] {
  const redis = (suffix: string) => ({
    prefix: `${context.redisPrefix}chain:${suffix}:`,
    ...(redisUrl ? { redisUrl } : {}),
  });
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
      name: FULL_CHAIN,
      what: 'the same chain on createRedisStores() (key cache on, script bundle on: their defaults)',
      spec: { app: 'tollgate-chain', options: { store: 'redis', ...redis('tollgate') } },
    },
    {
      name: BLOCKS_CHAIN,
      what: "the same chain on blockStores(createRedisStores()): hot limits and budgets taken from Redis a block at a time (blockStores' defaults: sized by demand, at most 0.05 of each limit, held at most 10 s) and handed out in-process",
      spec: { app: 'tollgate-chain', options: { store: 'redis', blocks: true, ...redis('tollgate-blocks') } },
    },
    {
      name: 'tollgate full chain (Redis, batch: false)',
      what: 'the same chain on createRedisStores({ batch: false }): one EVALSHA per store operation, the request limit on rate-limit-redis (the chain before the script bundle)',
      spec: { app: 'tollgate-chain', options: { store: 'redis', batch: false, ...redis('tollgate-unbatched') } },
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
  // A Redis of its own: its INFO then counts this benchmark's commands only (the shared one serves other work).
  const redis = new PrivateRedis();
  let redisNote: string;
  try {
    await redis.start();
    redisNote = `a redis-server of its own (Redis ${await redis.version()}, same binary, no persistence, on a free port)`;
  } catch (error) {
    await redis.stop();
    return {
      title: '1. Middleware chain, handler answering at once',
      body: `Could not start a redis-server of its own: ${String(error)}`,
      targets: [],
    };
  }
  const costs = new CostLedger();
  /** One measured round of a case between two readings of Redis's counters. */
  const around = async (name: string, run: () => Promise<LoadResult>): Promise<LoadResult> => {
    const before = await redis.cost();
    const result = await run();
    // Settles still in flight after the last answer (budget settles wait a few ms) belong to this round.
    await sleep(100);
    costs.add(name, costPerRequest(before, await redis.cost(), result.requests), result.requests);
    return result;
  };
  const cases = chainCases(context, redis.url);
  const missing: string[] = [];
  const servers = await startEach(
    cases,
    (c) => startServer(c.spec),
    missing,
    (m) => context.log(`chain: ${m}`),
  );
  try {
    const loaded = cases
      .filter((c) => servers.has(c.name))
      .map((c) => ({ name: c.name, url: servers.get(c.name)!.url, body: CHAT_BODY, headers: authHeaders() }));
    const setup = { rounds, durationS, connections, warmUpS: 1 };
    const summaries = await throughputRounds(loaded, setup, (m) => context.log(`chain ${m}`), around);
    for (const c of cases) {
      const note = servers.get(c.name)?.note;
      if (note) c.what = `${c.what} — **${note}**`;
    }
    return describe(context, cases, summaries, missing, costs, { rounds, durationS, connections, redisNote });
  } finally {
    await Promise.all([...servers.values()].map((server) => server.close()));
    await redis.stop();
  }
}

function describe(
  _context: BenchContext,
  cases: ChainCase[],
  summaries: CaseSummary[],
  missing: string[],
  costs: CostLedger,
  setup: { rounds: number; durationS: number; connections: number; redisNote: string },
): SectionResult {
  const byName = new Map(summaries.map((s) => [s.name, s]));
  const erl = byName.get(ERL);
  const rows = cases.map((c) => {
    const s = byName.get(c.name);
    if (!s) return [c.name, 'not available', '', '', '', '', '', '', '', '', c.what];
    const vsErl = erl ? fmtRatio(s.ratio / erl.ratio) : 'n/a';
    const cost = costs.perRequest(c.name);
    const redisFigures =
      cost && cost.calls > 0
        ? [fmtNumber(cost.calls, 2), fmtNumber(cost.commandUs, 1), fmtNumber(cost.processCpuUs, 1)]
        : ['—', '—', '—'];
    return [c.name, ...throughputCells(s).slice(0, 2), vsErl, ...throughputCells(s).slice(2), ...redisFigures, c.what];
  });
  const lines = [
    `${setup.rounds} alternating rounds of ${setup.durationS} s per case, ${setup.connections} connections; Redis is ` +
      `${setup.redisNote}, its INFO read around every measured round ("Redis calls/req": script commands per request; ` +
      '"Redis µs/req": their time in commandstats; "Redis CPU µs/req": the redis-server process\'s).',
    '',
    table(
      [
        'case',
        ...THROUGHPUT_COLUMNS.slice(0, 2),
        '× erl+redis',
        ...THROUGHPUT_COLUMNS.slice(2),
        'Redis calls/req',
        'Redis µs/req',
        'Redis CPU µs/req',
        'what runs',
      ],
      rows,
    ),
  ];
  const breakdown = cases
    .map((c) => [c.name, costs.perRequest(c.name)] as const)
    .filter(([name, cost]) => name.startsWith('tollgate') && cost && cost.calls > 0);
  if (breakdown.length > 0) {
    lines.push(
      '',
      'What the tollgate cases run inside Redis, per request (INFO commandstats):',
      '',
      table(
        ['case', 'commands per request (calls, µs)'],
        breakdown.map(([name, cost]) => [
          name,
          [...cost!.byCommand.entries()]
            .sort((a, b) => b[1].usec - a[1].usec)
            .map(([command, value]) => `${command} ${fmtNumber(value.calls, 2)} (${fmtNumber(value.usec, 1)} µs)`)
            .join(', '),
        ]),
      ),
    );
  }
  lines.push(...notMeasured(missing));
  const targets: TargetVerdict[] = [];
  const erlCost = costs.perRequest(ERL);
  const unbatched = costs.perRequest('tollgate full chain (Redis, batch: false)');
  // The chain on createRedisStores() as it comes, and on blockStores over it (what the example proxy runs on Redis).
  for (const [name, label] of [
    [FULL_CHAIN, 'Full chain on Redis'],
    [BLOCKS_CHAIN, 'Full chain on Redis with blockStores'],
  ] as const) {
    const tollgateRedis = byName.get(name);
    const speed = `${label} at least as fast as express-rate-limit + rate-limit-redis (one limiter)`;
    if (tollgateRedis && erl && tollgateRedis.non2xx === 0) {
      const relative = tollgateRedis.ratio / erl.ratio;
      targets.push({
        target: speed,
        holds: relative >= 1,
        figures: `${fmtNumber(tollgateRedis.rps)} vs ${fmtNumber(erl.rps)} req/s (${fmtRatio(relative)}); p99 ${fmtMs(tollgateRedis.p99)} vs ${fmtMs(erl.p99)}`,
      });
    } else {
      targets.push({
        target: speed,
        holds: undefined,
        figures:
          tollgateRedis && tollgateRedis.non2xx > 0
            ? `${tollgateRedis.non2xx} non-2xx answers: the run is not valid`
            : 'a side is not available',
      });
    }
    const chainCost = costs.perRequest(name);
    targets.push({
      target: `${label}: Redis CPU at most ${CPU_TARGET_US} µs per request (INFO commandstats)`,
      holds: chainCost && tollgateRedis?.non2xx === 0 ? chainCost.commandUs <= CPU_TARGET_US : undefined,
      figures: chainCost
        ? `${fmtNumber(chainCost.commandUs, 1)} µs in ${fmtNumber(chainCost.calls, 2)} calls per request` +
          (name === FULL_CHAIN && unbatched
            ? ` (batch: false ${fmtNumber(unbatched.commandUs, 1)} µs in ${fmtNumber(unbatched.calls, 2)} calls)`
            : '') +
          (erlCost
            ? `; express-rate-limit + rate-limit-redis ${fmtNumber(erlCost.commandUs, 1)} µs in ${fmtNumber(erlCost.calls, 2)}`
            : '') +
          `; Redis process CPU ${fmtNumber(chainCost.processCpuUs, 1)} µs per request`
        : 'not measured',
    });
  }
  return { title: '1. Middleware chain, handler answering at once', body: lines.join('\n'), targets };
}
