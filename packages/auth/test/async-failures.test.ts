// Code run after an async lookup that throws: the request gets Express's error chain instead of hanging on an unhandled rejection.
import { describe, it, expect } from '@jest/globals';
import express from 'express';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import request from 'supertest';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { ErrorRenderer } from '@tollgate/core';
import { createMemoryStores } from '@tollgate/core';
import { apiKeyAuth, bearerAuth, generateApiKey, jwtAuth } from '../src/index.js';
import { makeKey } from './helpers.js';

/** A renderer that fails, e.g. a user's logger inside it throws. */
const throwingRenderer: ErrorRenderer = () => {
  throw new Error('renderer failed');
};

function appWith(middleware: RequestHandler) {
  const app = express();
  app.use(middleware);
  app.all('/{*path}', (_req, res) => void res.json({ ok: true }));
  const onError: ErrorRequestHandler = (error: Error, _req, res, _next) =>
    void res.status(500).json({ caught: error.message });
  app.use(onError);
  return app;
}

describe('a renderError that throws after an async lookup', () => {
  const stores = createMemoryStores({ sweepIntervalMs: 0, keys: [makeKey({ disabled: true }).record] });

  it('reaches the error handler from apiKeyAuth (unknown key)', async () => {
    const app = appWith(apiKeyAuth({ keys: stores.keys, renderError: throwingRenderer }));
    const res = await request(app).get('/x').set('x-api-key', generateApiKey()).timeout(3000);
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ caught: 'renderer failed' });
  });

  it('reaches the error handler from bearerAuth (unknown key)', async () => {
    const app = appWith(bearerAuth({ keys: stores.keys, renderError: throwingRenderer }));
    const res = await request(app).get('/x').set('Authorization', `Bearer ${generateApiKey()}`).timeout(3000);
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ caught: 'renderer failed' });
  });

  it('reaches the error handler from jwtAuth (expired token)', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256' };
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'k' })
      .setSubject('u')
      .setIssuer('i')
      .setAudience('a')
      .setExpirationTime(1)
      .sign(privateKey);
    const app = appWith(jwtAuth({ jwks: { keys: [jwk] }, issuer: 'i', audience: 'a', renderError: throwingRenderer }));
    const res = await request(app).get('/x').set('Authorization', `Bearer ${token}`).timeout(3000);
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ caught: 'renderer failed' });
  });
});

describe('default warnings while the key store or the JWKS is down', () => {
  // One line per failed request would flood the logs during an outage (thousands a second).
  it('are emitted at most once in a while, not once per request', async () => {
    const warnings: string[] = [];
    const emitWarning = process.emitWarning;
    process.emitWarning = ((warning: string | Error) =>
      void warnings.push(String(warning))) as typeof process.emitWarning;
    try {
      const failing = appWith(apiKeyAuth({ keys: async () => Promise.reject(new Error('down')) }));
      const jwtDown = appWith(jwtAuth({ jwksUrl: 'http://127.0.0.1:1/jwks.json', issuer: 'i', audience: 'a' }));
      const token = `${Buffer.from('{"alg":"RS256","kid":"k"}').toString('base64url')}.${Buffer.from('{"sub":"u"}').toString('base64url')}.c2ln`;
      for (let i = 0; i < 5; i++) {
        expect((await request(failing).get('/x').set('x-api-key', generateApiKey())).status).toBe(503);
        expect((await request(jwtDown).get('/x').set('Authorization', `Bearer ${token}`)).status).toBe(503);
      }
      expect(warnings.filter((message) => message.includes('key store failed'))).toHaveLength(1);
      expect(warnings.filter((message) => message.includes('JWKS could not be fetched'))).toHaveLength(1);
    } finally {
      process.emitWarning = emitWarning;
    }
  });
});
