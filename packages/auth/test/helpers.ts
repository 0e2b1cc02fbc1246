// Test helpers: a real Express app around the middleware under test, answering with the identity it was given.
import express from 'express';
import type { Express, RequestHandler } from 'express';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { apiErrorHandler, getContext } from '@tollgate/core';
import { generateApiKey, hashApiKey } from '../src/index.js';

/** An app that runs `middleware` then echoes `req.tollgate.identity` as JSON. */
export function createServer(...middleware: RequestHandler[]): Express {
  const app = express();
  app.use(express.json());
  app.use(...middleware);
  app.all('/{*path}', (req, res) => {
    res.json({ identity: getContext(req, res).identity ?? null });
  });
  app.use(apiErrorHandler());
  return app;
}

/** A fresh key and its record. */
export function makeKey(overrides: Partial<ApiKeyRecord> = {}): { key: string; record: ApiKeyRecord } {
  const key = generateApiKey();
  return {
    key,
    record: {
      id: `key-${hashApiKey(key).slice(0, 8)}`,
      sha256: hashApiKey(key),
      tenantId: 'acme',
      userId: 'alice',
      tier: 'pro',
      scopes: ['chat'],
      createdAt: new Date().toISOString(),
      ...overrides,
    },
  };
}
