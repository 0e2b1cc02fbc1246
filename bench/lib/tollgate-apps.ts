// tollgate's side of the benchmarks: the full middleware chain, the example proxy, and its bare passthrough rivals.
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { TollgateStores } from '@tollgate/core';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { Agent, request } from 'undici';
import { answerAtOnce, baseApp, type AppOptions, type BuiltApp } from './app-base.js';
import { benchKey, benchKeyEntry, CHAT_PATH, REDIS_URL, sha256Hex } from './fixtures.js';
import { buildBenchUpstream } from './mock-upstream.js';

/** Far above any load the bench makes: it measures the cost of checking, never a refusal. */
const HUGE_REQUESTS = 1_000_000_000;
const HUGE_TOKENS = 1_000_000_000_000;
const HUGE_BUDGET = { usd: 1_000_000, period: 'day' as const };

/** `count` key records for one tenant on the pro tier, keyed like benchKey(i). */
function benchKeyRecords(count: number): ApiKeyRecord[] {
  const createdAt = new Date().toISOString();
  return Array.from({ length: count }, (_, index) => ({
    id: `bench-key-${index}`,
    sha256: sha256Hex(benchKey(index)),
    tenantId: 'bench-tenant',
    userId: `bench-user-${index % 100}`,
    tier: 'pro',
    scopes: ['chat'],
    feature: 'bench',
    createdAt,
  }));
}

/**
 * A tollgate package's main door: as this bench resolves it (the workspace's link), or, with `options.tree`, the
 * built `dist/` of the checkout there (the `builds` benchmark runs an earlier commit's build beside this one's).
 * Inside that `dist/`, the package's own imports of the others resolve in its checkout's node_modules.
 */
async function tollgatePackage<Door>(name: string, options: AppOptions, workspace: () => Promise<Door>): Promise<Door> {
  if (options.tree === undefined) return workspace();
  const entry = path.join(String(options.tree), 'packages', name, 'dist', 'index.js');
  return (await import(pathToFileURL(entry).href)) as Door;
}

async function openStores(options: AppOptions): Promise<TollgateStores> {
  if (options.store === 'redis') {
    const { createRedisStores } = await tollgatePackage('redis', options, () => import('@tollgate/redis'));
    const stores = createRedisStores({
      url: String(options.redisUrl ?? REDIS_URL),
      prefix: String(options.prefix),
      batch: options.batch !== false,
    });
    if (options.blocks) {
      // Hot limits and budgets taken a block at a time (blockStores' defaults: sized by demand, at most 0.05 of each limit, held at most 10 s).
      const { blockStores } = await tollgatePackage('core', options, () => import('@tollgate/core'));
      return blockStores(stores);
    }
    // Unbatched is the chain as it was before the script bundle: the request limit on rate-limit-redis in combineLimits too.
    if (options.batch !== false) return stores;
    const { fixedWindow: _countedByRateLimitRedis, ...unbatched } = stores;
    return unbatched;
  }
  const { createMemoryStores } = await tollgatePackage('core', options, () => import('@tollgate/core'));
  return createMemoryStores();
}

/**
 * The full chain as the ratelimit README recommends it (fused): apiKeyAuth -> meter ->
 * combineLimits(tieredRateLimit, tokenRateLimit, budgetGuard) -> the handler that answers at once, so the
 * limits and the budget share one store round trip. With `fused: false`, DESIGN.md's chain with each piece
 * mounted on its own: apiKeyAuth -> tieredRateLimit -> meter -> tokenRateLimit -> budgetGuard.
 * One limiter layer each (by key); budgets per key, tenant and global.
 */
