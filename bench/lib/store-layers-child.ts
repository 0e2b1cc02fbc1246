// Child entry for deployment-layers' in-process part: the three store setups built as apps in this one process and
// driven in turn through `inject`, block by block, with the deployment's 1,000 tenants (no sockets on the caller's
// side, the upstream a real HTTP server).
import type { RequestListener } from 'node:http';
import { createClient } from 'redis';
import { deploymentKey, deploymentProxyConfig } from './deployment-config.js';
import { authHeaders, CHAT_BODY, CHAT_PATH, STREAM_CHAT_BODY } from './fixtures.js';
import { cpuPerRequest } from './inject.js';
import { redisProcessCpuUs } from './private-redis.js';
import { buildProxy } from './tollgate-apps.js';
import { answerParent } from './child-answers.js';

export interface StoreLayersRequest {
  upstream: string;
  /** The bench's own redis-server; none: the Redis case is left out. */
  redisUrl?: string;
  prefix: string;
  rounds: number;
  requestsPerBlock: number;
  warmupRequests: number;
  concurrency: number;
}

export type StoreLayer = 'memory' | 'blocks' | 'redis';

/** Per mode, per case: the process's CPU per request in each round (µs), and the redis-server's per Redis request. */
export interface StoreLayersSamples {
  json: Record<StoreLayer, number[]>;
  stream: Record<StoreLayer, number[]>;
  redisServerUs: { json: number; stream: number };
}

async function redisCpuUs(client: ReturnType<typeof createClient> | undefined): Promise<number> {
  return client ? redisProcessCpuUs(await client.info('cpu')) : 0;
}

async function measure(request: StoreLayersRequest): Promise<StoreLayersSamples> {
  const config = deploymentProxyConfig();
  const common = { upstream: request.upstream, config };
  const built = {
    memory: await buildProxy({ ...common, store: 'memory' }),
    blocks: await buildProxy({ ...common, store: 'memory', blocksOverMemory: true }),
    ...(request.redisUrl
      ? { redis: await buildProxy({ ...common, store: 'redis', redisUrl: request.redisUrl, prefix: request.prefix }) }
      : {}),
  } as Partial<Record<StoreLayer, { app: unknown; close(): Promise<void> }>>;
  const layers = (Object.keys(built) as StoreLayer[]).filter((layer) => built[layer]);
  const client = request.redisUrl ? createClient({ url: request.redisUrl }) : undefined;
  client?.on('error', () => undefined);
  await client?.connect();
  const headers = Array.from({ length: 1_000 }, (_, index) => authHeaders(deploymentKey(index)));
  let next = 0;
  const block = async (layer: StoreLayer, body: Buffer, requests: number): Promise<number> => {
    // Each request takes the next tenant's key, as the deployment's load does.
    const one = () => ({ method: 'POST', url: CHAT_PATH, headers: headers[next++ % 1_000]!, body });
    const { cpuUs, statuses } = await cpuPerRequest(
      built[layer]!.app as RequestListener,
      requests,
      request.concurrency,
      one,
    );
    if (Object.keys(statuses).some((status) => status !== '200'))
      throw new Error(`${layer} answered ${JSON.stringify(statuses)}`);
    return cpuUs;
  };
  const empty = () => ({ memory: [], blocks: [], redis: [] }) as Record<StoreLayer, number[]>;
  const samples: StoreLayersSamples = { json: empty(), stream: empty(), redisServerUs: { json: 0, stream: 0 } };
  try {
    for (const mode of ['json', 'stream'] as const) {
      const body = Buffer.from(mode === 'json' ? CHAT_BODY : STREAM_CHAT_BODY);
      for (const layer of layers) await block(layer, body, request.warmupRequests);
      let redisUs = 0;
      for (let round = 0; round < request.rounds; round++) {
        // Each round starts at another case, so none always runs right after the same one.
        for (let turn = 0; turn < layers.length; turn++) {
          const layer = layers[(turn + round) % layers.length]!;
          const before = layer === 'redis' ? await redisCpuUs(client) : 0;
          samples[mode][layer].push(await block(layer, body, request.requestsPerBlock));
          if (layer === 'redis') redisUs += (await redisCpuUs(client)) - before;
        }
      }
      samples.redisServerUs[mode] = redisUs / (request.rounds * request.requestsPerBlock);
    }
    return samples;
  } finally {
    if (client?.isOpen) await client.quit();
    for (const layer of layers) await built[layer]!.close();
  }
}

answerParent<StoreLayersRequest>(measure);
