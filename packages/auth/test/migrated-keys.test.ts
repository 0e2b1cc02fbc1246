// Keys migrated from other systems (any text, known by hash) beside JWTs, and 401s that name exactly what a route accepts.
import { randomUUID } from 'node:crypto';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import request from 'supertest';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import type { RequestHandler } from 'express';
import { createMemoryStores } from '@tollgate/core';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { createRedisStores } from '@tollgate/redis';
import { apiKeyAuth, bearerAuth, hashApiKey, jwtAuth, requireScope } from '../src/index.js';
import type { JwtVerifyOptions } from '../src/index.js';
import { createServer } from './helpers.js';

const base64url = (text: string) => Buffer.from(text).toString('base64url');

/** Texts of keys made by other systems: `_`, `-`, dots, and one that even has a JWT's shape. */
const MIGRATED = {
  dashed: 'sk-live_abc-DEF_123',
  dotted: 'legacy.key.v2-Xy_9',
  twoDots: 'acme.prod.3f9a-77_b',
  jwtShaped: `${base64url('{"alg":"HS256","typ":"JWT"}')}.${base64url('{"sub":"legacy"}')}.old-signature_1`,
};

function recordFor(name: string, key: string): ApiKeyRecord {
  return {
    id: `migrated-${name}`,
    sha256: hashApiKey(key),
    tenantId: 'acme',
    scopes: ['chat'],
    createdAt: new Date().toISOString(),
  };
}

const records = Object.entries(MIGRATED).map(([name, key]) => recordFor(name, key));

let privateKey: CryptoKey;
let jwt: JwtVerifyOptions;

async function signJwt(expires = '5m'): Promise<string> {
  return new SignJWT({ scope: 'chat' })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setSubject('user-7')
    .setIssuer('https://idp.example')
    .setAudience('tollgate')
    .setExpirationTime(expires)
    .sign(privateKey);
}

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  privateKey = pair.privateKey;
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  jwt = { jwks: { keys: [jwk] }, issuer: 'https://idp.example', audience: 'tollgate' };
});

/** A lookup over `records` that counts its calls, to see which credentials reach the key store. */
function countingLookup(): { lookup: (sha256: string) => ApiKeyRecord | undefined; calls: () => number } {
  let calls = 0;
  const byHash = new Map(records.map((record) => [record.sha256, record]));
  return {
    lookup: (sha256) => {
      calls += 1;
      return byHash.get(sha256);
    },
    calls: () => calls,
  };
}

