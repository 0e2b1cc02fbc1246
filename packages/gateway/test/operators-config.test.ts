// `operators`: the admin key's role and OIDC sign-in, checked as every other section (each problem by its field), and
// their secrets read from the environment at start.
import { describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { gatewayOptions, validateConfig } from '../src/config/index.js';
import { rejection } from './helpers/config-rejection.js';

const OIDC = { issuer: 'https://idp.example.com/realms/ops', clientId: 'tollgate' };

describe('operators', () => {
  it('refuses a plain-http issuer off this machine, an unknown role and a misspelt field, each by its path', () => {
    const message = rejection({
      operators: {
        keyRole: 'root',
        oidc: { ...OIDC, issuer: 'http://idp.example.com', roleMap: { ops: 'superuser' }, roleClaim: 'roles' },
      },
    });
    expect(message).toMatch(/operators\.keyRole must be "viewer", "operator" or "admin"/);
    expect(message).toMatch(/operators\.oidc\.issuer must use https: \(plain http: only for localhost\)/);
    expect(message).toMatch(/operators\.oidc\.roleMap\.ops must be "viewer", "operator" or "admin"/);
    expect(message).toMatch(/operators\.oidc has no field "roleClaim".*did you mean "rolesClaim"/);
  });

  it('fills the defaults, reads the secrets from the environment, and stops the start when one is not set', () => {
    const config = validateConfig({
      ...WITH_MOCK,
      operators: { oidc: { ...OIDC, clientSecretEnv: 'OIDC_SECRET', sessionSecretEnv: 'SESSION_SECRET' } },
    });
    const secret = 's'.repeat(32);
    const { operator } = gatewayOptions(config, { OIDC_SECRET: 'client-secret', SESSION_SECRET: secret });
    expect(operator.keyRole).toBe('admin');
    expect(operator.oidc).toMatchObject({
      ...OIDC,
      clientSecret: 'client-secret',
      scopes: ['openid', 'email', 'profile'],
      rolesClaim: 'roles',
      sessionTtlMs: 3_600_000,
    });
    expect(Buffer.from(operator.oidc!.sessionSecret!).toString()).toBe(secret);
    expect(() => gatewayOptions(config, { OIDC_SECRET: 'client-secret', SESSION_SECRET: 'short' })).toThrow(
      /operators\.oidc\.sessionSecretEnv names SESSION_SECRET, which is not set in the environment to 32\+ characters/,
    );
    expect(() => gatewayOptions(config, { SESSION_SECRET: secret })).toThrow(/clientSecretEnv names OIDC_SECRET/);
  });
});
