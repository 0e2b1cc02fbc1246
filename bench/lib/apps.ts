// The apps a bench child can serve: bare Express, the peers, tollgate's chain, the proxy, its passthrough rivals and the peer stack.
import type { RequestListener } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import { RedisStore } from 'rate-limit-redis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { createClient } from 'redis';
import { answerAtOnce, baseApp, type AppOptions, type BuiltApp } from './app-base.js';
import { CHAT_PATH, REDIS_URL } from './fixtures.js';
import {
  buildTollgateChain,
  buildProxy,
  buildMockUpstream,
  buildNodeFloor,
  buildPassthrough,
} from './tollgate-apps.js';

/** The same key every side limits on: the bearer token, as a user keying by API key would. */
function callerKey(req: Request): string {
  return req.headers.authorization ?? 'anonymous';
}

async function connectRedis(url: string) {
  const client = createClient({ url });
  client.on('error', (error: Error) => console.error(`bench redis client: ${error.message}`));
  await client.connect();
  return client;
}

/** Effectively unlimited: the bench measures the cost of checking, never a refusal. */
const HUGE = 1_000_000_000;

async function bare(): Promise<BuiltApp> {
  const app = baseApp();
  app.post(CHAT_PATH, answerAtOnce);
  return { app, close: async () => {} };
}

async function expressRateLimitRedis(options: AppOptions): Promise<BuiltApp> {
  const client = await connectRedis(String(options.redisUrl ?? REDIS_URL));
  const app = baseApp();
  app.use(
    rateLimit({
      windowMs: 60_000,
      limit: HUGE,
      standardHeaders: 'draft-8',
      legacyHeaders: false,
      keyGenerator: callerKey,
      store: new RedisStore({
        sendCommand: (...args: string[]) => client.sendCommand(args),
        prefix: `${String(options.prefix)}erl:`,
      }),
    }),
  );
  app.post(CHAT_PATH, answerAtOnce);
  return { app, close: async () => void (await client.quit()) };
}

async function rateLimiterFlexibleRedis(options: AppOptions): Promise<BuiltApp> {
  const client = await connectRedis(String(options.redisUrl ?? REDIS_URL));
  const limiter = new RateLimiterRedis({
    storeClient: client,
    useRedisPackage: true,
    keyPrefix: `${String(options.prefix)}rlf`,
    points: HUGE,
    duration: 60,
  });
  const app = baseApp();
  app.use(function limitWithRateLimiterFlexible(req: Request, res: Response, next: NextFunction) {
    limiter.consume(callerKey(req)).then(
      () => next(),
      (rejection: unknown) => {
        if (rejection instanceof Error) next(rejection);
        else
          res.status(429).json({ error: { message: 'rate limited', type: 'rate_limit', code: 'rate_limit_exceeded' } });
      },
    );
  });
  app.post(CHAT_PATH, answerAtOnce);
  return { app, close: async () => void (await client.quit()) };
}

export const APP_BUILDERS: Record<string, (options: AppOptions) => Promise<BuiltApp<RequestListener>>> = {
  bare,
  'express-rate-limit-redis': expressRateLimitRedis,
  'rate-limiter-flexible-redis': rateLimiterFlexibleRedis,
  'tollgate-chain': buildTollgateChain,
  'mock-upstream': buildMockUpstream,
  passthrough: buildPassthrough,
  'node-floor': buildNodeFloor,
  proxy: buildProxy,
  // Loaded only in its own child: gpt-tokenizer's ranks and passport stay out of every other app's memory.
  'peer-stack': async (options) => (await import('./peer-stack.js')).buildPeerStack(options),
  'guard-chain': async (options) => (await import('./guard-chain.js')).buildGuardChain(options),
};

export async function buildApp(name: string, options: AppOptions = {}): Promise<BuiltApp<RequestListener>> {
  const builder = APP_BUILDERS[name];
  if (!builder) throw new Error(`unknown bench app "${name}"`);
  return builder(options);
}