describe('keys migrated from other systems', () => {
  it('apiKeyAuth accepts a configured key whatever its text, from either header (memory store)', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0, keys: records });
    const app = createServer(apiKeyAuth({ keys: stores.keys }));
    for (const [name, key] of Object.entries(MIGRATED)) {
      const viaBearer = await request(app).post('/v1/chat/completions').set('Authorization', `Bearer ${key}`).send({});
      expect(viaBearer.status).toBe(200);
      expect(viaBearer.body.identity).toMatchObject({ keyId: `migrated-${name}`, authMethod: 'api_key' });
      expect((await request(app).post('/v1/messages').set('x-api-key', key).send({})).body.identity?.keyId).toBe(
        `migrated-${name}`,
      );
    }
    const unknown = await request(app).get('/x').set('x-api-key', 'sk-live_not-configured');
    expect(unknown.status).toBe(401);
    await stores.close();
  });

  it('bearerAuth accepts them too', async () => {
    const app = createServer(bearerAuth({ keys: records }));
    for (const key of Object.values(MIGRATED)) {
      expect((await request(app).get('/x').set('Authorization', `Bearer ${key}`)).body.identity?.authMethod).toBe(
        'bearer',
      );
    }
  });

  it('with jwt: JWT-shaped credentials are verified as JWTs, the rest looked up, a bad JWT falls back to its hash', async () => {
    const { lookup, calls } = countingLookup();
    const app = createServer(apiKeyAuth({ keys: lookup, jwt }));

    const valid = await request(app)
      .get('/x')
      .set('Authorization', `Bearer ${await signJwt()}`);
    expect(valid.body.identity).toMatchObject({ keyId: 'jwt:user-7', authMethod: 'jwt' });
    expect(calls()).toBe(0); // a valid JWT costs no key lookup

    for (const [name, key] of Object.entries(MIGRATED)) {
      const res = await request(app).get('/x').set('Authorization', `Bearer ${key}`);
      expect(res.status).toBe(200);
      expect(res.body.identity).toMatchObject({ keyId: `migrated-${name}`, authMethod: 'api_key' });
    }

    const expired = await request(app)
      .get('/x')
      .set('Authorization', `Bearer ${await signJwt('-10m')}`);
    expect(expired.status).toBe(401);
    expect(expired.body.error.message).toBe('The bearer token has expired.');
  });

  it('the chain apiKeyAuth({ optional }) + jwtAuth takes them too (once refused as "Invalid bearer token")', async () => {
    const app = createServer(apiKeyAuth({ keys: records, optional: true }), jwtAuth(jwt));
    for (const [name, key] of Object.entries(MIGRATED)) {
      expect((await request(app).get('/x').set('Authorization', `Bearer ${key}`)).body.identity?.keyId).toBe(
        `migrated-${name}`,
      );
    }
    expect(
      (
        await request(app)
          .get('/x')
          .set('Authorization', `Bearer ${await signJwt()}`)
      ).body.identity?.authMethod,
    ).toBe('jwt');
    // jwtAuth refuses last, and names the keys the optional apiKeyAuth before it would have taken.
    const missing = await request(app).get('/x');
    expect(missing.body.error.message).toBe(
      'Missing API key or JWT: send "Authorization: Bearer <API key or JWT>" or "x-api-key: <API key>".',
    );
  });

  describe('on the Redis key store', () => {
    const stores = createRedisStores({
      url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      prefix: `tg-test:${randomUUID()}:`,
    });

    afterAll(async () => {
      for (const record of await stores.keys.list()) await stores.keys.delete(record.id);
      await stores.close();
    });

    it('accepts every migrated key, with and without jwt', async () => {
      for (const record of records) await stores.keys.put(record);
      const keysOnly = createServer(apiKeyAuth({ keys: stores.keys }));
      const withJwt = createServer(apiKeyAuth({ keys: stores.keys, jwt }));
      for (const [name, key] of Object.entries(MIGRATED)) {
        expect((await request(keysOnly).get('/x').set('x-api-key', key)).body.identity?.keyId).toBe(`migrated-${name}`);
        expect((await request(withJwt).get('/x').set('Authorization', `Bearer ${key}`)).body.identity?.keyId).toBe(
          `migrated-${name}`,
        );
      }
      await stores.keys.disable('migrated-jwtShaped');
      const revoked = await request(withJwt).get('/x').set('Authorization', `Bearer ${MIGRATED.jwtShaped}`);
      expect(revoked.status).toBe(401);
      expect(revoked.body.error.message).toBe('This API key has been revoked.');
    });
  });
});

describe('a 401 names exactly the credentials the route accepts', () => {
  const KEY_BOTH_HEADERS = 'send "Authorization: Bearer <API key>" or "x-api-key: <API key>".';
  const KEY_OR_JWT = 'send "Authorization: Bearer <API key or JWT>" or "x-api-key: <API key>".';
  const KEY_BEARER_ONLY = 'send "Authorization: Bearer <API key>".';
  const JWT_ONLY = 'send "Authorization: Bearer <JWT>".';

  const routes: [string, () => RequestHandler[], string, string][] = [
    ['apiKeyAuth', () => [apiKeyAuth({ keys: records })], 'API key', KEY_BOTH_HEADERS],
    ['apiKeyAuth with jwt', () => [apiKeyAuth({ keys: records, jwt })], 'API key or JWT', KEY_OR_JWT],
    [
      'apiKeyAuth optional + requireScope',
      () => [apiKeyAuth({ keys: records, optional: true }), requireScope('chat')],
      'API key',
      KEY_BOTH_HEADERS,
    ],
    ['bearerAuth', () => [bearerAuth({ keys: records })], 'API key', KEY_BEARER_ONLY],
    ['jwtAuth', () => [jwtAuth(jwt)], 'JWT', JWT_ONLY],
    [
      'jwtAuth optional + requireScope',
      () => [jwtAuth({ ...jwt, optional: true }), requireScope('chat')],
      'JWT',
      JWT_ONLY,
    ],
  ];

  it.each(routes)('%s', async (_name, middleware, what, advice) => {
    const app = createServer(...middleware());
    const unknownKey = 'sk-live_unknown-KEY_0';
    const missing = await request(app).get('/x');
    expect(missing.status).toBe(401);
    expect(missing.body.error).toMatchObject({ code: 'invalid_api_key', message: `Missing ${what}: ${advice}` });
    const malformed = await request(app).get('/x').set('Authorization', 'Basic dXNlcjpwdw==');
    expect(malformed.body.error.message).toBe(`Malformed credentials: ${advice}`);
    // jwtAuth refuses a credential that is not a JWT without a lookup; key routes after the lookup.
    const unknown = await request(app).get('/x').set('Authorization', `Bearer ${unknownKey}`);
    expect(unknown.status).toBe(401);
    expect(unknown.body.error.message).toBe(`Invalid ${what}: ${advice}`);
    expect(unknown.text).not.toContain(unknownKey);
  });
});
