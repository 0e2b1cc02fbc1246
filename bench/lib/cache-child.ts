// Child entry for the cache benchmark: the example proxy without a cache, or with one that always misses or always hits, driven in blocks.
import { ServerResponse } from 'node:http';
import type { Express } from 'express';
import { authHeaders, benchKey, benchKeyEntry, CHAT_PATH } from './fixtures.js';
import { inject } from './inject.js';
import { measurePairedRequests } from './paired-requests.js';
import { mean } from './stats.js';
import { answerParent } from './child-answers.js';

type ChildMessage =
  | { type: 'start'; mode: CacheCase; upstream: string; bodies: number }
  | {
      type: 'pair';
      subject: PairSubject;
      upstream: string;
      blocks: number;
      roundsPerBlock: number;
      warmupRounds: number;
    }
  | { type: 'block'; requests: number }
  | { type: 'stop' };

/** `none`: no cache configured; `miss`: a cache, every request new to it; `hit`: a cache, one request repeated. */
export const CACHE_CASES = ['none', 'miss', 'hit'] as const;
export type CacheCase = (typeof CACHE_CASES)[number];

/** What one block cost: CPU of the process (user + system) and wall time, both over the whole block. */
export interface CacheBlockCost {
  cpuUs: number;
  wallUs: number;
  requests: number;
  /** Answers whose `x-tollgate-cache` was not what the case expects (the figures of a block with any are void). */
  unexpected: number;
}

const HUGE = { usd: 1_000_000, period: 'day' as const };

/** A chat body of the same size each time; `index` makes it one no earlier request sent. */
function chatBody(index: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'You are a terse assistant.' },
        { role: 'user', content: `Say hello in one short sentence. (${String(index).padStart(9, '0')})` },
      ],
      max_tokens: 64,
    }),
  );
}

interface Running {
  block(requests: number): Promise<CacheBlockCost>;
  stop(): Promise<void>;
}

/** The example proxy as every case runs it: one pro key, key, tenant and global budgets, limits far above the load; a memory cache or none. */
async function buildProxy(upstream: string, withCache: boolean): Promise<Express> {
  const [{ createGatewayApp }, { validateConfig }] = await Promise.all([
    import('../../packages/gateway/src/app.js'),
    import('../../packages/gateway/src/config/index.js'),
  ]);
  const config = validateConfig({
    upstreams: { openai: { baseUrl: `${upstream}/v1`, apiKey: 'upstream-bench-key' } },
    tiers: { pro: { requestsPerMinute: 1_000_000_000, tokensPerMinute: 1_000_000_000_000, models: ['*'] } },
    tenants: { 'bench-tenant': { tier: 'pro', budget: HUGE } },
    keys: [{ ...benchKeyEntry(), budget: HUGE }],
    global: { requestsPerMinute: 1_000_000_000, budget: HUGE },
    log: { level: 'silent' },
    ...(withCache ? { cache: { store: 'memory', ttl: '1h', maxBytes: 512 * 1024 * 1024 } } : {}),
  });
  return createGatewayApp(config, { log: () => undefined, metrics: false });
}

async function start(message: Extract<ChildMessage, { type: 'start' }>): Promise<Running> {
  const { mode } = message;
  const app = await buildProxy(message.upstream, mode !== 'none');
  const headers = authHeaders(benchKey(0));
  // Made before the blocks, so building a body is not counted; the hit case sends the first one again and again.
  const bodies = Array.from({ length: mode === 'hit' ? 1 : message.bodies }, (_, index) => chatBody(index));
  const expected = mode === 'none' ? undefined : mode;
  let sent = 0;
  return {
    async block(requests) {
      let unexpected = 0;
      const cpu = process.cpuUsage();
      const wall = process.hrtime.bigint();
      for (let i = 0; i < requests; i++) {
        const body = bodies[mode === 'hit' ? 0 : sent % bodies.length]!;
        sent++;
        const answer = await inject(app, { method: 'POST', url: CHAT_PATH, headers, body });
        if (answer !== 200) throw new Error(`the proxy answered ${answer}`);
        // What runs after the answer (the settle, the store of a miss) belongs to the request.
        await new Promise((resolve) => setImmediate(resolve));
        if (expected !== undefined && lastCacheHeader !== expected && !(expected === 'hit' && sent === 1)) unexpected++;
      }
      const wallUs = Number(process.hrtime.bigint() - wall) / 1000;
      const used = process.cpuUsage(cpu);
      return { cpuUs: used.user + used.system, wallUs, requests, unexpected };
    },
    async stop() {
      await (app as unknown as { close(): Promise<void> }).close();
    },
  };
}

/**
 * The `x-tollgate-cache` of the last answer, noted where the proxy sets it (every case pays for the
 * check alike): a block whose answers were not what its case expects is reported, not measured.
 */
let lastCacheHeader: string | undefined;
const setHeader = ServerResponse.prototype.setHeader;
ServerResponse.prototype.setHeader = function noteCacheHeader(
  this: ServerResponse,
  name: string,
  value: number | string | readonly string[],
) {
  if (name === 'x-tollgate-cache') lastCacheHeader = String(value);
  return setHeader.call(this, name, value);
};

let running: Running | undefined;

