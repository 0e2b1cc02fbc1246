// The peer stack: the example proxy's job on Redis as a user would assemble it from well-known libraries.
//
// passport + passport-http-bearer (the key, hashed, looked up in a Map) -> express-rate-limit + rate-limit-redis
// (requests per key) -> rate-limiter-flexible (tokens per tenant; budget per tenant and global, in micro-dollars),
// the prompt counted with gpt-tokenizer -> undici to the upstream, the answer piped back -> the usage read from the
// answer, and the token and budget reservations adjusted to it. One node-redis client for every limiter.
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import type { NextFunction, Request, Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import passport from 'passport';
import { Strategy as BearerStrategy } from 'passport-http-bearer';
import { RedisStore } from 'rate-limit-redis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { createClient } from 'redis';
import { Agent, request } from 'undici';
import { baseApp, type AppOptions, type BuiltApp } from './app-base.js';
import { DEPLOYMENT, deploymentKey, deploymentTenant } from './deployment-config.js';
import { CHAT_PATH, REDIS_URL } from './fixtures.js';

/** Who a key belongs to. */
interface Caller {
  keyId: string;
  tenant: string;
}

interface ModelPrice {
  inputPerMTok: number;
  outputPerMTok: number;
  /** The cap when a request sets none. */
  maxOutputTokens: number;
}

/** List prices in USD per million tokens, as a user copies them from the provider's pricing page. */
const PRICES: Record<string, ModelPrice> = {
  'gpt-4o-mini': { inputPerMTok: 0.15, outputPerMTok: 0.6, maxOutputTokens: 16_384 },
};

interface ChatMessage {
  role: string;
  content: unknown;
  name?: string;
}

interface ChatRequest {
  model?: string;
  messages?: ChatMessage[];
  max_tokens?: number;
  max_completion_tokens?: number;
  stream?: boolean;
  stream_options?: Record<string, unknown>;
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

/** What a request holds of the token limit and the budgets until its answer says what it used. */
interface Reservation {
  tenant: string;
  price: ModelPrice;
  tokens: number;
  microUsd: number;
}

const GLOBAL_BUDGET_KEY = 'all';

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The prompt's tokens as OpenAI's cookbook counts them (num_tokens_from_messages): 3 per message, 1 per name, 3 for the reply. */
function promptTokens(messages: ChatMessage[]): number {
  let tokens = 3;
  for (const message of messages) {
    const content = typeof message.content === 'string' ? message.content : JSON.stringify(message.content ?? '');
    tokens += 3 + countTokens(message.role) + countTokens(content);
    if (message.name !== undefined) tokens += 1 + countTokens(message.name);
  }
  return tokens;
}

/** USD per million tokens is micro-dollars per token; rate-limiter-flexible counts whole points. */
function costMicroUsd(price: ModelPrice, inputTokens: number, outputTokens: number): number {
  return Math.ceil(inputTokens * price.inputPerMTok + outputTokens * price.outputPerMTok);
}

/** Passes an SSE stream on as it comes and keeps the usage of the chunk that carries it (the last, with include_usage). */
class SseUsageTap extends Transform {
  usage: Usage | undefined;
  readonly #decoder = new StringDecoder('utf8');
  #partial = '';

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const text = this.#partial + this.#decoder.write(chunk);
    let start = 0;
    for (let end = text.indexOf('\n\n'); end !== -1; end = text.indexOf('\n\n', start)) {
      this.#readEvent(text.slice(start, end));
      start = end + 2;
    }
    this.#partial = text.slice(start);
    callback(null, chunk);
  }

  #readEvent(event: string): void {
    // Only a chunk that mentions usage is parsed (OpenAI's others say "usage":null, or nothing).
    if (!event.includes('"usage"')) return;
    let data = '';
    for (const line of event.split('\n')) if (line.startsWith('data:')) data += line.slice(5).trim();
    if (data === '' || data === '[DONE]') return;
    const parsed = JSON.parse(data) as { usage?: Usage | null };
    if (parsed.usage) this.usage = parsed.usage;
  }
}

