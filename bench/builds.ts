// Benchmark: this build against an earlier commit's, side by side in one run (issue 43: "per-request cost within ±3%
// of before on bench/chain.ts and the deployment workload"): the CPU each request costs the server, in alternating rounds.
import os from 'node:os';
import { checkedOutTree, currentTree, type BuiltTree } from './lib/build-trees.js';
import { driveBlock, startServer, type BenchChild, type ServerSpec } from './lib/child.js';
import { DEPLOYMENT, deploymentProxyConfig } from './lib/deployment-config.js';
import { REDIS_URL } from './lib/fixtures.js';
import { PrivateRedis } from './lib/private-redis.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { bootstrapInterval, fmtNumber, median, table, trimmedMean } from './lib/stats.js';

/** The round's start (issue 43): the landed main every figure is compared with, unless BENCH_BEFORE_REF names another. */
export const DEFAULT_BEFORE_REF = '99ae123';
/** How far the after build's cost per request may be from the before build's. */
const TOLERANCE = 0.03;
/** Requests in flight in each server, as the load of `chain` and `deployment` keeps 32 connections busy. */
const CONCURRENCY = 32;
/** Wait this long after a Redis block before reading Redis: the budget's settles, batched for a few ms, land first. */
const REDIS_SETTLE_MS = 30;

const SIDES = ['before', 'after'] as const;
type Side = (typeof SIDES)[number];
/** A server each build runs; workloads naming the same server share its child. */
type ServerName = 'chain-memory' | 'chain-redis' | 'proxy-memory' | 'proxy-observed';

interface Workload {
  name: string;
  /** What runs and how it is driven: said beside every figure of the workload. */
  configuration: string;
  server: ServerName;
  /** Each request takes the next of this many keys. */
  keys: number;
  stream: boolean;
  /** Its Redis process's CPU is read around each block too (on a redis-server of the bench's own). */
  redis?: boolean;
  /** Measured only when BENCH_BUILDS_ONLY names it (not one of issue 43's workloads). */
  onRequest?: boolean;
}

const CHAIN = "`chain.ts`'s recommended chain, one key, one body over and over";
const DEPLOYMENT_APP = `the example proxy with the \`deployment\` config (${fmtNumber(DEPLOYMENT.tenants)} tenants), memory stores, every request the next key`;

const ALL_WORKLOADS: readonly Workload[] = [
  {
    name: 'chain (memory)',
    configuration: `${CHAIN}; createMemoryStores()`,
    server: 'chain-memory',
    keys: 1,
    stream: false,
  },
  {
    name: 'chain (Redis)',
    configuration: `${CHAIN}; createRedisStores(), both builds on one redis-server, each under its own prefix`,
    server: 'chain-redis',
    keys: 1,
    stream: false,
    redis: true,
  },
  {
    name: 'deployment, JSON',
    configuration: `${DEPLOYMENT_APP}; JSON answers`,
    server: 'proxy-memory',
    keys: DEPLOYMENT.tenants,
    stream: false,
  },
  {
    name: 'deployment, streams',
    configuration: `${DEPLOYMENT_APP}; streamed answers`,
    server: 'proxy-memory',
    keys: DEPLOYMENT.tenants,
    stream: true,
  },
  {
    name: 'deployment, JSON, observed',
    configuration: `${DEPLOYMENT_APP}, the access log on (to /dev/null); JSON answers`,
    server: 'proxy-observed',
    keys: DEPLOYMENT.tenants,
    stream: false,
    onRequest: true,
  },
];
/**
 * BENCH_BUILDS_ONLY: workload names (e.g. `chain (Redis)`), separated by commas with no space after them (names hold
 * ", "), to measure only those, with more rounds in the time. Workloads marked onRequest run only when named there.
 */
const ONLY = process.env.BENCH_BUILDS_ONLY?.split(/,(?! )/).map((name) => name.trim());
const WORKLOADS: readonly Workload[] = ONLY
  ? ALL_WORKLOADS.filter((w) => ONLY.includes(w.name))
  : ALL_WORKLOADS.filter((w) => !w.onRequest);

/** One workload on one build over one round: its blocks summed. */
interface Sample {
  requests: number;
  /** The server process's user + system CPU over its blocks (every thread of it), µs. */
  cpuUs: number;
  /** Collection pauses inside the server over its blocks, µs (part of cpuUs). */
  gcUs: number;
  wallUs: number;
  /** The redis-server's own CPU over its blocks, µs (Redis workloads on a Redis of the bench's own). */
  redisCpuUs?: number;
  non2xx: number;
}

