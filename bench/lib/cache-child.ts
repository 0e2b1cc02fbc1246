// Child entry for the cache benchmark: the example proxy without a cache, or with one that always misses or always hits, driven in blocks.
import { ServerResponse } from 'node:http';
import type { Express } from 'express';
import { authHeaders, benchKey, CHAT_PATH, sha256Hex } from './fixtures.js';
import { inject } from './inject.js';

type ChildMessage =
  | { type: 'start'; mode: CacheCase; upstream: string; bodies: number }
  | { type: 'chain'; rounds: number; blockSize: number; warmup: number }
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
  return Buffer.from(JSON.stringify({
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: 'You are a terse assistant.' },
      { role: 'user', content: `Say hello in one short sentence. (${String(index).padStart(9, '0')})` },
    ],
    max_tokens: 64,
  }));
}

interface Running {
  block(requests: number): Promise<CacheBlockCost>;
  stop(): Promise<void>;
}

async function start(message: Extract<ChildMessage, { type: 'start' }>): Promise<Running> {
  const [{ createProxyApp }, { validateConfig }] = await Promise.all([import('../../examples/proxy/src/app.js'), import('../../examples/proxy/src/config.js')]);
  const { mode } = message;
  const config = validateConfig({
    upstreams: { openai: { baseUrl: `${message.upstream}/v1`, apiKey: 'upstream-bench-key' } },
    tiers: { pro: { requestsPerMinute: 1_000_000_000, tokensPerMinute: 1_000_000_000_000, models: ['*'] } },
    tenants: { 'bench-tenant': { tier: 'pro', budget: HUGE } },
    keys: [{ id: 'bench-key-0', sha256: sha256Hex(benchKey(0)), tenant: 'bench-tenant', user: 'bench-user', feature: 'bench', scopes: ['chat'], budget: HUGE }],
    global: { requestsPerMinute: 1_000_000_000, budget: HUGE },
    log: { level: 'silent' },
    ...(mode === 'none' ? {} : { cache: { store: 'memory', ttl: '1h', maxBytes: 512 * 1024 * 1024 } }),
  });
  const app: Express = createProxyApp(config, { log: () => undefined, metrics: false });
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
ServerResponse.prototype.setHeader = function noteCacheHeader(this: ServerResponse, name: string, value: number | string | readonly string[]) {
  if (name === 'x-tollgate-cache') lastCacheHeader = String(value);
  return setHeader.call(this, name, value);
};

let running: Running | undefined;

/** Per round, CPU µs per request of a minimal metered chain without the cache and with it (every request a miss). */
export interface ChainCosts {
  bare: number[];
  miss: number[];
}

/**
 * The cache's own work on a miss, away from the rest of the proxy: a minimal chain (JSON body,
 * identity, meter) answering at once, with and without the cache's three steps, in one process,
 * blocks alternating. The smaller the chain, the less noise around the cache's share.
 */
async function measureChain(rounds: number, blockSize: number, warmup: number): Promise<ChainCosts> {
  const [{ default: express }, core, { meter }, { createResponseCache }, { preloadTokenizers }] = await Promise.all([
    import('express'), import('@tollgate/core'), import('@tollgate/metering'), import('@tollgate/cache'), import('@tollgate/providers'),
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
      core.getContext(req, res).identity = { keyId: 'bench-key', tenantId: 'bench-tenant', scopes: ['chat'], authMethod: 'api_key' };
      next();
    });
    const steps = withCache ? [cache.lookup, cache.chooseLimits({ hit: pass, miss: pass }), cache.answer] : [];
    app.post(CHAT_PATH, meter({ api: 'openai.chat', pricing }), ...steps, (_req, res) => void res.type('application/json').send(CHAT_COMPLETION));
    return app;
  };
  const apps = [build(false), build(true)];
  const headers = { 'content-type': 'application/json' };
  let sent = 0;
  const block = async (app: Express, requests: number) => {
    // Built before the clock starts: what a body costs to make is no one's.
    const bodies = Array.from({ length: requests }, () => chatBody(sent++));
    const cpu = process.cpuUsage();
    for (const body of bodies) {
      if ((await inject(app, { method: 'POST', url: CHAT_PATH, headers, body })) !== 200) throw new Error('the chain did not answer 200');
      await new Promise((resolve) => setImmediate(resolve));
    }
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / requests;
  };
  for (const app of apps) await block(app, warmup);
  const costs: ChainCosts = { bare: [], miss: [] };
  for (let round = 0; round < rounds; round++) {
    // A B, then B A: whatever drifts meets both alike.
    const order = round % 2 === 0 ? [0, 1] : [1, 0];
    for (const index of order) (index === 0 ? costs.bare : costs.miss).push(await block(apps[index]!, blockSize));
  }
  await cache.close();
  return costs;
}

async function handle(message: ChildMessage): Promise<unknown> {
  switch (message.type) {
    case 'start':
      running = await start(message);
      return { ready: true };
    case 'block':
      return running!.block(message.requests);
    case 'chain':
      return measureChain(message.rounds, message.blockSize, message.warmup);
    case 'stop':
      await running?.stop();
      return { stopped: true };
  }
}

process.on('message', (message: ChildMessage) => {
  handle(message).then(
    (value) => process.send?.({ ok: true, value }),
    (error: unknown) => process.send?.({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
