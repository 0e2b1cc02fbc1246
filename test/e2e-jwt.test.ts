// JWTs from the config's `jwt` section work beside API keys: claims give tenant, tier and scopes; bad tokens get 401.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { caught, newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;

const apiKey = newApiKey();
let proxy: RunningProxy;
let privateKey: CryptoKey;

function token(
  claims: Record<string, unknown>,
  options: { issuer?: string; audience?: string; expires?: string } = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setSubject('user-42')
    .setIssuer(options.issuer ?? 'https://idp.example')
    .setAudience(options.audience ?? 'tollgate')
    .setIssuedAt()
    .setExpirationTime(options.expires ?? '5m')
    .sign(privateKey);
}

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  privateKey = pair.privateKey;
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  proxy = await startProxy({
    requiredScope: 'chat',
    jwt: {
      issuer: 'https://idp.example',
      audience: 'tollgate',
      jwks: { keys: [jwk as Record<string, unknown>] },
      tenantClaim: 'org_id',
      tierClaim: 'tier',
      scopeClaim: 'scope',
    },
    tiers: {
      free: { requestsPerMinute: 100, models: ['gpt-4o-mini'] },
      pro: { requestsPerMinute: 100, models: ['*'] },
    },
    tenants: { acme: { tier: 'pro' } },
    keys: [{ id: 'key-user', sha256: sha256Hex(apiKey), tenant: 'acme', scopes: ['chat'] }],
  });
});

afterAll(async () => {
  await proxy.close();
});

const client = (key: string) => new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });

describe('JWT auth in the proxy', () => {
  it('accepts a valid token; its tenant gives the tier', async () => {
    const jwt = await token({ org_id: 'acme', scope: 'chat' });
    const completion = await client(jwt).chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 3,
    });
    expect(completion.usage?.completion_tokens).toBe(3);
  });

  it('uses the tier claim and the default tier for unknown tiers', async () => {
    const unknownTier = await token({ org_id: 'other', tier: 'platinum', scope: 'chat' });
    const error = await caught(
      client(unknownTier).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect((error as OpenAIApiError).code).toBe('model_not_allowed');
    const models = await client(unknownTier).models.list();
    expect(models.data.map((model) => model.id)).toEqual(['gpt-4o-mini']);
  });

  it('refuses wrong issuer, wrong audience, expired tokens and a missing scope', async () => {
    for (const jwt of [
      await token({ org_id: 'acme', scope: 'chat' }, { issuer: 'https://evil.example' }),
      await token({ org_id: 'acme', scope: 'chat' }, { audience: 'someone-else' }),
      await token({ org_id: 'acme', scope: 'chat' }, { expires: '-10m' }),
    ]) {
      const error = await caught(
        client(jwt).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      );
      expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    }
    const noScope = await token({ org_id: 'acme', scope: 'read' });
    const error = await caught(
      client(noScope).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect((error as OpenAIApiError).code).toBe('insufficient_scope');
  });

  it('still accepts API keys', async () => {
    const completion = await client(apiKey).chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 2,
    });
    expect(completion.usage?.completion_tokens).toBe(2);
  });
});
