// jwtAuth with jose: static and remote JWKS, issuer/audience/expiry checks, alg pinning (none, HS256-with-public-key), claim mapping.
import { createHmac } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import request from 'supertest';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import type { JWK, JWTPayload } from 'jose';
import { TollgateError } from '@tollgate/core';
import { apiKeyAuth, jwtAuth } from '../src/index.js';
import { createServer, makeKey } from './helpers.js';

const ISSUER = 'https://idp.example';
const AUDIENCE = 'tollgate';

type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

async function makeSigner(alg: 'RS256' | 'ES256', kid: string) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { jwk, privateKey, publicKey, alg, kid };
}

function sign(
  signer: { privateKey: SigningKey; alg: string; kid: string },
  claims: JWTPayload = {},
  options: { issuer?: string; audience?: string; expiresIn?: string | number; kid?: string } = {},
): Promise<string> {
  return new SignJWT({ scope: 'chat embeddings', org_id: 'acme', tier: 'pro', ...claims })
    .setProtectedHeader({ alg: signer.alg, kid: options.kid ?? signer.kid, typ: 'JWT' })
    .setSubject('user-42')
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? '5m')
    .sign(signer.privateKey);
}

const base64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

describe('jwtAuth with a static JWKS', () => {
  let rsa: Awaited<ReturnType<typeof makeSigner>>;
  let ec: Awaited<ReturnType<typeof makeSigner>>;
  let stranger: Awaited<ReturnType<typeof makeSigner>>;
  let app: ReturnType<typeof createServer>;

  beforeAll(async () => {
    rsa = await makeSigner('RS256', 'rsa-1');
    ec = await makeSigner('ES256', 'ec-1');
    stranger = await makeSigner('RS256', 'stranger');
    app = createServer(
      jwtAuth({ jwks: { keys: [rsa.jwk, ec.jwk] }, issuer: ISSUER, audience: AUDIENCE, tenantClaim: 'org_id' }),
    );
  });

  it('accepts a valid RS256 or ES256 token and maps its claims', async () => {
    for (const signer of [rsa, ec]) {
      const res = await request(app)
        .post('/v1/chat/completions')
        .set('Authorization', `Bearer ${await sign(signer)}`)
        .send({});
      expect(res.status).toBe(200);
      expect(res.body.identity).toEqual({
        keyId: 'jwt:user-42',
        tenantId: 'acme',
        userId: 'user-42',
        tier: 'pro',
        scopes: ['chat', 'embeddings'],
        authMethod: 'jwt',
      });
    }
  });

  it('reads scopes from an array claim and claim names from options', async () => {
    const local = createServer(
      jwtAuth({
        jwks: { keys: [rsa.jwk] },
        issuer: ISSUER,
        audience: AUDIENCE,
        scopeClaim: 'scp',
        userClaim: 'email',
        featureClaim: 'app',
        tierClaim: 'plan',
        tenantClaim: 'org_id',
        modelsClaim: 'models',
      }),
    );
    const token = await sign(rsa, {
      scp: ['chat', 'admin'],
      email: 'a@acme.test',
      app: 'support-bot',
      plan: 'free',
      models: ['gpt-4o-mini'],
    });
    const res = await request(local).get('/x').set('Authorization', `Bearer ${token}`);
    expect(res.body.identity).toEqual({
      keyId: 'jwt:user-42',
      tenantId: 'acme',
      userId: 'a@acme.test',
      tier: 'free',
      feature: 'support-bot',
      scopes: ['chat', 'admin'],
      models: ['gpt-4o-mini'],
      authMethod: 'jwt',
    });
  });

  async function expect401(token: string, message?: RegExp) {
    const res = await request(app).get('/x').set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('invalid_api_key');
    expect(res.headers['www-authenticate']).toBe('Bearer realm="tollgate", error="invalid_token"');
    if (message) expect(res.body.error.message).toMatch(message);
    return res;
  }

  it('refuses a wrong issuer, a wrong audience and an expired token', async () => {
    await expect401(await sign(rsa, {}, { issuer: 'https://evil.example' }), /"iss"/);
    await expect401(await sign(rsa, {}, { audience: 'another-service' }), /"aud"/);
    await expect401(await sign(rsa, {}, { expiresIn: Math.floor(Date.now() / 1000) - 3600 }), /expired/);
  });

  it('allows clock skew within clockTolerance only', async () => {
    const justExpired = await sign(rsa, {}, { expiresIn: Math.floor(Date.now() / 1000) - 10 });
    expect((await request(app).get('/x').set('Authorization', `Bearer ${justExpired}`)).status).toBe(200);
    const strict = createServer(
      jwtAuth({ jwks: { keys: [rsa.jwk] }, issuer: ISSUER, audience: AUDIENCE, clockTolerance: 0 }),
    );
    expect((await request(strict).get('/x').set('Authorization', `Bearer ${justExpired}`)).status).toBe(401);
  });

  it('refuses alg none', async () => {
    const unsecured = new UnsecuredJWT({ sub: 'user-42', scope: 'chat' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .encode();
    await expect401(unsecured);
    // The same with a kid, as an attacker would send it.
    const [, payload] = unsecured.split('.');
    await expect401(`${base64url(JSON.stringify({ alg: 'none', kid: 'rsa-1' }))}.${payload}.`);
  });

  it('refuses an HS256 token signed with the RSA public key as the HMAC secret', async () => {
    const now = Math.floor(Date.now() / 1000);
    const header = base64url(JSON.stringify({ alg: 'HS256', kid: 'rsa-1', typ: 'JWT' }));
    const payload = base64url(
      JSON.stringify({ sub: 'attacker', iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 300, scope: 'admin' }),
    );
    for (const secret of [
      await exportSPKI(rsa.publicKey),
      JSON.stringify(rsa.jwk),
      Buffer.from(rsa.jwk.n!, 'base64url'),
    ]) {
      const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
      await expect401(`${header}.${payload}.${signature}`, /algorithm/);
    }
  });

  it('refuses a token from an unknown key (unknown kid, or a known kid with a foreign signature)', async () => {
    await expect401(await sign(stranger), /unknown key/);
    await expect401(await sign(stranger, {}, { kid: 'rsa-1' }));
  });

  it('refuses a token without sub, a tampered token, malformed and missing credentials', async () => {
    const noSub = await new SignJWT({ scope: 'chat' })
      .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(rsa.privateKey);
    await expect401(noSub);
    const [h, p, s] = (await sign(rsa)).split('.');
    const forged = base64url(
      JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), scope: 'admin' }),
    );
    await expect401(`${h}.${forged}.${s}`);
    await expect401('not-a-jwt');
    const missing = await request(app).get('/x');
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="tollgate"');
  });

  it('optional + apiKeyAuth: a JWT or an API key identifies the caller, each by its own middleware', async () => {
    const k = makeKey();
    const both = createServer(
      apiKeyAuth({ keys: [k.record], optional: true }),
      jwtAuth({ jwks: { keys: [rsa.jwk] }, issuer: ISSUER, audience: AUDIENCE }),
    );
    expect((await request(both).get('/x').set('Authorization', `Bearer ${k.key}`)).body.identity.authMethod).toBe(
      'api_key',
    );
    expect(
      (
        await request(both)
          .get('/x')
          .set('Authorization', `Bearer ${await sign(rsa)}`)
      ).body.identity.authMethod,
    ).toBe('jwt');
    expect((await request(both).get('/x')).status).toBe(401);
    const optionalJwt = createServer(
      jwtAuth({ jwks: { keys: [rsa.jwk] }, issuer: ISSUER, audience: AUDIENCE, optional: true }),
    );
    expect((await request(optionalJwt).get('/x')).body.identity.authMethod).toBe('anonymous');
    expect(
      (
        await request(optionalJwt)
          .get('/x')
          .set('Authorization', `Bearer ${await sign(stranger)}`)
      ).status,
    ).toBe(401);
  });

  it('mapIdentity can adjust or refuse', async () => {
    const local = createServer(
      jwtAuth({
        jwks: { keys: [rsa.jwk] },
        issuer: ISSUER,
        audience: AUDIENCE,
        mapIdentity: (identity, payload) =>
          payload.banned ? undefined : { ...identity, tier: identity.tier ?? 'free' },
      }),
    );
    expect(
      (
        await request(local)
          .get('/x')
          .set('Authorization', `Bearer ${await sign(rsa, { tier: undefined })}`)
      ).body.identity.tier,
    ).toBe('free');
    expect(
      (
        await request(local)
          .get('/x')
          .set('Authorization', `Bearer ${await sign(rsa, { banned: true })}`)
      ).status,
    ).toBe(401);
  });

  it('rejects unsafe or incomplete options at construction', () => {
    const keys = { keys: [rsa.jwk] };
    expect(() => jwtAuth({ issuer: ISSUER, audience: AUDIENCE })).toThrow(TollgateError);
    expect(() => jwtAuth({ jwks: keys, audience: AUDIENCE })).toThrow(/issuer/);
    expect(() => jwtAuth({ jwks: keys, issuer: ISSUER })).toThrow(/audience/);
    expect(() => jwtAuth({ jwks: keys, issuer: ISSUER, audience: AUDIENCE, algorithms: ['none'] })).toThrow(/none/);
    expect(() => jwtAuth({ jwks: keys, issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256', 'HS256'] })).toThrow(
      /HS256/,
    );
    expect(() =>
      jwtAuth({ jwks: 'https://idp.example/jwks.json', issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] }),
    ).toThrow(/HS256/);
    expect(() => jwtAuth({ jwks: { keys: [] }, issuer: ISSUER, audience: AUDIENCE })).toThrow(/at least one key/);
    expect(() =>
      jwtAuth({ jwks: keys, jwksUrl: 'https://idp.example/jwks', issuer: ISSUER, audience: AUDIENCE }),
    ).toThrow(/not both/);
    expect(() => jwtAuth({ jwks: 'ftp://idp.example/jwks', issuer: ISSUER, audience: AUDIENCE })).toThrow(/http/);
    expect(() => jwtAuth({ jwks: keys, issuer: ISSUER, audience: AUDIENCE, tenantClain: 'org' } as never)).toThrow(
      /did you mean "tenantClaim"/,
    );
  });
});

