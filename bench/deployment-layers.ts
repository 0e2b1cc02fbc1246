// Benchmark: where the Redis case's extra CPU goes (issue 47, item 1). The deployment's workload against three proxies
// that differ only in their stores: memory, the blocks layer over the same memory stores, and Redis with blocks (the
// default). Blocks over memory is no configuration anyone deploys: it is the Redis case without Redis, so that the
// blocks' own per-request work and what Redis's calls add are measured apart. The server's main thread and the other
// threads (V8's collector and compiler helpers, libuv's pool) are read apart from /proc.
import { fileURLToPath } from 'node:url';
import { askBenchChild, startServer, type BenchChild } from './lib/child.js';
import { deploymentProxyConfig } from './lib/deployment-config.js';
import { CONNECTIONS, deploymentLoad, MODE_LABEL, MODES } from './lib/deployment-load.js';
import { threadCpuUs } from './lib/process-cpu.js';
import { costPerRequest, PrivateRedis } from './lib/private-redis.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import type { StoreLayer, StoreLayersRequest, StoreLayersSamples } from './lib/store-layers-child.js';
import { fmtNumber, table } from './lib/stats.js';

const IN_PROCESS_ENTRY = fileURLToPath(new URL('./lib/store-layers-child.ts', import.meta.url));
const REQUESTS_PER_BLOCK = 2_000;

const WARM_UP_LOADS = 6;
/** serveGateway's own V8 flag (docs/performance.md, "What a request's garbage cost"): the bench child is no bin. */
const AS_DEPLOYED = ['--no-allocation-site-pretenuring'];

interface LayerCase {
  name: string;
  options: Record<string, unknown>;
  redis: boolean;
}

const MEMORY = 'memory stores';
const CASES: readonly LayerCase[] = [
  { name: MEMORY, options: { store: 'memory' }, redis: false },
  { name: 'blocks over memory stores', options: { store: 'memory', blocksOverMemory: true }, redis: false },
  { name: 'Redis, blocks on (the default)', options: { store: 'redis' }, redis: true },
];

interface Tally {
  requests: number;
  main: number;
  helpers: number;
  redisUs: number;
  redisCalls: number;
}

export async function runDeploymentLayersBenchmark(context: BenchContext): Promise<SectionResult> {
  const loads = context.quick ? 8 : Number(process.env.BENCH_LAYERS_LOADS ?? 30);
  const rounds = context.quick ? 6 : Number(process.env.BENCH_LAYERS_ROUNDS ?? 30);
  const started = await PrivateRedis.startOrNone(context.log, 'deployment-layers');
  const redis = started ?? new PrivateRedis();
  const redisUrl = started?.url;
  const cases = CASES.filter((c) => !c.redis || redisUrl);
  const upstream = await startServer({ app: 'mock-upstream' });
  const tallies = new Map<string, Tally>();
  try {
    for (const mode of MODES) {
      const servers = new Map<string, BenchChild>();
      try {
        for (const c of cases)
          servers.set(
            c.name,
            await startServer(
              {
                app: 'proxy',
                options: {
                  ...c.options,
                  upstream: upstream.url,
                  config: deploymentProxyConfig(),
                  ...(c.redis ? { redisUrl, prefix: `${context.redisPrefix}layers:${mode}:` } : {}),
                },
              },
              { execArgv: AS_DEPLOYED },
            ),
          );
        const load = (server: BenchChild) => deploymentLoad(server.url, mode, 1);
        for (let i = 0; i < WARM_UP_LOADS; i++) for (const c of cases) await load(servers.get(c.name)!);
        for (let i = 0; i < loads; i++) {
          for (const c of cases) {
            const server = servers.get(c.name)!;
            const before = await threadCpuUs(server.pid);
            const cost = c.redis ? await redis.cost() : undefined;
            const result = await load(server);
            const after = await threadCpuUs(server.pid);
            const key = `${c.name}\u0000${mode}`;
            const tally = tallies.get(key) ?? { requests: 0, main: 0, helpers: 0, redisUs: 0, redisCalls: 0 };
            tally.requests += result.requests;
            if (before && after) {
              tally.main += after.main - before.main;
              tally.helpers += after.helpers - before.helpers;
            }
            if (cost) {
              const spent = costPerRequest(cost, await redis.cost(), result.requests);
              tally.redisUs += spent.processCpuUs * result.requests;
              tally.redisCalls += spent.calls * result.requests;
            }
            tallies.set(key, tally);
          }
        }
        context.log(`deployment-layers ${mode}: ${loads} loads of 1 s per case, in turn`);
      } finally {
        await Promise.all([...servers.values()].map((server) => server.close()));
      }
    }
    // The same three in one process, driven in turn without sockets on the caller's side: the run-to-run spread of
    // the processes above is gone, and each round pairs the cases within seconds of each other.
    const inProcess = await askBenchChild<StoreLayersSamples>(
      IN_PROCESS_ENTRY,
      {
        upstream: upstream.url,
        ...(redisUrl ? { redisUrl } : {}),
        prefix: `${context.redisPrefix}layers:in-process:`,
        rounds,
        requestsPerBlock: REQUESTS_PER_BLOCK,
        warmupRequests: 3 * REQUESTS_PER_BLOCK,
        concurrency: CONNECTIONS,
      } satisfies StoreLayersRequest,
      'deployment-layers',
    );
    context.log(`deployment-layers in one process: ${rounds} rounds of ${REQUESTS_PER_BLOCK} requests per case`);
    return describe(cases, tallies, loads, inProcess, rounds);
  } finally {
    await upstream.close();
    await redis.stop();
  }
}

