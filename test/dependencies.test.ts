// Proves the module setup: jest (native ESM) loads every runtime dependency, ESM-only ones included.
import { describe, expect, it } from '@jest/globals';

const dependencies = [
  'express',
  'express-rate-limit',
  'rate-limit-redis',
  'helmet',
  'passport',
  'passport-http-bearer',
  'redis',
  'jose',
  'prom-client',
  'pg',
  'pino',
  'gpt-tokenizer',
  'undici',
  'openai',
  '@anthropic-ai/sdk',
  'supertest',
];

describe('module setup', () => {
  it.each(dependencies)('imports %s', async (name) => {
    const mod: Record<string, unknown> = await import(name);
    expect(Object.keys(mod).length).toBeGreaterThan(0);
  });

  it('imports jose 6, which ships ESM only, and uses it', async () => {
    const jose = await import('jose');
    const { privateKey, publicKey } = await jose.generateKeyPair('ES256');
    const token = await new jose.SignJWT({ sub: 'u1' }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
    const { payload } = await jose.jwtVerify(token, publicKey);
    expect(payload.sub).toBe('u1');
  });

  it('resolves workspace packages to their TypeScript sources', async () => {
    const core = await import('@tollgate/core');
    expect(typeof core.createPricing).toBe('function');
  });
});