describe('jwtAuth with a remote JWKS', () => {
  let first: Awaited<ReturnType<typeof makeSigner>>;
  let second: Awaited<ReturnType<typeof makeSigner>>;
  let served: JWK[] = [];
  let fetches = 0;
  let server: Server;
  let url: string;

  beforeAll(async () => {
    first = await makeSigner('RS256', 'first');
    second = await makeSigner('ES256', 'second');
    served = [first.jwk];
    server = createHttpServer((req, res) => {
      if (req.url !== '/.well-known/jwks.json') {
        res.statusCode = 404;
        res.end();
        return;
      }
      fetches += 1;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: served }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('fetches the key set once, caches it, and refetches for a new kid after the cooldown', async () => {
    const app = createServer(
      jwtAuth({ jwksUrl: url, issuer: ISSUER, audience: AUDIENCE, jwksCooldown: 1, tenantClaim: 'org_id' }),
    );
    fetches = 0;
    for (let i = 0; i < 3; i++) {
      const res = await request(app)
        .get('/x')
        .set('Authorization', `Bearer ${await sign(first)}`);
      expect(res.status).toBe(200);
      expect(res.body.identity.tenantId).toBe('acme');
    }
    expect(fetches).toBe(1);

    // The IdP rotates: a token signed by a key the cache has not seen makes jose fetch again.
    served = [first.jwk, second.jwk];
    await new Promise((resolve) => setTimeout(resolve, 5));
    const rotated = await request(app)
      .get('/x')
      .set('Authorization', `Bearer ${await sign(second)}`);
    expect(rotated.status).toBe(200);
    expect(fetches).toBe(2);
  });

  it('refuses an unknown kid with 401 and does not refetch within the cooldown', async () => {
    served = [first.jwk];
    const stranger = await makeSigner('RS256', 'stranger');
    const app = createServer(jwtAuth({ jwks: url, issuer: ISSUER, audience: AUDIENCE, jwksCooldown: '1h' }));
    fetches = 0;
    expect(
      (
        await request(app)
          .get('/x')
          .set('Authorization', `Bearer ${await sign(first)}`)
      ).status,
    ).toBe(200);
    for (let i = 0; i < 3; i++) {
      const res = await request(app)
        .get('/x')
        .set('Authorization', `Bearer ${await sign(stranger)}`);
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('invalid_api_key');
    }
    expect(fetches).toBe(1);
  });

  it('answers 503 when the JWKS cannot be fetched, and reports it without the token', async () => {
    const reported: unknown[] = [];
    const app = createServer(
      jwtAuth({
        jwks: url.replace('/.well-known/jwks.json', '/missing'),
        issuer: ISSUER,
        audience: AUDIENCE,
        onJwksError: (error) => reported.push(error),
      }),
    );
    const token = await sign(first);
    const res = await request(app).get('/x').set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('service_unavailable');
    expect(reported).toHaveLength(1);
    expect(JSON.stringify(res.body)).not.toContain(token);
  });
});

describe('jwtAuth issuer and audience options', () => {
  // From a config file or an unset env var: an empty or non-string value would refuse every token silently.
  it('must be non-empty strings (or non-empty lists of them)', async () => {
    const { jwk } = await makeSigner('ES256', 'k');
    const keys = { keys: [jwk] };
    for (const bad of ['', [''], [ISSUER, ''], 42, [42], {}] as unknown[]) {
      expect(() => jwtAuth({ jwks: keys, issuer: bad as string, audience: AUDIENCE })).toThrow(/issuer/);
      expect(() => jwtAuth({ jwks: keys, issuer: ISSUER, audience: bad as string })).toThrow(/audience/);
    }
    expect(() =>
      jwtAuth({ jwks: keys, issuer: [ISSUER, 'https://other.example'], audience: [AUDIENCE] }),
    ).not.toThrow();
  });
});