/** The mean of the paired differences, a tenth of the rounds left out at each end, and its 95% interval's half. */
function trimmedDifference(a: readonly number[], b: readonly number[]): { mean: number; half: number } {
  const differences = a.map((value, round) => value - b[round]!).sort((x, y) => x - y);
  const cut = Math.floor(differences.length / 10);
  const kept = differences.slice(cut, differences.length - cut);
  const mean = kept.reduce((sum, d) => sum + d, 0) / kept.length;
  const sd = Math.sqrt(kept.reduce((sum, d) => sum + (d - mean) ** 2, 0) / Math.max(1, kept.length - 1));
  return { mean, half: (1.96 * sd) / Math.sqrt(kept.length) };
}

/** The in-process cases' names, as the table above names them. */
const LAYER_NAMES: Record<StoreLayer, string> = {
  memory: MEMORY,
  blocks: 'blocks over memory stores',
  redis: 'Redis, blocks on (the default)',
};

function describe(
  cases: readonly LayerCase[],
  tallies: Map<string, Tally>,
  loads: number,
  inProcess: StoreLayersSamples,
  rounds: number,
): SectionResult {
  const rows: string[][] = [];
  const findings: string[] = [];
  const inProcessRows: string[][] = [];
  for (const mode of MODES) {
    const samples = inProcess[mode];
    for (const layer of ['memory', 'blocks', 'redis'] as const) {
      const list = samples[layer];
      if (list.length === 0) continue;
      const over = layer === 'memory' ? undefined : trimmedDifference(list, samples.memory);
      inProcessRows.push([
        LAYER_NAMES[layer],
        MODE_LABEL[mode],
        fmtNumber(list.reduce((sum, v) => sum + v, 0) / list.length, 1),
        over
          ? `${over.mean >= 0 ? '+' : ''}${fmtNumber(over.mean, 1)} (${fmtNumber(over.mean - over.half, 1)} to ${fmtNumber(over.mean + over.half, 1)})`
          : '—',
        layer === 'redis' ? fmtNumber(inProcess.redisServerUs[mode], 1) : '—',
      ]);
      if (over)
        findings.push(
          `Layers in one process, ${mode === 'json' ? 'JSON' : 'streams'}: ${LAYER_NAMES[layer]} ${over.mean >= 0 ? '+' : ''}${fmtNumber(over.mean, 1)} µs of CPU a request over memory stores (95% interval ±${fmtNumber(over.half, 1)} µs)${layer === 'redis' ? `, the redis-server ${fmtNumber(inProcess.redisServerUs[mode], 1)} µs more` : ''} (deployment-layers).`,
        );
    }
  }
  for (const mode of MODES) {
    const base = tallies.get(`${MEMORY}\u0000${mode}`);
    const perRequest = (t: Tally) => (t.main + t.helpers) / t.requests;
    for (const c of cases) {
      const t = tallies.get(`${c.name}\u0000${mode}`);
      if (!t || t.requests === 0) continue;
      const total = perRequest(t);
      rows.push([
        c.name,
        MODE_LABEL[mode],
        fmtNumber(t.requests),
        fmtNumber(total),
        fmtNumber(t.main / t.requests),
        fmtNumber(t.helpers / t.requests),
        base ? `${total - perRequest(base) >= 0 ? '+' : ''}${fmtNumber(total - perRequest(base))}` : '—',
        c.redis ? `${fmtNumber(t.redisUs / t.requests, 1)} µs in ${(t.redisCalls / t.requests).toFixed(3)} calls` : '—',
      ]);
    }
    const blocks = tallies.get(`blocks over memory stores\u0000${mode}`);
    const onRedis = tallies.get(`Redis, blocks on (the default)\u0000${mode}`);
    if (base && blocks && onRedis)
      findings.push(
        `Layers, ${mode === 'json' ? 'JSON' : 'streams'}: the Redis case's proxy spends ${fmtNumber(perRequest(onRedis) - perRequest(base))} µs of CPU a request more than memory's; the blocks layer over memory stores ${fmtNumber(perRequest(blocks) - perRequest(base))} µs of it, Redis's calls and what they keep alive the rest (main thread ${fmtNumber((onRedis.main - blocks.main * (onRedis.requests / blocks.requests)) / onRedis.requests)} µs, other threads ${fmtNumber((onRedis.helpers - blocks.helpers * (onRedis.requests / blocks.requests)) / onRedis.requests)} µs) (deployment-layers).`,
      );
  }
  const body = [
    `The \`deployment\` workload (1,000 tenants with one key each, 32 connections, every request the next key) against three proxies (createProxyApp in a bench child, with \`${AS_DEPLOYED.join(' ')}\` as \`serveGateway\` sets it) that differ only in their stores: memory; \`blockStores\` over the same memory stores (no deployment's configuration: the Redis case without Redis); Redis with blocks, the default, on a redis-server of its own. For each mode new processes, ${WARM_UP_LOADS} loads of 1 s each to warm up, then ${fmtNumber(loads)} loads of 1 s each, the three in turn. CPU per request from /proc: the server's main thread, and its other threads (V8's collector and compiler helpers, libuv's pool) apart. The redis-server's CPU is not in the server's; it is listed beside it.`,
    '',
    table(
      [
        'stores',
        'mode',
        'requests',
        'CPU µs/req',
        'main thread µs/req',
        'other threads µs/req',
        'over memory µs/req',
        'redis-server CPU per request',
      ],
      rows,
    ),
    '',
    'Runs of this probe on one machine differ by ±10% from one to the next (the machine is shared); the three cases of one run, in turn, are what compares.',
    '',
    `The same three stores in one bench child (one heap, one JIT), driven through \`inject\` without sockets on the caller's side (the upstream a real HTTP server), the deployment's 1,000 keys in turn, 32 requests in flight: for each mode ${fmtNumber(3 * REQUESTS_PER_BLOCK)} requests each to warm up, then ${fmtNumber(rounds)} rounds of a ${fmtNumber(REQUESTS_PER_BLOCK)}-request block per case, each round starting at another case. CPU per request is the process's (user + system, every thread) over the block; over memory is the mean of the rounds' paired differences, a tenth left out at each end, with its 95% interval. The redis-server's CPU over the Redis blocks is listed apart.`,
    '',
    table(['stores', 'mode', 'CPU µs/req', 'over memory µs/req (95% interval)', 'redis-server µs/req'], inProcessRows),
  ].join('\n');
  return {
    title: 'Deployment layers: memory, blocks over memory, Redis (where the Redis case spends more)',
    body,
    targets: [],
    findings,
  };
}