interface Setup {
  rounds: number;
  pairs: number;
  blockRequests: number;
  warmUpRequests: number;
  redisNote: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function serverSpec(
  name: ServerName,
  tree: string,
  context: BenchContext,
  side: Side,
  urls: { upstream: string; redis: string },
): ServerSpec {
  switch (name) {
    case 'chain-memory':
      return { app: 'tollgate-chain', options: { store: 'memory', tree } };
    case 'chain-redis':
      return {
        app: 'tollgate-chain',
        options: { store: 'redis', redisUrl: urls.redis, prefix: `${context.redisPrefix}builds:${side}:`, tree },
      };
    case 'proxy-memory':
    case 'proxy-observed':
      return {
        app: 'proxy',
        options: {
          upstream: urls.upstream,
          store: 'memory',
          config: deploymentProxyConfig(),
          // The observed proxy writes its access log (each line built and written, nothing kept).
          ...(name === 'proxy-observed' ? { log: { level: 'info', destination: os.devNull } } : {}),
          tree,
        },
      };
  }
}

async function prepareTrees(context: BenchContext): Promise<Record<Side, BuiltTree>> {
  const beforeRef = process.env.BENCH_BEFORE_REF ?? DEFAULT_BEFORE_REF;
  const afterRef = process.env.BENCH_AFTER_REF;
  const before = await checkedOutTree(beforeRef, context.log);
  const after = afterRef ? await checkedOutTree(afterRef, context.log) : await currentTree(context.log);
  return { before, after };
}

async function startPrivateRedis(redis: PrivateRedis): Promise<string | undefined> {
  try {
    await redis.start();
    return `a redis-server of its own (Redis ${await redis.version()}, no persistence, a free port)`;
  } catch {
    await redis.stop();
    return undefined;
  }
}

export async function runBuildsBenchmark(context: BenchContext): Promise<SectionResult> {
  const trees = await prepareTrees(context);
  const redis = new PrivateRedis();
  const privateNote = await startPrivateRedis(redis);
  const roundsAsked = Number(process.env.BENCH_BUILDS_ROUNDS);
  const setup: Setup = {
    // BENCH_BUILDS_ROUNDS: more rounds narrow the interval when the machine is noisy.
    rounds: Number.isInteger(roundsAsked) && roundsAsked > 0 ? roundsAsked : context.quick ? 8 : 40,
    pairs: context.quick ? 3 : 8,
    blockRequests: 500,
    warmUpRequests: context.quick ? 5_000 : 20_000,
    redisNote:
      privateNote ??
      `the shared Redis at ${REDIS_URL} (no redis-server of its own could start), so no Redis CPU figures`,
  };
  const upstream = await startServer({ app: 'mock-upstream' });
  const servers = new Map<string, BenchChild>();
  const serverOf = (side: Side, name: ServerName) => servers.get(`${side}:${name}`)!;
  try {
    const urls = { upstream: upstream.url, redis: privateNote ? redis.url : REDIS_URL };
    for (const name of new Set(WORKLOADS.map((w) => w.server)))
      for (const side of SIDES) {
        const spec = serverSpec(name, trees[side].dir, context, side, urls);
        servers.set(`${side}:${name}`, await startServer(spec, { builtPackages: true }));
      }
    const block = (workload: Workload, side: Side, requests: number) =>
      driveBlock(serverOf(side, workload.server), {
        requests,
        concurrency: CONCURRENCY,
        keys: workload.keys,
        stream: workload.stream,
      });
    const measure = async (workload: Workload, side: Side, into: Sample): Promise<void> => {
      const redisBefore = workload.redis && privateNote ? await redis.cost() : undefined;
      const cost = await block(workload, side, setup.blockRequests);
      if (redisBefore) {
        await sleep(REDIS_SETTLE_MS);
        into.redisCpuUs = (into.redisCpuUs ?? 0) + (await redis.cost()).processCpuUs - redisBefore.processCpuUs;
      }
      into.requests += cost.requests;
      into.cpuUs += cost.cpuUs;
      into.gcUs += cost.gcUs;
      into.wallUs += cost.wallUs;
      into.non2xx += cost.non2xx;
    };
    // Warm-up: JIT, scripts loaded, the tokenizers, every tenant's key cached, on every server and workload.
    for (const workload of WORKLOADS) for (const side of SIDES) await block(workload, side, setup.warmUpRequests);
    const samples = new Map<string, Sample[]>();
    const loadAverages: number[] = [];
    for (let round = 0; round < setup.rounds; round++) {
      loadAverages.push(os.loadavg()[0]!);
      for (const workload of WORKLOADS) {
        const sums = new Map(
          SIDES.map((side) => [side, { requests: 0, cpuUs: 0, gcUs: 0, wallUs: 0, non2xx: 0 } as Sample]),
        );
        // Blocks of the two builds in turn, the first alternating: neither always runs second.
        for (let pair = 0; pair < setup.pairs; pair++) {
          const order = (round * setup.pairs + pair) % 2 === 0 ? SIDES : ([...SIDES].reverse() as Side[]);
          for (const side of order) await measure(workload, side, sums.get(side)!);
        }
        for (const side of SIDES) {
          const key = `${workload.name}:${side}`;
          samples.set(key, [...(samples.get(key) ?? []), sums.get(side)!]);
        }
        context.log(
          `builds round ${round + 1}/${setup.rounds} ${workload.name}: ${fmtNumber(perRequest(sums.get('before')!), 1)} → ${fmtNumber(perRequest(sums.get('after')!), 1)} µs/req`,
        );
      }
    }
    loadAverages.push(os.loadavg()[0]!);
    return describe(trees, samples, loadAverages, setup);
  } finally {
    await Promise.all([...servers.values()].map((server) => server.close()));
    await upstream.close();
    await redis.stop();
  }
}

function perRequest(sample: Sample, withRedis = false): number {
  return (sample.cpuUs + (withRedis ? (sample.redisCpuUs ?? Number.NaN) : 0)) / sample.requests;
}

interface Comparison {
  /** Per round, the after build's CPU per request over the before build's. */
  ratios: number[];
  estimate: number;
  interval: [number, number];
  before: Sample[];
  after: Sample[];
}

function compare(before: Sample[], after: Sample[], withRedis = false): Comparison {
  const ratios = before.map((b, i) => perRequest(after[i]!, withRedis) / perRequest(b, withRedis));
  return { ratios, estimate: trimmedMean(ratios), interval: bootstrapInterval(ratios), before, after };
}

/** Holds when the whole interval lies within the tolerance, fails when it lies wholly outside it. */
function verdict(comparison: Comparison): boolean | undefined {
  const [low, high] = comparison.interval;
  if (low >= 1 - TOLERANCE && high <= 1 + TOLERANCE) return true;
  if (high < 1 - TOLERANCE || low > 1 + TOLERANCE) return false;
  return undefined;
}

/** The one-sided question a refactor asks: holds when the whole interval lies at or under +tolerance (dearer by no more). */
function notDearer(comparison: Comparison): boolean | undefined {
  const [low, high] = comparison.interval;
  if (high <= 1 + TOLERANCE) return true;
  if (low > 1 + TOLERANCE) return false;
  return undefined;
}

const fmtFactor = (value: number) => (Number.isFinite(value) ? `${value.toFixed(3)}×` : 'n/a');
const fmtInterval = ([low, high]: [number, number]) => `${fmtFactor(low)} to ${fmtFactor(high)}`;
const medianOf = (list: Sample[], figure: (sample: Sample) => number, digits = 1) =>
  fmtNumber(median(list.map(figure)), digits);
const commitLine = (tree: BuiltTree) =>
  `\`${tree.commit.slice(0, 12)}\` (${tree.ref}: "${tree.subject}")${tree.uncommitted > 0 ? `, **with ${tree.uncommitted} files of packages/ or examples/ changed and not committed**` : ''}`;

function describe(
  trees: Record<Side, BuiltTree>,
  samples: Map<string, Sample[]>,
  loadAverages: number[],
  setup: Setup,
): SectionResult {
  const rows: string[][] = [];
  const targets: TargetVerdict[] = [];
  const before = trees.before.commit.slice(0, 7);
  const after = trees.after.commit.slice(0, 7);
  for (const workload of WORKLOADS) {
    const [b, a] = SIDES.map((side) => samples.get(`${workload.name}:${side}`) ?? []);
    const refused = [...b!, ...a!].reduce((sum, s) => sum + s.non2xx, 0);
    const lines: [string, Comparison][] = [['server CPU', compare(b!, a!)]];
    if (workload.redis && b!.every((s) => s.redisCpuUs !== undefined))
      lines.push(['server + Redis CPU', compare(b!, a!, true)]);
    for (const [counted, comparison] of lines) {
      const withRedis = counted !== 'server CPU';
      rows.push([
        workload.name,
        counted,
        `${medianOf(b!, (s) => perRequest(s, withRedis))} → ${medianOf(a!, (s) => perRequest(s, withRedis))}`,
        `**${fmtFactor(comparison.estimate)}**`,
        fmtInterval(comparison.interval),
        fmtFactor(median(comparison.ratios)),
        `${medianOf(b!, (s) => s.gcUs / s.requests)} → ${medianOf(a!, (s) => s.gcUs / s.requests)}`,
        `${medianOf(b!, (s) => s.requests / (s.wallUs / 1e6), 0)} → ${medianOf(a!, (s) => s.requests / (s.wallUs / 1e6), 0)}`,
        String(refused),
        workload.configuration,
      ]);
    }
    const [, main] = lines[0]!;
    targets.push({
      target: `Builds: ${workload.name}, server CPU per request within ±${TOLERANCE * 100}% of ${before}'s`,
      holds: refused > 0 ? undefined : verdict(main),
      figures:
        `${after} / ${before}: ${fmtFactor(main.estimate)} (95% interval ${fmtInterval(main.interval)}; ` +
        `${medianOf(b!, (s) => perRequest(s))} → ${medianOf(a!, (s) => perRequest(s))} µs)` +
        (refused > 0
          ? `; ${refused} non-2xx answers: not valid`
          : verdict(main) === undefined
            ? '; the interval crosses the line: not decided'
            : main.interval[1] < 1 - TOLERANCE
              ? `; cheaper than before by more than ${TOLERANCE * 100}% (see "at most ${TOLERANCE * 100}% above")`
              : ''),
    });
    // Within ±3% fails as surely when the after build is cheaper; whether it costs more is asked on its own.
    targets.push({
      target: `Builds: ${workload.name}, server CPU per request at most ${TOLERANCE * 100}% above ${before}'s`,
      holds: refused > 0 ? undefined : notDearer(main),
      figures:
        `95% interval ${fmtInterval(main.interval)}` +
        (main.interval[1] < 1 ? ': cheaper than before' : '') +
        (refused > 0 ? `; ${refused} non-2xx answers: not valid` : ''),
    });
  }
  const body = [
    "The same workloads on two builds at once, each app in a child of its own loading its build's `dist/`, driven " +
      `in-process (\`lib/inject.ts\`), ${CONCURRENCY} in flight, in blocks of ${fmtNumber(setup.blockRequests)}; each round ` +
      `runs ${setup.pairs} blocks of every workload on each build in turn, the first alternating. The figure is the child's ` +
      'CPU per request; "after / before" the trimmed mean of the per-round ratios with a 95% bootstrap interval. A target ' +
      `holds when the interval lies within ±${TOLERANCE * 100}%, fails when it lies wholly outside.`,
    '',
    table(
      ['what', 'value'],
      [
        ['before', `${commitLine(trees.before)}; ${trees.before.prepared}`],
        ['after', `${commitLine(trees.after)}; ${trees.after.prepared}`],
        [
          'rounds',
          `${setup.rounds}; in each, per workload, ${setup.pairs} blocks of ${fmtNumber(setup.blockRequests)} requests on each build, ${CONCURRENCY} in flight; ${fmtNumber(setup.warmUpRequests)} requests per workload and build before the first, unmeasured`,
        ],
        ['Redis', setup.redisNote],
        [
          'machine load',
          `load average (1 min) ${fmtNumber(Math.min(...loadAverages), 1)} to ${fmtNumber(Math.max(...loadAverages), 1)} over the rounds on ${os.cpus().length} cores (other work ran beside the bench)`,
        ],
      ],
    ),
    '',
    table(
      [
        'workload',
        'counted',
        'µs/req before → after (median)',
        'after / before',
        '95% interval',
        'median of rounds',
        'GC µs/req (main thread)',
        'req/s while driven',
        'non-2xx',
        'configuration',
      ],
      rows,
    ),
  ].join('\n');
  return { title: `Builds: ${after} against ${before}, per-request CPU side by side`, body, targets };
}
