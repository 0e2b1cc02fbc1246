// No key, key hash or token reaches a log line, a warning, a response (body or header) or the request context, whatever happens.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { apiErrorHandler, createMemoryStores, getContext } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import {
  apiKeyAuth,
  bearerAuth,
  generateApiKey,
  hashApiKey,
  jwtAuth,
  modelAllowlist,
  requireScope,
} from '../src/index.js';
import { makeKey } from './helpers.js';

const captured: string[] = [];
const restore: (() => void)[] = [];

function capture(): void {
  for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) {
    const original = console[method];
    console[method] = (...args: unknown[]) => {
      captured.push(
        args
          .map((arg) =>
            arg instanceof Error
              ? `${arg.message} ${arg.stack} ${String(arg.cause)}`
              : typeof arg === 'string'
                ? arg
                : JSON.stringify(arg),
          )
          .join(' '),
      );
    };
    restore.push(() => (console[method] = original));
  }
  for (const stream of [process.stdout, process.stderr]) {
    const original = stream.write.bind(stream);
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      captured.push(String(chunk));
      return (original as (...args: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof stream.write;
    restore.push(() => (stream.write = original));
  }
  // Warnings are written to stderr by Node's default handler; record them at the source.
  const originalEmitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    captured.push(
      typeof warning === 'string'
        ? `${warning} ${JSON.stringify(rest)}`
        : `${warning.name} ${warning.message} ${warning.stack}`,
    );
  }) as typeof process.emitWarning;
  restore.push(() => (process.emitWarning = originalEmitWarning));
}

describe('secrets never leak', () => {
  const secrets: string[] = [];
  const responses: string[] = [];
  const contexts: string[] = [];
  let app: express.Express;
  let tokens: { valid: string; expired: string; foreign: string };

  const remember = (...values: string[]) => {
    for (const value of values) {
      secrets.push(value);
      if (value.startsWith('tgk_')) secrets.push(hashApiKey(value), hashApiKey(value).toUpperCase());
      // The signature alone is enough to replay nothing, but it is still the secret part of a JWT.
      const parts = value.split('.');
      if (parts.length === 3 && parts[2]) secrets.push(parts[2]);
    }
  };

  beforeAll(async () => {
    capture();
    const good = makeKey({ scopes: ['chat'], tier: 'free' });
    const revoked = makeKey({ disabled: true });
    const expired = makeKey({ expiresAt: new Date(Date.now() - 1000).toISOString() });
    const unknown = generateApiKey();
    remember(good.key, revoked.key, expired.key, unknown);
    const stores = createMemoryStores({ sweepIntervalMs: 0, keys: [good.record, revoked.record, expired.record] });

    const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
    const foreign = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256' };
    const sign = (key: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'], exp: string | number) =>
      new SignJWT({ scope: 'chat' })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setSubject('u1')
        .setIssuer('https://idp')
        .setAudience('tg')
        .setExpirationTime(exp)
        .sign(key);
    tokens = {
      valid: await sign(privateKey, '5m'),
      expired: await sign(privateKey, Math.floor(Date.now() / 1000) - 3600),
      foreign: await sign(foreign.privateKey, '5m'),
    };
    remember(tokens.valid, tokens.expired, tokens.foreign);

    // A store whose errors quote the hash they were asked for, as a careless driver might.
    const leakyStore = async (sha256: string) => {
      throw new Error(`lookup failed for ${sha256}`);
    };

    app = express();
    app.use(express.json());
    const record = (req: express.Request, res: express.Response) => {
      const context = getContext(req, res);
      // What a usage sink would write: the identity fields of a UsageRecord.
      const usage: Partial<UsageRecord> = {
        keyId: context.identity?.keyId ?? null,
        tenantId: context.identity?.tenantId ?? null,
        userId: context.identity?.userId ?? null,
      };
      contexts.push(JSON.stringify({ identity: context.identity, usage, user: (req as { user?: unknown }).user }));
      res.json({ ok: true, identity: context.identity });
    };
    app.post(
      '/key',
      apiKeyAuth({ keys: stores.keys }),
      modelAllowlist({ tiers: { free: ['gpt-4o-mini'] } }),
      requireScope('admin'),
      record,
    );
    app.post('/optional', apiKeyAuth({ keys: stores.keys, optional: true }), record);
    app.post('/leaky', apiKeyAuth({ keys: leakyStore }), record);
    app.post('/bearer', bearerAuth({ keys: stores.keys }), record);
    app.post('/bearer-leaky', bearerAuth({ keys: leakyStore }), record);
    app.post(
      '/jwt',
      jwtAuth({ jwks: { keys: [jwk] }, issuer: 'https://idp', audience: 'tg' }),
      requireScope('admin'),
      record,
    );
    app.post(
      '/jwt-remote-down',
      jwtAuth({ jwksUrl: 'http://127.0.0.1:1/jwks.json', issuer: 'https://idp', audience: 'tg' }),
      record,
    );
    app.use(apiErrorHandler());
  });

  afterAll(() => {
    for (const undo of restore.splice(0)) undo();
  });

  it('across every success and denial path', async () => {
    const credentials = secrets.filter((secret) => secret.startsWith('tgk_') || secret.split('.').length === 3);
    const paths = ['/key', '/optional', '/leaky', '/bearer', '/bearer-leaky', '/jwt', '/jwt-remote-down'];
    for (const path of paths) {
      for (const credential of credentials) {
        for (const headers of [
          { Authorization: `Bearer ${credential}` },
          { 'x-api-key': credential },
          { Authorization: `Bearer ${credential} trailing` },
        ]) {
          const res = await request(app)
            .post(path)
            .set(headers)
            .send({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
          responses.push(JSON.stringify({ status: res.status, headers: res.headers, body: res.text }));
        }
      }
      const query = await request(app)
        .post(`${path}?access_token=${credentials[0]}`)
        .send({ access_token: credentials[0] });
      responses.push(JSON.stringify({ status: query.status, headers: query.headers, body: query.text }));
    }
    // Let queued warnings (process.emitWarning is async) land in the capture.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 20));

    expect(responses.length).toBeGreaterThan(100);
    // The paths were really exercised: successes, 401s, 403s and 503s all happened.
    const statuses = new Set(responses.map((r) => JSON.parse(r).status as number));
    expect([...statuses].sort()).toEqual(expect.arrayContaining([200, 401, 403, 503]));
    expect(contexts.length).toBeGreaterThan(0);
    expect(captured.some((line) => line.includes('key store failed'))).toBe(true);

    const everything = [...captured, ...responses, ...contexts].join('\n');
    // Report which secrets leaked by position, so a failing run does not print them either.
    const leaked = secrets.flatMap((secret, index) =>
      everything.includes(secret) ? [`secret #${index} (${secret.length} chars)`] : [],
    );
    expect(leaked).toEqual([]);
  });
});
