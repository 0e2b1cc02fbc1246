// Benchmark: where the proxy's CPU goes by layer (issues 47 and 65). The deployment's workload through four proxies in
// one bench child, driven in turn: memory; the blocks layer over the same memory stores (the Redis case without Redis:
// no configuration anyone deploys); Redis with blocks (the default); and memory with JSON calls asked upstream as JSON,
// what holding a JSON call to its grant costs (in streams it is the memory case again: the method's own noise).
import { driveBlock, startServer, startTogether } from './lib/child.js';
import { DEPLOYMENT, deploymentProxyConfig } from './lib/deployment-config.js';
import { CONNECTIONS, MODE_LABEL, MODES } from './lib/deployment-load.js';
import { rotatingRounds } from './lib/load.js';
import { PrivateRedis } from './lib/private-redis.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtNumber, fmtSigned, mean, table } from './lib/stats.js';

const REQUESTS_PER_BLOCK = 2_000;
/** Issue 65: what the blocks' bookkeeping adds to a streamed request, paired in one process, at most (µs of CPU). */
const BLOCKS_STREAM_TARGET_US = 10;
const LAYERS = [
  { name: 'memory stores', options: { store: 'memory' } },
  { name: 'blocks over memory stores', options: { store: 'memory', blocksOverMemory: true } },
  { name: 'Redis, blocks on (the default)', options: { store: 'redis' } },
  // What holding a JSON call to its grant costs: the same call asked upstream as JSON (streams are asked as streams).
  {
    name: 'memory stores, JSON calls asked as JSON (`jsonAsStream: false`)',
    options: { store: 'memory', jsonAsStream: false },
  },
] as const;

/** The mean of the paired differences, a tenth of the rounds left out at each end, and its 95% interval's half. */
function trimmedDifference(a: readonly number[], b: readonly number[]): { mean: number; half: number } {
  const differences = a.map((value, round) => value - b[round]!).sort((x, y) => x - y);
  const cut = Math.floor(differences.length / 10);
  const kept = differences.slice(cut, differences.length - cut);
  const average = mean(kept);
  const sd = Math.sqrt(kept.reduce((sum, d) => sum + (d - average) ** 2, 0) / Math.max(1, kept.length - 1));
  return { mean: average, half: (1.96 * sd) / Math.sqrt(kept.length) };
}

export async function runDeploymentLayersBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 6 : Number(process.env.BENCH_LAYERS_ROUNDS ?? 30);
  const redis = await PrivateRedis.startOrNone(context.log, 'deployment-layers');
  const layers = LAYERS.filter((layer) => layer.options.store !== 'redis' || redis);
  const upstream = await startServer({ app: 'mock-upstream' });
  const config = deploymentProxyConfig();
  const prefix = `${context.redisPrefix}layers:`;
  const specs = layers.map((layer) => ({
    app: 'proxy',
    options: { ...layer.options, upstream: upstream.url, config, redisUrl: redis?.url, prefix },
  }));
  const rows: string[][] = [];
  const findings: string[] = [];
  const targets: TargetVerdict[] = [];
  const child = await startTogether(specs);
  try {
    for (const mode of MODES) {
      const block = {
        requests: REQUESTS_PER_BLOCK,
        concurrency: CONNECTIONS,
        keys: DEPLOYMENT.tenants,
        deployment: true,
      };
      const options = { ...block, stream: mode === 'stream' };
      for (const [app] of layers.entries()) await driveBlock(child, { ...options, requests: 3 * block.requests, app });
      const samples = layers.map(() => [] as number[]);
      let redisUs = 0;
      await rotatingRounds(layers.length, rounds, async (app) => {
        const before = layers[app]!.options.store === 'redis' ? await redis!.cost() : undefined;
        const cost = await driveBlock(child, { ...options, app });
        if (cost.non2xx > 0) throw new Error(`${layers[app]!.name} answered ${cost.non2xx} non-2xx`);
        samples[app]!.push(cost.cpuUs / cost.requests);
        if (before) redisUs += (await redis!.cost()).processCpuUs - before.processCpuUs;
      });
      for (const [index, layer] of layers.entries()) {
        const over = index === 0 ? undefined : trimmedDifference(samples[index]!, samples[0]!);
        const redisServer = layer.options.store === 'redis' ? redisUs / (rounds * REQUESTS_PER_BLOCK) : undefined;
        const signed = (us: number) => fmtSigned(us, '');
        rows.push([
          layer.name,
          MODE_LABEL[mode],
          fmtNumber(mean(samples[index]!), 1),
          over
            ? `${signed(over.mean)} (${fmtNumber(over.mean - over.half, 1)} to ${fmtNumber(over.mean + over.half, 1)})`
            : '—',
          redisServer === undefined ? '—' : fmtNumber(redisServer, 1),
        ]);
        if (over && 'blocksOverMemory' in layer.options && mode === 'stream')
          targets.push({
            target: `Deployment layers: the blocks' bookkeeping at most ${BLOCKS_STREAM_TARGET_US} µs of CPU a streamed request (blocks over memory against memory, paired in one process)`,
            holds: over.mean <= BLOCKS_STREAM_TARGET_US,
            figures: `${signed(over.mean)} µs (95% interval ${fmtNumber(over.mean - over.half, 1)} to ${fmtNumber(over.mean + over.half, 1)}) over ${fmtNumber(mean(samples[0]!), 1)} µs, ${rounds} rounds`,
          });
        if (over)
          findings.push(
            `Layers in one process, ${MODE_LABEL[mode]}: ${layer.name} ${signed(over.mean)} µs of CPU a request over ` +
              `memory stores (95% interval ±${fmtNumber(over.half, 1)} µs)` +
              `${redisServer === undefined ? '' : `, the redis-server ${fmtNumber(redisServer, 1)} µs more`} (deployment-layers).`,
          );
      }
      context.log(`deployment-layers ${mode}: ${rounds} rounds of ${REQUESTS_PER_BLOCK} requests per case`);
    }
  } finally {
    await child.close();
    await upstream.close();
    await redis?.stop();
  }
  const body = [
    `The \`deployment\` workload (${fmtNumber(DEPLOYMENT.tenants)} keys in turn, ${CONNECTIONS} in flight) through four ` +
      `proxies in one bench child, driven through \`inject\`: ${rounds} rounds of a ${fmtNumber(REQUESTS_PER_BLOCK)}-request ` +
      "block per case, each round starting at another case. Over memory is the mean of the rounds' paired differences " +
      "(a tenth left out at each end) with its 95% interval; the redis-server's CPU is listed apart.",
    '',
    table(['proxy', 'mode', 'CPU µs/req', 'over memory µs/req (95% interval)', 'redis-server µs/req'], rows),
  ].join('\n');
  return {
    title: 'Deployment layers: memory, blocks over memory, Redis (where the Redis case spends more)',
    body,
    targets,
    findings,
  };
}
