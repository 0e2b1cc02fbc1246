// Test apps: identity from test headers (auth is another package), our middleware, a JSON handler, core's error renderer.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { randomUUID } from 'node:crypto';
import { apiErrorHandler, getContext, type UsageRecord } from '@tollgate/core';

/** Sets `req.tollgate.identity` from `x-key`, `x-tier`, `x-tenant`, `x-user`; no `x-key` = anonymous. */
export function testIdentity(): RequestHandler {
  return function testIdentityMiddleware(req, res, next) {
    const keyId = req.header('x-key');
    if (keyId) {
      getContext(req, res).identity = {
        keyId,
        tier: req.header('x-tier') || undefined,
        tenantId: req.header('x-tenant') || undefined,
        userId: req.header('x-user') || undefined,
        scopes: [],
        authMethod: 'api_key',
      };
    }
    next();
  };
}

/** Declares the estimate a token limit reserves: `x-tokens` tokens (100 without it). */
export const estimateFromHeader: RequestHandler = (req, res, next) => {
  const tokens = Number(req.header('x-tokens') ?? 100);
  getContext(req, res).estimate = {
    provider: 'openai',
    model: 'm',
    inputTokens: tokens,
    maxOutputTokens: 0,
    costNanoUsd: 0,
    totalTokens: tokens,
  };
  next();
};

export type Handler = (req: Request, res: Response) => void | Promise<void>;

const ok: Handler = (req, res) => {
  res.json({ ok: true, body: req.body as unknown });
};

/** express.json → test identity → `middleware` → `handler` (JSON 200 by default) on every path. */
export function testApp(middleware: RequestHandler | RequestHandler[], handler: Handler = ok): express.Express {
  const app = express();
  app.use(express.json());
  app.use(testIdentity());
  app.use(middleware);
  app.all('/{*path}', (req, res, next) => {
    Promise.resolve(handler(req, res)).catch(next);
  });
  app.use(apiErrorHandler());
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ bug: error instanceof Error ? error.message : String(error) });
  });
  return app;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits on real turns of the event loop (for real I/O while jest's clock holds the timers) until `done()`. */
export async function turnsUntil(done: () => boolean, what: string): Promise<void> {
  const until = performance.now() + 5_000;
  while (!done()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** A promise with its resolve exposed. */
export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A handler that holds each request until the test lets it go, and tells when it entered and when its response closed. */
export function holdingHandler() {
  const entered: string[] = [];
  const gates = new Map<string, () => void>();
  const closed = new Map<string, Promise<void>>();
  let onEnter: (() => void) | undefined;
  const handler: Handler = async (req, res) => {
    const name = req.header('x-name') ?? '?';
    entered.push(name);
    const gone = deferred();
    closed.set(name, gone.promise);
    res.once('close', () => gone.resolve());
    onEnter?.();
    if (req.header('x-hold') === undefined) {
      res.json({ name });
      return;
    }
    await new Promise<void>((resolve) => gates.set(name, resolve));
    if (req.header('x-fail') !== undefined) throw new Error('handler failed');
    if (!res.destroyed) res.json({ name });
  };
  return {
    handler,
    entered,
    release: (name: string) => gates.get(name)?.(),
    closed: (name: string) => closed.get(name)!,
    /** Resolves once `count` requests in total have entered the handler. */
    async untilEntered(count: number) {
      while (entered.length < count) await new Promise<void>((resolve) => (onEnter = resolve));
    },
  };
}
export async function listen(app: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}
/** A real client request; `abort()` destroys its socket mid-flight. */
export function send(port: number, headers: Record<string, string>) {
  const req = http.request({
    host: '127.0.0.1',
    port,
    path: '/v1/chat/completions',
    method: 'GET',
    headers,
    agent: false,
  });
  const response = new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>(
    (resolve, reject) => {
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      });
      req.on('error', reject);
    },
  );
  response.catch(() => undefined);
  req.end();
  return { response, abort: () => req.destroy() };
}

/** A settled usage record with the given real token counts. */
export function usageRecord(inputTokens: number, outputTokens: number): UsageRecord {
  return {
    id: randomUUID(),
    requestId: randomUUID(),
    timestamp: new Date().toISOString(),
    keyId: null,
    tenantId: null,
    userId: null,
    feature: null,
    route: '/v1/chat/completions',
    provider: 'openai',
    model: 'gpt-4o-mini',
    requestedModel: 'gpt-4o-mini',
    inputTokens,
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens,
    reasoningTokens: 0,
    costNanoUsd: 0,
    estimatedCostNanoUsd: 0,
    status: 200,
    stream: false,
    aborted: false,
    latencyMs: 1,
    usageSource: 'provider',
  };
}
