// apiKeyAuth over a real Express app: both headers, malformed input, expiry, revocation, rotation, optional, store failure.
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { describe, it, expect } from '@jest/globals';
import request from 'supertest';
import { createMemoryStores, getContext, TollgateError } from '@tollgate/core';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { apiKeyAuth, generateApiKey } from '../src/index.js';
import { createServer, makeKey } from './helpers.js';

describe('apiKeyAuth', () => {
  const good = makeKey({ feature: 'support-bot', models: ['gpt-4o-mini'] });
  const stores = createMemoryStores({ sweepIntervalMs: 0, keys: [good.record] });
  const app = createServer(apiKeyAuth({ keys: stores.keys }));

  it('accepts a good key from Authorization: Bearer and sets the identity', async () => {
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${good.key}`)
      .send({ model: 'x' });
    expect(res.status).toBe(200);
    expect(res.body.identity).toEqual({
      keyId: good.record.id,
      tenantId: 'acme',
      userId: 'alice',
      tier: 'pro',
      scopes: ['chat'],
      feature: 'support-bot',
      models: ['gpt-4o-mini'],
      authMethod: 'api_key',
    });
  });

  it('accepts the same key from x-api-key on any route, and both headers when they agree', async () => {
    const viaHeader = await request(app).post('/v1/messages').set('x-api-key', good.key).send({});
    expect(viaHeader.status).toBe(200);
    expect(viaHeader.body.identity.keyId).toBe(good.record.id);
    const both = await request(app)
      .get('/v1/models')
      .set('x-api-key', good.key)
      .set('Authorization', `Bearer ${good.key}`);
    expect(both.status).toBe(200);
    const lowercaseScheme = await request(app).get('/v1/models').set('Authorization', `bearer ${good.key}`);
    expect(lowercaseScheme.status).toBe(200);
  });

  it('answers a missing credential with 401 invalid_api_key and a bare Bearer challenge', async () => {
    const res = await request(app).post('/v1/chat/completions').send({});
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="tollgate"');
    expect(res.body).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', code: 'invalid_api_key', param: null },
    });
  });

  it('answers an unknown key with 401 and error="invalid_token", from either header', async () => {
    const other = generateApiKey();
    for (const res of [
      await request(app).get('/x').set('Authorization', `Bearer ${other}`),
      await request(app).get('/x').set('x-api-key', other),
    ]) {
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="tollgate", error="invalid_token"');
      expect(res.body.error.code).toBe('invalid_api_key');
    }
  });

  it.each([
    ['a Basic scheme', { Authorization: 'Basic YWxhZGRpbjpvcGVuc2VzYW1l' }],
    ['an empty Bearer', { Authorization: 'Bearer ' }],
    ['a Bearer with two tokens', { Authorization: `Bearer ${'tgk_'.padEnd(40, 'a')} extra` }],
    ['a bad character', { Authorization: 'Bearer tgk_abc!def' }],
    ['a key without the prefix', { 'x-api-key': 'a'.repeat(40) }],
    ['a too-short key', { 'x-api-key': 'tgk_short' }],
    ['two different keys', { 'x-api-key': generateApiKey(), Authorization: `Bearer ${generateApiKey()}` }],
    ['an oversized header', { Authorization: `Bearer tgk_${'a'.repeat(10_000)}` }],
  ])('refuses %s with 401 invalid_token', async (_name, headers) => {
    const res = await request(app)
      .get('/x')
      .set(headers as Record<string, string>);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('invalid_api_key');
    expect(res.headers['www-authenticate']).toBe('Bearer realm="tollgate", error="invalid_token"');
  });

  it('uses x-api-key when Authorization carries another scheme', async () => {
    const res = await request(app).get('/x').set('Authorization', 'Basic Zm9vOmJhcg==').set('x-api-key', good.key);
    expect(res.status).toBe(200);
  });

  it('refuses expired and disabled keys, and a key expiring later works', async () => {
    const expired = makeKey({ expiresAt: new Date(Date.now() - 1000).toISOString() });
    const disabled = makeKey({ disabled: true });
    const later = makeKey({ expiresAt: new Date(Date.now() + 3_600_000).toISOString() });
    const garbled = makeKey({ expiresAt: 'not a date' });
    const local = createServer(apiKeyAuth({ keys: [expired.record, disabled.record, later.record, garbled.record] }));
    const e = await request(local).get('/x').set('x-api-key', expired.key);
    expect(e.status).toBe(401);
    expect(e.body.error.message).toMatch(/expired/);
    const d = await request(local).get('/x').set('x-api-key', disabled.key);
    expect(d.status).toBe(401);
    expect(d.body.error.message).toMatch(/revoked/);
    expect((await request(local).get('/x').set('x-api-key', garbled.key)).status).toBe(401);
    expect((await request(local).get('/x').set('x-api-key', later.key)).status).toBe(200);
  });

  it('sees revocation, expiry and deletion in the store on the next request (no cache)', async () => {
    const memory = createMemoryStores({ sweepIntervalMs: 0 });
    const k = makeKey();
    await memory.keys.put(k.record);
    const local = createServer(apiKeyAuth({ keys: memory.keys }));
    expect((await request(local).get('/x').set('x-api-key', k.key)).status).toBe(200);
    await memory.keys.disable(k.record.id);
    expect((await request(local).get('/x').set('x-api-key', k.key)).status).toBe(401);
    await memory.keys.put({ ...k.record, disabled: false, expiresAt: new Date(Date.now() - 1).toISOString() });
    expect((await request(local).get('/x').set('x-api-key', k.key)).status).toBe(401);
    await memory.keys.put({ ...k.record, disabled: false });
    expect((await request(local).get('/x').set('x-api-key', k.key)).status).toBe(200);
    await memory.keys.delete(k.record.id);
    expect((await request(local).get('/x').set('x-api-key', k.key)).status).toBe(401);
  });

  it('rotation: several live keys for one principal, each identified by its own id', async () => {
    const first = makeKey({ id: 'acme-alice-1' });
    const second = makeKey({ id: 'acme-alice-2' });
    const memory = createMemoryStores({ sweepIntervalMs: 0, keys: [first.record, second.record] });
    const local = createServer(apiKeyAuth({ keys: memory.keys }));
    const a = await request(local).get('/x').set('x-api-key', first.key);
    const b = await request(local).get('/x').set('Authorization', `Bearer ${second.key}`);
    expect([a.body.identity.keyId, b.body.identity.keyId]).toEqual(['acme-alice-1', 'acme-alice-2']);
    expect(a.body.identity.userId).toBe(b.body.identity.userId);
    await memory.keys.disable('acme-alice-1');
    expect((await request(local).get('/x').set('x-api-key', first.key)).status).toBe(401);
    expect((await request(local).get('/x').set('x-api-key', second.key)).status).toBe(200);
  });

  it('takes a user lookup function, and re-checks the hash it returns in constant time', async () => {
    const k = makeKey();
    const wrong = makeKey();
    const seen: string[] = [];
    const lookup = async (sha256: string): Promise<ApiKeyRecord | undefined> => {
      seen.push(sha256);
      // A sloppy lookup that answers every hash with some record must not let anyone in.
      return sha256 === k.record.sha256 ? k.record : wrong.record;
    };
    const local = createServer(apiKeyAuth({ keys: lookup }));
    expect((await request(local).get('/x').set('x-api-key', k.key)).status).toBe(200);
    expect((await request(local).get('/x').set('x-api-key', generateApiKey())).status).toBe(401);
    expect(seen[0]).toBe(k.record.sha256);
  });

  it('optional: passes requests without a key as anonymous, still refuses bad keys', async () => {
    const local = createServer(apiKeyAuth({ keys: [good.record], optional: true }));
    const anonymous = await request(local).get('/x');
    expect(anonymous.status).toBe(200);
    expect(anonymous.body.identity).toEqual({ keyId: 'anonymous', scopes: [], authMethod: 'anonymous' });
    // A JWT's shape (its first segment a JSON header with "alg"), left for a later jwtAuth.
    const header = Buffer.from('{"alg":"RS256"}').toString('base64url');
    const jwtLike = await request(local).get('/x').set('Authorization', `Bearer ${header}.eyJzdWIiOi.c2ln`);
    expect(jwtLike.body.identity.authMethod).toBe('anonymous');
    expect((await request(local).get('/x').set('x-api-key', generateApiKey())).status).toBe(401);
    expect((await request(local).get('/x').set('Authorization', 'Bearer bad key')).status).toBe(401);
    expect((await request(local).get('/x').set('x-api-key', good.key)).body.identity.authMethod).toBe('api_key');
  });

  it('keyFormat null accepts operator-chosen keys; mapIdentity adjusts the identity', async () => {
    const { hashApiKey } = await import('../src/index.js');
    const adminKey = 'correct horse battery staple'.replace(/ /g, '-');
    const record: ApiKeyRecord = {
      id: 'admin',
      sha256: hashApiKey(adminKey),
      scopes: ['admin'],
      createdAt: new Date().toISOString(),
    };
    const local = createServer(
      apiKeyAuth({ keys: [record], keyFormat: null, mapIdentity: (identity) => ({ ...identity, tier: 'internal' }) }),
    );
    const res = await request(local).get('/admin').set('x-api-key', adminKey);
    expect(res.status).toBe(200);
    expect(res.body.identity).toMatchObject({ keyId: 'admin', tier: 'internal', scopes: ['admin'] });
  });

  it('skips when an earlier middleware already identified the caller', async () => {
    const local = createServer(apiKeyAuth({ keys: [good.record] }), apiKeyAuth({ keys: [] }));
    expect((await request(local).get('/x').set('x-api-key', good.key)).status).toBe(200);
  });

  it('fails closed with 503 when the store fails or is too slow, and reports the error class only', async () => {
    const reported: unknown[] = [];
    const failing = createServer(
      apiKeyAuth({
        keys: async () => {
          throw new Error('connection refused');
        },
        onStoreError: (error) => reported.push(error),
      }),
    );
    const res = await request(failing).get('/x').set('x-api-key', good.key);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('service_unavailable');
    expect(res.headers['retry-after']).toBe('1');
    expect(reported).toHaveLength(1);

    const slow = createServer(
      apiKeyAuth({ keys: () => new Promise(() => undefined), timeoutMs: 20, onStoreError: () => undefined }),
    );
    expect((await request(slow).get('/x').set('x-api-key', good.key)).status).toBe(503);
  });

  it('lets a custom renderError shape the denial', async () => {
    const local = createServer(
      apiKeyAuth({
        keys: [],
        renderError: (error, _req, res) => {
          res.statusCode = error.status;
          res.end(`custom ${error.code}`);
        },
      }),
    );
    const res = await request(local).get('/x');
    expect(res.status).toBe(401);
    expect(res.text).toBe('custom invalid_api_key');
  });

  it('rejects bad options at construction', () => {
    expect(() => apiKeyAuth({})).toThrow(TollgateError);
    expect(() => apiKeyAuth({ keys: [], optinal: true } as never)).toThrow(/did you mean "optional"/);
    expect(() => apiKeyAuth({ keys: [{ id: 'x', sha256: 'nope', scopes: [], createdAt: '' }] })).toThrow(
      /keys\[0\]\.sha256/,
    );
    expect(() => apiKeyAuth({ keys: [], realm: 'a"b' })).toThrow(/realm/);
    expect(() => apiKeyAuth({ keys: [], timeoutMs: 0 })).toThrow(/timeoutMs/);
  });
});

describe('apiKeyAuth keyFormat with a global or sticky flag', () => {
  // RegExp.test with /g or /y moves lastIndex: every other request with the same good key would be refused.
  it('accepts a good key on every request, not every other one', async () => {
    const good = makeKey();
    for (const keyFormat of [/^tgk_[0-9A-Za-z]{32,}$/g, /tgk_[0-9A-Za-z]{32,}$/y]) {
      const app = createServer(apiKeyAuth({ keys: [good.record], keyFormat }));
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await request(app).get('/x').set('x-api-key', good.key)).status);
      expect(statuses).toEqual([200, 200, 200, 200]);
    }
    // The sticky pattern stays anchored at the start.
    const sticky = createServer(apiKeyAuth({ keys: [good.record], keyFormat: /tgk_[0-9A-Za-z]{32,}$/y }));
    expect((await request(sticky).get('/x').set('x-api-key', `x${good.key}`)).status).toBe(401);
  });
});

describe('apiKeyAuth with a key source that answers at once', () => {
  const good = makeKey();

  /** Runs the middleware on a request carrying `key`; `sync` tells whether it had decided before returning. */
  function run(middleware: ReturnType<typeof apiKeyAuth>, key: string) {
    const req = new IncomingMessage(new Socket());
    req.headers = { 'x-api-key': key };
    const res = new ServerResponse(req);
    let decided = false;
    const passed = new Promise<unknown>((resolve) => {
      middleware(req, res, (error?: unknown) => {
        decided = true;
        resolve(error);
      });
    });
    return { sync: decided, passed, identity: () => getContext(req, res).identity };
  }

  it('identifies the caller before returning: a memory store, a list of records, a function returning a record', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0, keys: [good.record] });
    const sources = [
      stores.keys,
      [good.record],
      (sha256: string) => (sha256 === good.record.sha256 ? good.record : undefined),
    ];
    for (const keys of sources) {
      const { sync, passed, identity } = run(apiKeyAuth({ keys }), good.key);
      expect(sync).toBe(true);
      await expect(passed).resolves.toBeUndefined();
      expect(identity()?.keyId).toBe(good.record.id);
    }
  });

  it('waits for a source that answers with a promise', async () => {
    const { sync, passed, identity } = run(apiKeyAuth({ keys: async () => good.record }), good.key);
    expect(sync).toBe(false);
    await expect(passed).resolves.toBeUndefined();
    expect(identity()?.keyId).toBe(good.record.id);
  });

  it('fails closed with 503 when a lookup function throws', async () => {
    const reported: unknown[] = [];
    const failing = createServer(
      apiKeyAuth({
        keys: () => {
          throw new Error('connection refused');
        },
        onStoreError: (error) => reported.push(error),
      }),
    );
    const res = await request(failing).get('/x').set('x-api-key', good.key);
    expect(res.status).toBe(503);
    expect(reported).toHaveLength(1);
  });

  it('hands a mapIdentity that throws to the error handler', async () => {
    const app = createServer(
      apiKeyAuth({
        keys: [good.record],
        mapIdentity: () => {
          throw new Error('mapIdentity failed');
        },
      }),
    );
    const res = await request(app).get('/x').set('x-api-key', good.key);
    expect(res.status).toBe(500);
  });
});