/** What a pair measures, per case (0: no cache, 1: the cache, every request a miss). */
export interface PairCosts {
  /** Per block: each case's typical request CPU, µs (the mean of the middle half of its requests). */
  blockTypical: [number, number][];
  /** Per block: each case's mean request CPU, µs (every request, those a collection paused included). */
  blockMeans: [number, number][];
  /** Bytes each case's request allocates on the heap: the median growth over the requests no collection ran in. */
  allocatedBytes: [number, number];
  /** Garbage collection over the measured run (every `gc` performance entry), µs per byte allocated. */
  gcPerByte: number;
  /** Answers whose `x-tollgate-cache` was not what their case expects (none without the cache, `miss` with it): the figures are void. */
  unexpected: number;
}

/** Which pair: the minimal metered chain, or the whole example proxy in front of the mock upstream. */
export type PairSubject = 'chain' | 'proxy';

/**
 * The cache's own work on a miss: the same app without and with the cache in one process, every
 * request a body no earlier one sent. One request to each case in turn (the first alternating),
 * each request's CPU a sample, pooled in blocks of rounds: the mean of a block's middle half is its
 * typical request. A collection lands on whichever request runs, so it is counted apart: each
 * request's heap growth (read outside its CPU window) is what it allocates, and the run's
 * collection time is shared out per byte allocated.
 */
async function measurePair(
  apps: readonly [Express, Express],
  headers: Record<string, string>,
  rounds: PairRounds,
): Promise<PairCosts> {
  const { blocks, roundsPerBlock, warmupRounds } = rounds;
  // Every request a body no earlier one sent (the cache's every request a miss), built before the run.
  const bodies = Array.from({ length: 2 * (warmupRounds + blocks * roundsPerBlock) }, (_, index) => chatBody(index));
  let sent = 0;
  let unexpected = 0;
  const run = await measurePairedRequests(async (kind) => {
    const body = bodies[sent++]!;
    lastCacheHeader = undefined;
    const status = await inject(apps[kind], { method: 'POST', url: CHAT_PATH, headers, body });
    if (status !== 200) throw new Error(`the app answered ${status}`);
    if (lastCacheHeader !== (kind === 0 ? undefined : 'miss')) unexpected++;
  }, rounds);
  return {
    blockTypical: run.blocks.map(([bare, cached]) => [middleMean(bare), middleMean(cached)]),
    blockMeans: run.blocks.map(([bare, cached]) => [mean(bare), mean(cached)]),
    allocatedBytes: run.allocatedBytes,
    gcPerByte: run.gcPerByte,
    unexpected,
  };
}

interface PairRounds {
  blocks: number;
  roundsPerBlock: number;
  warmupRounds: number;
}

/**
 * A minimal chain (JSON body, identity, meter) answering at once, without and with the cache's
 * three steps as the proxy mounts them (`chooseLimits` with nothing to choose): the smaller the
 * chain, the less noise around the cache's share.
 */
async function measureChain(rounds: PairRounds): Promise<PairCosts> {
  const [{ default: express }, core, { meter }, { createResponseCache }, { preloadTokenizers }] = await Promise.all([
    import('express'),
    import('@tollgate/core'),
    import('@tollgate/metering'),
    import('@tollgate/cache'),
    import('@tollgate/providers'),
  ]);
  await preloadTokenizers();
  const { CHAT_COMPLETION } = await import('./fixtures.js');
  const pricing = core.createPricing();
  const cache = createResponseCache();
  const pass = (_req: unknown, _res: unknown, next: () => void) => next();
  const build = (withCache: boolean) => {
    const app = express();
    app.use(express.json());
    app.use((req, res, next) => {
      core.getContext(req, res).identity = {
        keyId: 'bench-key',
        tenantId: 'bench-tenant',
        scopes: ['chat'],
        authMethod: 'api_key',
      };
      next();
    });
    const steps = withCache ? [cache.lookup, cache.chooseLimits({ hit: pass, miss: pass }), cache.answer] : [];
    app.post(
      CHAT_PATH,
      meter({ api: 'openai.chat', pricing }),
      ...steps,
      (_req, res) => void res.type('application/json').send(CHAT_COMPLETION),
    );
    return app;
  };
  try {
    return await measurePair([build(false), build(true)], { 'content-type': 'application/json' }, rounds);
  } finally {
    await cache.close();
  }
}

/** The whole example proxy without and with a memory cache, both in this process, in front of the mock upstream. */
async function measureProxy(upstream: string, rounds: PairRounds): Promise<PairCosts> {
  const apps = [await buildProxy(upstream, false), await buildProxy(upstream, true)] as const;
  try {
    return await measurePair(apps, authHeaders(benchKey(0)), rounds);
  } finally {
    for (const app of apps) await (app as unknown as { close(): Promise<void> }).close();
  }
}

/**
 * The mean of the middle half of the samples: as robust as the median to the requests a collection
 * paused, and finer than it (each sample is a whole number of µs: the median of one moves in steps of 1).
 */
function middleMean(samples: readonly number[]): number {
  const sorted = Float64Array.from(samples).sort();
  const from = Math.floor(sorted.length / 4);
  const to = Math.ceil((3 * sorted.length) / 4);
  let sum = 0;
  for (let index = from; index < to; index++) sum += sorted[index]!;
  return sum / (to - from);
}

async function handle(message: ChildMessage): Promise<unknown> {
  switch (message.type) {
    case 'start':
      running = await start(message);
      return { ready: true };
    case 'block':
      return running!.block(message.requests);
    case 'pair':
      return message.subject === 'chain' ? measureChain(message) : measureProxy(message.upstream, message);
    case 'stop':
      await running?.stop();
      return { stopped: true };
  }
}

answerParent<ChildMessage>(handle);
