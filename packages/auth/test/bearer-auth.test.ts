// bearerAuth / createBearerStrategy: passport-http-bearer over the key store, JSON 401s, header-only tokens.
import { describe, it, expect } from '@jest/globals';
import express from 'express';
import passport from 'passport';
import request from 'supertest';
import { apiErrorHandler, createMemoryStores, getContext } from '@tollgate/core';
import type { Identity } from '@tollgate/core';
import { bearerAuth, createBearerStrategy, generateApiKey } from '../src/index.js';
import { BEARER_STRATEGY_NAME } from '../src/bearer-auth.js';
import { createServer, makeKey } from './helpers.js';

describe('bearerAuth', () => {
  const good = makeKey();
  const revoked = makeKey({ disabled: true });
  const stores = createMemoryStores({ sweepIntervalMs: 0, keys: [good.record, revoked.record] });
  const app = createServer(bearerAuth({ keys: stores.keys }));

  it('accepts a good key and sets req.tollgate.identity with authMethod bearer', async () => {
    const res = await request(app).post('/v1/chat/completions').set('Authorization', `Bearer ${good.key}`).send({});
    expect(res.status).toBe(200);
    expect(res.body.identity).toEqual({
      keyId: good.record.id,
      tenantId: 'acme',
      userId: 'alice',
      tier: 'pro',
      scopes: ['chat'],
      authMethod: 'bearer',
    });
  });

  it('answers failures with tollgate JSON, not passport plain text', async () => {
    const missing = await request(app).get('/x');
    expect(missing.status).toBe(401);
    expect(missing.headers['content-type']).toMatch(/application\/json/);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="tollgate"');
    expect(missing.body.error.code).toBe('invalid_api_key');

    for (const authorization of [`Bearer ${generateApiKey()}`, `Bearer ${revoked.key}`, 'Bearer a b', 'Bearer nope']) {
      const res = await request(app).get('/x').set('Authorization', authorization);
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="tollgate", error="invalid_token"');
      expect(res.body.error.code).toBe('invalid_api_key');
    }
    expect((await request(app).get('/x').set('Authorization', `Bearer ${revoked.key}`)).body.error.message).toMatch(
      /revoked/,
    );
  });

  it('ignores tokens in the query string or body: only the Authorization header counts', async () => {
    const query = await request(app).get(`/x?access_token=${good.key}`);
    expect(query.status).toBe(401);
    const body = await request(app).post('/x').send({ access_token: good.key });
    expect(body.status).toBe(401);
  });

  it('answers 503 when the store fails', async () => {
    const failing = createServer(
      bearerAuth({ keys: () => Promise.reject(new Error('down')), onStoreError: () => undefined }),
    );
    const res = await request(failing).get('/x').set('Authorization', `Bearer ${good.key}`);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('service_unavailable');
  });

  it('createBearerStrategy plugs into an app\'s own passport with passport.authenticate("tollgate-bearer")', async () => {
    const authenticator = new passport.Passport();
    authenticator.use(createBearerStrategy({ keys: [good.record] }));
    const own = express();
    own.use(authenticator.initialize());
    own.get('/me', authenticator.authenticate(BEARER_STRATEGY_NAME, { session: false }), (req, res) => {
      res.json({ user: req.user as Identity });
    });
    const ok = await request(own).get('/me').set('Authorization', `Bearer ${good.key}`);
    expect(ok.status).toBe(200);
    expect(ok.body.user).toMatchObject({ keyId: good.record.id, authMethod: 'bearer' });
    // Plain passport answers with its own 401 and the strategy's RFC 6750 challenge.
    const denied = await request(own).get('/me').set('Authorization', `Bearer ${generateApiKey()}`);
    expect(denied.status).toBe(401);
    expect(denied.headers['www-authenticate']).toMatch(/^Bearer realm="tollgate", error="invalid_token"/);
  });

  it('bearerAuth can register on a given passport instance and set req.user', async () => {
    const authenticator = new passport.Passport();
    const local = express();
    local.use(bearerAuth({ keys: [good.record], passport: authenticator }));
    local.get('/x', (req, res) => {
      res.json({ same: req.user === getContext(req, res).identity });
    });
    local.use(apiErrorHandler());
    expect((await request(local).get('/x').set('Authorization', `Bearer ${good.key}`)).body).toEqual({ same: true });
    expect(() => bearerAuth({ keys: [], pasport: authenticator } as never)).toThrow(/did you mean "passport"/);
  });
});