export async function buildPeerStack(options: AppOptions): Promise<BuiltApp> {
  const upstream = `${String(options.upstream)}${CHAT_PATH}`;
  const prefix = String(options.prefix ?? 'peer:');
  const client = createClient({ url: String(options.redisUrl ?? REDIS_URL) });
  client.on('error', (error: Error) => console.error(`peer stack redis client: ${error.message}`));
  await client.connect();
  const dispatcher = new Agent({ keepAliveTimeout: 30_000, connections: 128 });

  const keys = new Map<string, Caller>();
  for (let index = 0; index < DEPLOYMENT.tenants; index++) {
    const tenant = deploymentTenant(index);
    keys.set(sha256(deploymentKey(index)), { keyId: `key-${tenant}`, tenant });
  }
  passport.use(
    new BearerStrategy(function findKey(token, done) {
      done(null, keys.get(sha256(token)) ?? false);
    }),
  );
  const authenticate = passport.authenticate('bearer', { session: false });

  const limitRequests = rateLimit({
    windowMs: 60_000,
    limit: DEPLOYMENT.requestsPerMinute,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    keyGenerator: (req) => (req.user as Caller).keyId,
    store: new RedisStore({ sendCommand: (...args: string[]) => client.sendCommand(args), prefix: `${prefix}rl:` }),
  });
  const limiter = (name: string, points: number, duration: number) =>
    new RateLimiterRedis({
      storeClient: client,
      useRedisPackage: true,
      keyPrefix: `${prefix}${name}`,
      points,
      duration,
    });
  const tokenLimit = limiter('tokens', DEPLOYMENT.tokensPerMinute, 60);
  const tenantBudget = limiter('budget', DEPLOYMENT.tenantBudgetUsdPerDay * 1_000_000, 86_400);
  const globalBudget = limiter('global-budget', DEPLOYMENT.globalBudgetUsdPerDay * 1_000_000, 86_400);
  /** The limiter, key and points of each part of a reservation. */
  const parts = (reservation: Reservation) =>
    [
      [tokenLimit, reservation.tenant, reservation.tokens],
      [tenantBudget, reservation.tenant, reservation.microUsd],
      [globalBudget, GLOBAL_BUDGET_KEY, reservation.microUsd],
    ] as const;

  const warnOnFailure = (error: unknown) =>
    console.error(`peer stack: an adjustment failed: ${error instanceof Error ? error.message : String(error)}`);
  function adjust(limit: RateLimiterRedis, key: string, delta: number): void {
    if (delta < 0) limit.reward(key, -delta).catch(warnOnFailure);
    else if (delta > 0) limit.penalty(key, delta).catch(warnOnFailure);
  }
  /** Gives a whole reservation back (the call failed, or another part refused it). */
  function release(reservation: Reservation): void {
    for (const [limit, key, points] of parts(reservation)) adjust(limit, key, -points);
  }
  /** Turns the reservation into what the answer used; without usage the estimate (an upper bound) stands. */
  function settle(reservation: Reservation, usage: Usage | undefined): void {
    if (!usage) return;
    const tokens = usage.prompt_tokens + usage.completion_tokens;
    const spent = costMicroUsd(reservation.price, usage.prompt_tokens, usage.completion_tokens);
    adjust(tokenLimit, reservation.tenant, tokens - reservation.tokens);
    adjust(tenantBudget, reservation.tenant, spent - reservation.microUsd);
    adjust(globalBudget, GLOBAL_BUDGET_KEY, spent - reservation.microUsd);
  }

  function reserveTokensAndBudget(req: Request, res: Response, next: NextFunction): void {
    const body = req.body as ChatRequest;
    const price = body.model === undefined ? undefined : PRICES[body.model];
    if (!price || !Array.isArray(body.messages)) {
      res
        .status(400)
        .json({ error: { message: 'a known model and messages are required', type: 'invalid_request_error' } });
      return;
    }
    const inputTokens = promptTokens(body.messages);
    const outputTokens = body.max_completion_tokens ?? body.max_tokens ?? price.maxOutputTokens;
    const reservation: Reservation = {
      tenant: (req.user as Caller).tenant,
      price,
      tokens: inputTokens + outputTokens,
      microUsd: costMicroUsd(price, inputTokens, outputTokens),
    };
    Promise.allSettled(parts(reservation).map(([limit, key, points]) => limit.consume(key, points))).then((taken) => {
      const refusal = taken.find((result) => result.status === 'rejected');
      if (!refusal) {
        res.locals.reservation = reservation;
        next();
        return;
      }
      // rate-limiter-flexible counts a refused consume too: every part that counted goes back.
      parts(reservation).forEach(([limit, key, points], i) => {
        const result = taken[i]!;
        if (result.status === 'fulfilled' || result.reason instanceof RateLimiterRes) adjust(limit, key, -points);
      });
      if (!(refusal.reason instanceof RateLimiterRes)) {
        next(refusal.reason);
        return;
      }
      const message = refusal === taken[0] ? 'token rate limit reached' : 'budget spent';
      res.status(429).json({ error: { message, type: 'rate_limit_error' } });
    }, next);
  }

  async function relay(req: Request, res: Response): Promise<void> {
    const body = req.body as ChatRequest;
    const reservation = res.locals.reservation as Reservation;
    const streamed = body.stream === true;
    const forwarded = streamed ? { ...body, stream_options: { ...body.stream_options, include_usage: true } } : body;
    let answer: Awaited<ReturnType<typeof request>>;
    try {
      answer = await request(upstream, {
        method: 'POST',
        dispatcher,
        headers: { 'content-type': 'application/json', authorization: 'Bearer upstream-bench-key' },
        body: JSON.stringify(forwarded),
      });
    } catch (error) {
      release(reservation);
      throw error;
    }
    res.status(answer.statusCode);
    const type = answer.headers['content-type'];
    if (typeof type === 'string') res.setHeader('content-type', type);
    if (answer.statusCode >= 300) {
      release(reservation);
      await pipeline(answer.body, res);
      return;
    }
    if (streamed) {
      res.flushHeaders();
      const tap = new SseUsageTap();
      try {
        await pipeline(answer.body, tap, res);
      } finally {
        settle(reservation, tap.usage);
      }
      return;
    }
    const text = await answer.body.text();
    res.end(text);
    settle(reservation, (JSON.parse(text) as { usage?: Usage }).usage);
  }

  const app = baseApp();
  app.post(
    CHAT_PATH,
    authenticate,
    limitRequests,
    reserveTokensAndBudget,
    function forwardToUpstream(req: Request, res: Response, next: NextFunction) {
      relay(req, res).catch((error: unknown) => {
        // The load generator hangs up mid-answer when a round ends: not an error worth a log line.
        if (res.destroyed || res.headersSent) res.destroy();
        else next(error);
      });
    },
  );
  return {
    app,
    close: async () => {
      await dispatcher.close();
      await client.quit();
    },
  };
}
