// createProxyApp: the OpenAI/Anthropic-compatible proxy as an express app, built from a validated config.
import express from 'express';
import type { Express, NextFunction, Request, Response } from 'express';
import helmet from 'helmet';
import { ApiError, apiErrorHandler, createMemoryStores, renderApiError, requestContext, withTimeout } from '@tollgate/core';
import type { ProviderApi, TollgateStores } from '@tollgate/core';
import { adminKeyAuth } from './admin-auth.js';
import type { ProxyConfig } from './config.js';
import { createMockProvider } from './mock-provider.js';
import type { MockProvider } from './mock-provider.js';
import { createProviderRouter } from './provider-routing.js';
import { validateProviderRequest } from './request-validation.js';

export interface ProxyDeps {
  /** Shared stores; the caller keeps ownership. @default in-memory stores owned (and closed) by the app */
  stores?: TollgateStores;
  /** The mock served when the config has no `upstreams`. @default a fresh createMockProvider() */
  mock?: MockProvider;
  /** Where upstream keys are read from. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Operator log lines (never secrets). @default console.error */
  log?: (line: string) => void;
}

export interface ProxyApp extends Express {
  /** The stores the app uses. */
  readonly stores: TollgateStores;
  /** Flushes sinks and releases what the app owns (stores it created, upstream connections, timers). */
  close(): Promise<void>;
}

const PROVIDER_ROUTES: readonly [string, ProviderApi][] = [
  ['/v1/chat/completions', 'openai.chat'],
  ['/v1/responses', 'openai.responses'],
  ['/v1/messages', 'anthropic.messages'],
];

export function createProxyApp(config: ProxyConfig, deps: ProxyDeps = {}): ProxyApp {
  const log = deps.log ?? ((line: string) => console.error(line));
  const ownsStores = deps.stores === undefined;
  const stores = deps.stores ?? createMemoryStores();
  const mock = config.upstreams ? undefined : (deps.mock ?? createMockProvider());
  const providers = createProviderRouter(config, { mock, env: deps.env });
  const closers: (() => Promise<void> | void)[] = [() => providers.close()];
  if (ownsStores) closers.push(() => stores.close());

  const app = express() as unknown as ProxyApp;
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(helmet());
  app.use(requestContext());
  app.use(express.json({ limit: config.bodyLimit ?? '1mb', type: ['application/json', 'application/*+json'] }));

  app.get('/healthz', async function reportHealth(_req: Request, res: Response) {
    // A tiny store round trip proves the store answers (on Redis: a real command, bounded in time).
    let storeOk = true;
    try {
      await withTimeout(stores.counter.peek('healthz', { windowMs: 1000 }), 1000, 'healthz');
    } catch {
      storeOk = false;
    }
    res.status(storeOk ? 200 : 503).json({ status: storeOk ? 'ok' : 'degraded', store: stores.kind, storeOk, upstreams: providers.names });
  });

  for (const [path, api] of PROVIDER_ROUTES) {
    app.post(path, validateProviderRequest(api), providers.handler(api));
  }

  if (config.adminKeySha256) {
    const admin = express.Router();
    admin.use(adminKeyAuth(config.adminKeySha256));
    app.use('/admin', admin);
  }

  app.use(function answerNotFound(req: Request, res: Response) {
    renderApiError(new ApiError('not_found', `No route ${req.method} ${req.path}.`), req, res);
  });
  app.use(apiErrorHandler());
  app.use(function answerUnexpectedError(error: unknown, req: Request, res: Response, _next: NextFunction) {
    log(`tollgate proxy: unexpected error on ${req.method} ${req.path}: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(500).json({ error: { message: 'Internal proxy error.', type: 'server_error', code: 'internal_error', param: null } });
  });

  Object.defineProperty(app, 'stores', { value: stores, enumerable: true });
  let closing: Promise<void> | undefined;
  app.close = () => {
    closing ??= (async () => {
      for (const close of closers.reverse()) await close();
    })();
    return closing;
  };
  return app;
}
