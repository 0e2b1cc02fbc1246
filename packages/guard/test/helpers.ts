// Test helpers: real Redis under a unique key prefix (never flushed), an app with the guard mounted, a webhook receiver.
import { randomUUID } from 'node:crypto';
import { createClient } from 'redis';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import type { NextFunction, Request, Response } from 'express';
import { ApiError, apiErrorHandler, getContext, renderApiError, type UsageRecord } from '@tollgate/core';
import { shadowMode, type ShadowRule } from '@tollgate/core/checks';
import { bodyAfterAuth, type Guard } from '@tollgate/guard';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export const uniquePrefix = () => `tg-test:${randomUUID()}:`;

/** Deletes every key under `prefix` (SCAN + UNLINK on that prefix only). */
export async function deleteKeys(prefix: string): Promise<void> {
  const client = createClient({ url: REDIS_URL });
  client.on('error', () => undefined);
  await client.connect();
  try {
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 }))
      if (keys.length > 0) await client.unlink(keys);
  } finally {
    await client.close();
  }
}

let usageSequence = 0;
/** The usage record of one gpt-4o call by `keyId` (tenant acme) costing `costNanoUsd`, as the meter hands it on. */
export function usage(keyId: string, costNanoUsd: number): UsageRecord {
  return {
    id: `r${usageSequence++}`,
    requestId: 'x',
    timestamp: new Date().toISOString(),
    keyId,
    tenantId: 'acme',
    userId: null,
    feature: null,
    route: '/v1/chat',
    provider: 'openai',
    model: 'gpt-4o',
    requestedModel: 'gpt-4o',
    inputTokens: 100,
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: 50,
    reasoningTokens: 0,
    costNanoUsd,
    estimatedCostNanoUsd: costNanoUsd,
    status: 200,
    stream: false,
    aborted: false,
    latencyMs: 5,
    usageSource: 'provider',
  };
}

/** Retries `attempt` until it passes or `withinMs` runs out. */
export async function eventually<T>(attempt: () => Promise<T> | T, withinMs = 10_000): Promise<T> {
  const until = Date.now() + withinMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

/** Stands in for any auth middleware: `Bearer <key id>` of a known key identifies it, anything else is a 401. */
export function fakeAuth(keys: Record<string, { tenantId?: string }>) {
  return function fakeAuthMiddleware(req: Request, res: Response, next: NextFunction) {
    const id = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    const known = id !== undefined ? keys[id] : undefined;
    if (!id || !known) return renderApiError(new ApiError('invalid_api_key', 'Invalid API key.'), req, res);
    getContext(req, res).identity = {
      keyId: id,
      scopes: [],
      authMethod: 'api_key',
      ...(known.tenantId ? { tenantId: known.tenantId } : {}),
    };
    next();
  };
}

/** The guard in front of a route as the README mounts it: failures before auth, suspensions right after, body after that. */
export function guardedApp(
  guard: Guard,
  keys: Record<string, { tenantId?: string }>,
  options: { trustProxy?: boolean | string; shadow?: ShadowRule } = {},
): Express {
  const app = express();
  app.set('trust proxy', options.trustProxy ?? false);
  if (options.shadow) app.use(shadowMode(options.shadow));
  const auth = fakeAuth(keys);
  app.post(
    '/v1/chat',
    guard.authFailures,
    auth,
    guard.suspensions,
    bodyAfterAuth(express.json()),
    guard.repeatedRequests,
    (req, res) => {
      res.json({ ok: true, key: req.tollgate.identity?.keyId, shadowRefusal: req.tollgate.shadowRefusal ?? null });
    },
  );
  app.get('/scale', guard.authFailures, auth, (req, res) => {
    res.json({ scale: guard.limitScale(req.tollgate.identity) });
  });
  app.use(apiErrorHandler());
  return app;
}

/** A webhook receiver on a free port: keeps every delivery; `fail(n)` answers 500 to the next n. */
export async function webhookReceiver() {
  const received: { headers: IncomingMessage['headers']; body: string }[] = [];
  let failures = 0;
  let attempts = 0;
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      attempts++;
      if (failures > 0) {
        failures--;
        res.statusCode = 500;
        return res.end('not now');
      }
      received.push({ headers: req.headers, body });
      res.end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    get attempts() {
      return attempts;
    },
    fail(count: number) {
      failures = count;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