export async function buildTollgateChain(options: AppOptions): Promise<BuiltApp> {
  const [{ chain }, { apiKeyAuth }, { combineLimits, tieredRateLimit, tokenRateLimit }, { meter }, { budgetGuard }] =
    await Promise.all([
      tollgatePackage('core', options, () => import('@tollgate/core')),
      tollgatePackage('auth', options, () => import('@tollgate/auth')),
      tollgatePackage('ratelimit', options, () => import('@tollgate/ratelimit')),
      tollgatePackage('metering', options, () => import('@tollgate/metering')),
      tollgatePackage('budget', options, () => import('@tollgate/budget')),
    ]);
  const stores = await openStores(options);
  const prefix = String(options.prefix ?? '');
  for (const record of benchKeyRecords(Number(options.keys ?? 1))) await stores.keys.put(record);
  const budget = budgetGuard({
    ledger: stores.ledger,
    keys: { '*': HUGE_BUDGET },
    tenants: { '*': HUGE_BUDGET },
    global: HUGE_BUDGET,
    log: false,
  });
  const requestLimit = tieredRateLimit({ stores, by: 'key', tiers: { pro: HUGE_REQUESTS }, defaultTier: 'pro' });
  const tokenLimit = tokenRateLimit({
    stores,
    by: 'key',
    tiers: { pro: HUGE_TOKENS },
    defaultTier: 'pro',
    prefix: `${prefix}tokens:`,
  });
  const auth = apiKeyAuth({ keys: stores.keys });
  // No sinks: what a sink costs depends on the sink, and none blocks the request. The API is declared, as a user
  // must: it is never guessed from the path, and token limits and budgets refuse a route that declared none.
  // The count cache finds texts sent before: on where each request brings a new user message (`freshPrompts`, §1b),
  // off where a bench sends one body over and over, which it would answer from memory every time.
  const metering = meter({ api: 'openai.chat', ...(options.freshPrompts === true ? {} : { countCacheChars: 0 }) });
  // Measured once the tokenizers are loaded (meter() starts loading them): before, estimates are the byte bound, which
  // costs nothing to count, and a drive that never lets the event loop turn would measure that instead.
  await (await tollgatePackage('providers', options, () => import('@tollgate/providers'))).preloadTokenizers();
  // Each step adds one piece; `upTo` mounts the first N steps (the cost-by-middleware table builds the chain up).
  const steps: RequestHandler[][] =
    options.fused === false
      ? [
          [auth],
          [auth, requestLimit],
          [auth, requestLimit, metering],
          [auth, requestLimit, metering, tokenLimit],
          [auth, requestLimit, metering, tokenLimit, budget],
        ]
      : [
          [auth],
          [auth, metering],
          [auth, metering, combineLimits(requestLimit)],
          [auth, metering, combineLimits(requestLimit, tokenLimit)],
          [auth, metering, combineLimits(requestLimit, tokenLimit, budget)],
        ];
  const upTo = options.upTo === undefined ? steps.length : Number(options.upTo);
  const app = baseApp();
  const mounted = upTo === 0 ? [] : steps[upTo - 1]!;
  // The fused chain is one layer of Express's router (core's chain()); unfused, each piece is a layer of its own.
  if (options.fused === false) for (const middleware of mounted) app.use(middleware);
  else if (mounted.length > 0) app.use(chain(...mounted));
  app.post(CHAT_PATH, answerAtOnce);
  return {
    app,
    close: async () => {
      await budget.close();
      await stores.close();
    },
  };
}

/**
 * examples/proxy as a user would run it from a config file: one key of a pro tenant, the upstream at
 * `options.upstream`, key, tenant and global budgets, limits far above the load; memory or Redis stores.
 * `options.config` replaces the tiers, tenants, keys and budgets with a config of the bench's own (the `deployment`
 * benchmarks' 1,000 tenants); the upstream, the stores and the log are set here either way.
 * Its metrics are on and its access log silent: a server under load must not write a line per request to the
 * bench's terminal (what the log, the metrics and tracing cost is measured by observability.ts).
 */
export async function buildProxy(options: AppOptions): Promise<BuiltApp> {
  const { createGatewayApp, validateConfig, createStores } = await proxyParts(options);
  const redis = options.store === 'redis';
  const limitsAndKeys = (options.config as Record<string, unknown> | undefined) ?? {
    tiers: { pro: { requestsPerMinute: HUGE_REQUESTS, tokensPerMinute: HUGE_TOKENS, models: ['*'] } },
    tenants: { 'bench-tenant': { tier: 'pro', budget: HUGE_BUDGET } },
    keys: [{ ...benchKeyEntry(), budget: HUGE_BUDGET }],
    global: { requestsPerMinute: HUGE_REQUESTS, budget: HUGE_BUDGET },
    // The bench sends one body over and over: the count cache would answer every request from memory.
    countCacheChars: 0,
  };
  // The files the config names by a relative path (the deployment's usage and access logs) go to a directory of its own.
  const files = await filesOf(limitsAndKeys);
  const config = validateConfig({
    ...files.config,
    upstreams: {
      openai: {
        baseUrl: `${String(options.upstream)}/v1`,
        apiKey: 'upstream-bench-key',
        // `jsonAsStream: false`: JSON calls go upstream as JSON (what holding them to their grant costs, jsonstream.ts).
        ...(options.jsonAsStream === false ? { jsonAsStream: false } : {}),
      },
    },
    ...(redis ? { redisUrl: String(options.redisUrl ?? REDIS_URL), redisPrefix: String(options.prefix) } : {}),
    // Blocks are the proxy's default on Redis; `blocks: false` counts every request in Redis.
    ...(redis && options.blocks === false ? { redis: { blocks: false } } : {}),
    // The profiler's observed case logs to a file; the deployment's config to its own; every other case is silent.
    log: (options.log as { level: 'info'; destination: string } | undefined) ??
      (files.config.log as Record<string, unknown> | undefined) ?? { level: 'silent' },
  });
  const opened = await createStores?.({ redisUrl: config.redisUrl, redisPrefix: config.redisPrefix });
  // `blocksOverMemory` (deployment-layers only): the Redis case's blocks layer over memory stores, the Redis case
  // without Redis. No deployment runs it (the gateway takes blocks on Redis only); it tells the layer's cost apart.
  const stores =
    opened && options.blocksOverMemory === true && options.store !== 'redis'
      ? (await tollgatePackage('core', options, () => import('@tollgate/core'))).blockStores(opened)
      : opened;
  const app = createGatewayApp(config, { ...(stores ? { stores } : {}), log: () => undefined });
  return {
    app,
    close: async () => {
      await app.close();
      await stores?.close();
      await files.remove();
    },
  };
}

