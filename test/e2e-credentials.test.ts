// The proxy takes config keys of any text (migrated from other systems) on every route, and its 401s name what it accepts.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { JWK } from 'jose';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

/** Key texts issued by other systems: `_`, `-` and dots, none of them `tgk_` + base62. */
const MIGRATED = ['sk-live_abc-DEF_123', 'legacy.key.v2-Xy_9', 'acme.prod.3f9a-77_b'];

/** Every route that identifies the caller, with a request its API accepts. */
const ROUTES: { method: 'GET' | 'POST'; path: string; body?: unknown }[] = [
  {
    method: 'POST',
    path: '/v1/chat/completions',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
  },
  { method: 'POST', path: '/v1/responses', body: { model: 'gpt-4o-mini', input: 'hi', max_output_tokens: 16 } },
  {
    method: 'POST',
    path: '/v1/messages',
    body: { model: 'claude-haiku-4-5', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] },
  },
  { method: 'GET', path: '/v1/models' },
];

const KEYS_ONLY = 'send "Authorization: Bearer <API key>" or "x-api-key: <API key>".';
const KEYS_OR_JWT = 'send "Authorization: Bearer <API key or JWT>" or "x-api-key: <API key>".';

let keysOnly: RunningProxy;
let withJwt: RunningProxy;
let validJwt: string;

function configWith(extra: Partial<GatewayConfig>): GatewayConfig {
  return {
    requiredScope: 'chat',
    tiers: { pro: { requestsPerMinute: 1000, models: ['*'] } },
    tenants: { acme: { tier: 'pro' } },
    keys: MIGRATED.map((key, i) => ({ id: `migrated-${i}`, sha256: sha256Hex(key), tenant: 'acme', scopes: ['chat'] })),
    ...extra,
  };
}

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  validJwt = await new SignJWT({ org_id: 'acme', scope: 'chat' })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setSubject('user-1')
    .setIssuer('https://idp.example')
    .setAudience('tollgate')
    .setExpirationTime('5m')
    .sign(pair.privateKey);
  keysOnly = await startProxy(configWith({}));
  withJwt = await startProxy(
    configWith({
      jwt: {
        issuer: 'https://idp.example',
        audience: 'tollgate',
        jwks: { keys: [jwk as Record<string, unknown>] },
        tenantClaim: 'org_id',
      },
    }),
  );
});

afterAll(async () => {
  await keysOnly?.close();
  await withJwt?.close();
});

function call(proxy: RunningProxy, route: (typeof ROUTES)[number], headers: Record<string, string>): Promise<Response> {
  return fetch(`${proxy.url}${route.path}`, {
    method: route.method,
    headers: { ...(route.body ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(route.body ? { body: JSON.stringify(route.body) } : {}),
  });
}

async function errorMessage(response: Response): Promise<string> {
  expect(response.status).toBe(401);
  const text = await response.text();
  return (JSON.parse(text) as { error: { message: string } }).error.message;
}

describe('config keys with a migrated-style text', () => {
  it.each(ROUTES.map((route) => [route.path, route] as const))(
    'are accepted on %s from both headers, with and without jwt',
    async (_path, route) => {
      for (const proxy of [keysOnly, withJwt]) {
        for (const key of MIGRATED) {
          for (const headers of [{ authorization: `Bearer ${key}` }, { 'x-api-key': key }] as Record<
            string,
            string
          >[]) {
            const response = await call(proxy, route, headers);
            expect(response.status).toBe(200);
            await response.arrayBuffer();
          }
        }
      }
      const jwtResponse = await call(withJwt, route, { authorization: `Bearer ${validJwt}` });
      expect(jwtResponse.status).toBe(200);
      await jwtResponse.arrayBuffer();
    },
  );
});

describe('the 401 on each route names exactly the credentials it accepts', () => {
  const unknownKey = 'sk-live_unknown-key_42';
  it.each(ROUTES.map((route) => [route.path, route] as const))('%s', async (_path, route) => {
    for (const [proxy, what, advice] of [
      [keysOnly, 'API key', KEYS_ONLY],
      [withJwt, 'API key or JWT', KEYS_OR_JWT],
    ] as const) {
      expect(await errorMessage(await call(proxy, route, {}))).toBe(`Missing ${what}: ${advice}`);
      expect(await errorMessage(await call(proxy, route, { authorization: 'Basic dXNlcjpwdw==' }))).toBe(
        `Malformed credentials: ${advice}`,
      );
      const unknown = await errorMessage(await call(proxy, route, { 'x-api-key': unknownKey }));
      expect(unknown).toBe(`Invalid ${what}: ${advice}`);
      expect(unknown).not.toContain(unknownKey);
    }
  });
});
