// Test apps: identity from test headers (auth is another package), our middleware, a JSON handler, core's error renderer.
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { apiErrorHandler, getContext } from '@tollgate/core';

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

/** A promise with its resolve exposed. */
export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