/** `config` with its relative `usageLog` and log `destination` in a temporary directory, and that directory's removal. */
async function filesOf(config: Record<string, unknown>) {
  const log = config.log as { destination?: string } | undefined;
  const relative = (file: unknown): file is string => typeof file === 'string' && !path.isAbsolute(file);
  if (!relative(config.usageLog) && !relative(log?.destination)) return { config, remove: async () => undefined };
  const dir = await mkdtemp(path.join(tmpdir(), 'tollgate-bench-files-'));
  return {
    config: {
      ...config,
      ...(relative(config.usageLog) ? { usageLog: path.join(dir, config.usageLog) } : {}),
      ...(log && relative(log.destination) ? { log: { ...log, destination: path.join(dir, log.destination) } } : {}),
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * The example proxy's pieces: this tree's gateway sources (through tsx, as `pnpm start` runs them), or, with
 * `options.tree`, the built gateway of that checkout by its main door, which has no `createStores`: there the app
 * makes its memory stores itself (and closes them), and Redis is refused rather than set up some other way.
 */
async function proxyParts(options: AppOptions) {
  if (options.tree === undefined) {
    const [{ createGatewayApp }, { validateConfig }, { createStores }] = await Promise.all([
      import('../../packages/gateway/src/app.js'),
      import('../../packages/gateway/src/config/index.js'),
      import('../../packages/gateway/src/stores.js'),
    ]);
    return { createGatewayApp, validateConfig, createStores };
  }
  if (options.store === 'redis')
    throw new Error('the proxy of another checkout (options.tree) runs on memory stores only');
  const { createGatewayApp, validateConfig } = await tollgatePackage(
    'gateway',
    options,
    () => import('@tollgate/gateway'),
  );
  return { createGatewayApp, validateConfig, createStores: undefined };
}

export async function buildMockUpstream(): Promise<BuiltApp> {
  return buildBenchUpstream();
}

/** What a user would write without tollgate: parse, forward with undici, pipe the answer back. */
export async function buildPassthrough(options: AppOptions): Promise<BuiltApp> {
  const upstream = String(options.upstream);
  const dispatcher = new Agent({ keepAliveTimeout: 30_000, connections: 128 });
  const app = baseApp();
  app.post(CHAT_PATH, function forwardToUpstream(req: Request, res: Response, next: NextFunction) {
    const body = req.body as Record<string, unknown>;
    const forwarded = body.stream === true ? { ...body, stream_options: { include_usage: true } } : body;
    request(`${upstream}${CHAT_PATH}`, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/json', authorization: 'Bearer upstream-bench-key' },
      body: JSON.stringify(forwarded),
    })
      .then(async (answer) => {
        res.status(answer.statusCode);
        const type = answer.headers['content-type'];
        if (typeof type === 'string') res.setHeader('content-type', type);
        if (body.stream === true) res.flushHeaders();
        await pipeline(answer.body, res);
      })
      .catch((error: unknown) => {
        // The load generator hangs up mid-answer when a round ends: not an error worth a log line.
        if (res.destroyed || res.headersSent) res.destroy();
        else next(error);
      });
  });
  return { app, close: async () => void (await dispatcher.close()) };
}

/**
 * The floor under the passthrough: the same work on node:http alone, no Express (read and parse the JSON body,
 * ask for usage on streams, forward with undici, pipe the answer back), so the figures show what Express costs.
 */
export async function buildNodeFloor(options: AppOptions): Promise<BuiltApp<RequestListener>> {
  const upstream = `${String(options.upstream)}${CHAT_PATH}`;
  const dispatcher = new Agent({ keepAliveTimeout: 30_000, connections: 128 });
  async function forwardToUpstream(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    } catch {
      res.writeHead(400).end();
      return;
    }
    const forwarded = body.stream === true ? { ...body, stream_options: { include_usage: true } } : body;
    const answer = await request(upstream, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/json', authorization: 'Bearer upstream-bench-key' },
      body: JSON.stringify(forwarded),
    });
    res.statusCode = answer.statusCode;
    const type = answer.headers['content-type'];
    if (typeof type === 'string') res.setHeader('content-type', type);
    if (body.stream === true) res.flushHeaders();
    await pipeline(answer.body, res);
  }
  const app: RequestListener = function serveNodeFloor(req, res) {
    if (req.method !== 'POST' || req.url !== CHAT_PATH) {
      res.writeHead(404).end();
      return;
    }
    forwardToUpstream(req, res).catch(() => {
      // As the passthrough: a client gone mid-answer is no error worth a line; anything else is a 500 (Express's default).
      if (res.destroyed || res.headersSent) res.destroy();
      else res.writeHead(500).end();
    });
  };
  return { app, close: async () => void (await dispatcher.close()) };
}
