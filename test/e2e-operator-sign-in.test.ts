// Operators sign in with OpenID Connect against a real provider (oidc-provider on its own port): each role is let in
// and refused what the table says, sessions end when revoked, expired, forged or altered, and writes are audited.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SignJWT, decodeJwt } from 'jose';
import { memoryAuditStore } from '@tollgate/core/audit';
import { createRedisStores } from '@tollgate/redis';
import { OPERATOR_ACCESS, accessRuleOf } from '../packages/gateway/src/operator-access.js';
import { appRoutes } from './helpers/app-routes.js';
import type { Layer } from './helpers/app-routes.js';
import { browse, CookieJar, openOidcIssuer } from './helpers/oidc-issuer.js';
import type { RunningIssuer, TestAccount } from './helpers/oidc-issuer.js';
import { answerOf, deleteRedisPrefix, newApiKey, REDIS_URL, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const adminKey = newApiKey();
const SESSION_SECRET = 'a-session-secret-of-the-tests-0123456789';
const CLIENT = { clientId: 'tollgate-dashboard', clientSecret: 'client-secret-of-the-tests' };
const ACCOUNTS: TestAccount[] = [
  { login: 'vera', email: 'vera@example.test', roles: ['tollgate-viewer'] },
  { login: 'otto', email: 'otto@example.test', roles: ['staff', 'tollgate-operator'] },
  { login: 'tess', email: 'tess@example.test', roles: ['tollgate-viewer'], tenants: ['acme'] },
  { login: 'nobody', email: 'nobody@example.test', roles: ['staff'] },
];

let issuer: RunningIssuer;
let proxy: RunningProxy;

beforeAll(async () => {
  process.env.TG_TEST_OIDC_CLIENT_SECRET = CLIENT.clientSecret;
  process.env.TG_TEST_OPERATOR_SESSION_SECRET = SESSION_SECRET;
  issuer = await openOidcIssuer();
  proxy = await startProxy({
    adminKeySha256: sha256Hex(adminKey),
    keys: [
      { id: 'acme-app', sha256: sha256Hex(newApiKey()), tenant: 'acme' },
      { id: 'globex-app', sha256: sha256Hex(newApiKey()), tenant: 'globex' },
    ],
    tiers: { pro: { requestsPerMinute: 1000, tokensPerMinute: 1_000_000 } },
    tenants: {
      acme: { tier: 'pro', budget: { usd: 10, period: 'day' } },
      globex: { tier: 'pro', budget: { usd: 10, period: 'day' } },
    },
    // Refused sessions count as failed authentications: enough room for those the tests make before the last.
    guard: { authFailures: { max: 12, windowSeconds: 60, block: '5m' } },
    operators: {
      oidc: {
        issuer: issuer.url,
        clientId: CLIENT.clientId,
        clientSecretEnv: 'TG_TEST_OIDC_CLIENT_SECRET',
        sessionSecretEnv: 'TG_TEST_OPERATOR_SESSION_SECRET',
        scopes: ['openid', 'email', 'roles'],
        roleMap: { 'tollgate-viewer': 'viewer', 'tollgate-operator': 'operator' },
        tenantClaim: 'tenants',
      },
    },
  });
  issuer.serve(ACCOUNTS, { ...CLIENT, redirectUri: `${proxy.url}/admin/callback` });
});

afterAll(async () => {
  await proxy?.close();
  await issuer?.close();
});

/** Signs `login` in through the provider's pages; returns the browser's cookies and where it landed. */
async function signIn(login: string): Promise<{ jar: CookieJar; landed: string; status: number }> {
  const jar = new CookieJar();
  const { url, response } = await browse(jar, `${proxy.url}/admin/login?next=/admin/session`, login);
  return { jar, landed: url, status: response?.status ?? 0 };
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** A request with the browser's cookies (and its CSRF token on a write). */
async function call(jar: CookieJar, method: string, path: string, body?: unknown, csrf?: string): Promise<Answer> {
  const response = await fetch(`${proxy.url}${path}`, {
    method,
    redirect: 'manual',
    headers: {
      cookie: jar.header(),
      accept: 'application/json',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(csrf ? { 'x-csrf-token': csrf } : {}),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return answerOf(response);
}

async function withKey(method: string, path: string, body?: unknown): Promise<Answer> {
  const response = await fetch(`${proxy.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return answerOf(response);
}

async function csrfOf(jar: CookieJar): Promise<string> {
  const session = await call(jar, 'GET', '/admin/session');
  expect(session.status).toBe(200);
  return session.body.csrfToken as string;
}

/** Reads of a viewer and the writes only an operator (or an admin) may make. */
const READS = ['/admin/budgets', '/admin/budgets/tenant/acme', '/admin/keys', '/admin/tenants', '/admin/tenants/acme'];
const ADMIN_ONLY: [string, string, unknown?][] = [
  ['GET', '/admin/prices'],
  ['GET', '/admin/audit'],
  ['POST', '/admin/tenants', { id: 'initech', tier: 'pro' }],
  ['PATCH', '/admin/tenants/acme', { tier: 'pro' }],
  ['DELETE', '/admin/tenants/acme'],
  ['POST', '/admin/sessions/revoke', { subject: 'vera' }],
];

describe('the table of roles', () => {
  it('names every route of /admin and the dashboard, and nothing they do not serve', () => {
    const app = proxy.app as unknown as { router: { stack: Layer[] } };
    const served = [...appRoutes(app.router.stack)].filter((route) => / \/(admin|dashboard)(\/|$)/.test(route));
    expect(served.length).toBeGreaterThan(40);
    const unnamed = served.filter((route) => {
      const [method, path] = route.split(' ') as [string, string];
      const [, area, rest] = /^\/(admin|dashboard)(.*)$/.exec(path)!;
      return accessRuleOf(area as 'admin' | 'dashboard', method, rest || '/') === undefined;
    });
    expect(unnamed).toEqual([]);
    const listed = OPERATOR_ACCESS.map((rule) => `${rule.method} /${rule.area}${rule.path === '/' ? '' : rule.path}`);
    // Abuse routes are served only with `guard.abuse`: the rest of the table is all served here.
    expect(listed.filter((route) => !served.includes(route) && !route.includes('abuse'))).toEqual([]);
  });
});

describe('signing in through the provider', () => {
  it('lets a viewer read spend, budgets, keys and tenants, and refuses every write', async () => {
    const { jar, landed, status } = await signIn('vera');
    expect(landed).toBe(`${proxy.url}/admin/session`);
    expect(status).toBe(200);
    const session = await call(jar, 'GET', '/admin/session');
    expect(session.body).toMatchObject({
      actor: `vera@example.test (oidc:${issuer.url}#vera)`,
      role: 'viewer',
      via: 'oidc',
      subject: 'vera',
    });
    for (const path of READS) expect([path, (await call(jar, 'GET', path)).status]).toEqual([path, 200]);
    const keys = (await call(jar, 'GET', '/admin/keys')).body.keys as Record<string, unknown>[];
    expect(JSON.stringify(keys)).not.toMatch(/sha256|tgk_/);
    const csrf = await csrfOf(jar);
    const operatorWrites: [string, string, unknown?][] = [
      ['POST', '/admin/keys', { id: 'vera-key', tenant: 'acme' }],
      ['POST', '/admin/keys/acme-app/revoke', {}],
      ['POST', '/admin/budgets/tenant/acme/top-up', { usd: 1 }],
      ['POST', '/admin/budgets/tenant/acme/reset', {}],
      ['POST', '/admin/guard/addresses/10.0.0.1/unblock', {}],
      ['GET', '/admin/guard/mitigations'],
      // Express matches a route whatever its case and with a trailing slash: so does the table.
      ['POST', '/admin/KEYS/', { id: 'vera-key-2', tenant: 'acme' }],
    ];
    for (const [method, path, body] of [...operatorWrites, ...ADMIN_ONLY]) {
      const answer = await call(jar, method, path, body, csrf);
      expect([method, path, answer.status, (answer.body.error as { code?: string })?.code]).toEqual([
        method,
        path,
        403,
        'insufficient_scope',
      ]);
    }
  });

  it('lets an operator change keys, top up and reset budgets and clear blocks, and refuses tenants and prices', async () => {
    const { jar } = await signIn('otto');
    const csrf = await csrfOf(jar);
    for (const path of READS) expect([path, (await call(jar, 'GET', path)).status]).toEqual([path, 200]);
    const writes: [string, string, unknown, number][] = [
      ['POST', '/admin/keys', { id: 'otto-key', tenant: 'acme' }, 201],
      ['POST', '/admin/keys/otto-key/rotate', { id: 'otto-key-2' }, 201],
      ['POST', '/admin/keys/otto-key-2/revoke', {}, 200],
      ['POST', '/admin/budgets/tenant/acme/top-up', { usd: 2 }, 200],
      ['POST', '/admin/budgets/tenant/acme/reset', {}, 200],
    ];
    for (const [method, path, body, expected] of writes)
      expect([path, (await call(jar, method, path, body, csrf)).status]).toEqual([path, expected]);
    expect((await call(jar, 'GET', '/admin/guard/mitigations')).status).toBe(200);
    for (const [method, path, body] of ADMIN_ONLY)
      expect([method, path, (await call(jar, method, path, body, csrf)).status]).toEqual([method, path, 403]);
    // A write without the session's CSRF token is refused, whatever the role.
    expect((await call(jar, 'POST', '/admin/budgets/tenant/acme/reset', {})).status).toBe(403);
  });

  it('records every write by subject, role and "oidc", the refused ones too', async () => {
    const entries = (await withKey('GET', '/admin/audit?limit=1000')).body.entries as Record<string, unknown>[];
    const otto = `otto@example.test (oidc:${issuer.url}#otto)`;
    const ottos = entries.filter((entry) => entry.actor === otto);
    expect(ottos.map((entry) => `${entry.action} ${entry.outcome}`)).toEqual(
      expect.arrayContaining(['key.create done', 'key.rotate done', 'key.revoke done', 'budget.top-up done']),
    );
    for (const entry of ottos) expect(entry).toMatchObject({ role: 'operator', via: 'oidc' });
    const veras = entries.filter((entry) => entry.actor === `vera@example.test (oidc:${issuer.url}#vera)`);
    expect(veras.length).toBeGreaterThanOrEqual(8);
    for (const entry of veras) expect(entry).toMatchObject({ role: 'viewer', via: 'oidc', outcome: 'refused' });
    // The admin key's writes are recorded as before.
    expect((await withKey('POST', '/admin/budgets/tenant/globex/top-up', { usd: 1 })).status).toBe(200);
    const latest = ((await withKey('GET', '/admin/audit?limit=1')).body.entries as Record<string, unknown>[])[0];
    expect(latest).toMatchObject({ actor: 'admin key', role: 'admin', via: 'admin-key', action: 'budget.top-up' });
  });

  it('shows a tenant-scoped viewer its tenants only, in lists and single reads', async () => {
    const { jar } = await signIn('tess');
    const tenants = (await call(jar, 'GET', '/admin/tenants')).body.tenants as { id: string }[];
    expect(tenants.map((tenant) => tenant.id)).toEqual(['acme']);
    const keys = (await call(jar, 'GET', '/admin/keys')).body.keys as { id: string; tenantId?: string }[];
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.every((key) => key.tenantId === 'acme')).toBe(true);
    expect((await call(jar, 'GET', '/admin/tenants/acme')).status).toBe(200);
    expect((await call(jar, 'GET', '/admin/tenants/globex')).status).toBe(404);
    expect((await call(jar, 'GET', '/admin/budgets/tenant/acme')).status).toBe(200);
    expect((await call(jar, 'GET', '/admin/budgets/tenant/globex')).status).toBe(404);
    // What spans every tenant is refused.
    expect((await call(jar, 'GET', '/admin/budgets')).status).toBe(403);
    expect((await call(jar, 'GET', '/admin/budgets/global')).status).toBe(403);
    expect((await call(jar, 'GET', '/dashboard/api/tenants/acme')).status).toBe(200);
    expect((await call(jar, 'GET', '/dashboard/api/tenants/globex')).status).toBe(404);
    expect((await call(jar, 'GET', '/dashboard/api/overview')).status).toBe(403);
  });

  it('refuses a sign-in whose claim maps to no role', async () => {
    const { jar, status } = await signIn('nobody');
    expect(status).toBe(403);
    expect(jar.cookies.has('tg_operator_session')).toBe(false);
  });
});

describe('a sign-in that was tampered with', () => {
  /** Walks to the provider's redirect back to the gateway, and stops there: the callback URL and the cookies. */
  async function untilCallback(login: string): Promise<{ jar: CookieJar; callback: URL }> {
    const jar = new CookieJar();
    const atCallback = (url: URL) => url.origin === proxy.url && url.pathname === '/admin/callback';
    const { url } = await browse(jar, `${proxy.url}/admin/login`, login, atCallback);
    return { jar, callback: new URL(url) };
  }

  it('is refused with a state that is not the one sent', async () => {
    const { jar, callback } = await untilCallback('vera');
    callback.searchParams.set('state', 'not-the-state');
    const answer = await call(jar, 'GET', `${callback.pathname}${callback.search}`);
    expect(answer.status).toBe(400);
    expect(jar.cookies.has('tg_operator_session')).toBe(false);
  });

  it("is refused with another sign-in's cookie", async () => {
    const first = await untilCallback('vera');
    const second = await untilCallback('otto');
    const answer = await call(first.jar, 'GET', `${second.callback.pathname}${second.callback.search}`);
    expect(answer.status).toBe(400);
  });

  it('is refused when the nonce the ID token carries is not the one sent', async () => {
    const { jar, callback } = await untilCallback('vera');
    const pending = decodeJwt(jar.cookies.get('tg_operator_sign_in')!);
    const forged = await new SignJWT({ ...pending, nonce: 'another-nonce' })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(SESSION_SECRET));
    jar.cookies.set('tg_operator_sign_in', forged);
    const answer = await call(jar, 'GET', `${callback.pathname}${callback.search}`);
    expect(answer.status).toBe(400);
    expect(String((answer.body.error as { message?: string }).message)).toMatch(/nonce/);
  });
});

describe('a session', () => {
  it('is refused once signed out, and once its subject is revoked by an admin', async () => {
    const otto = await signIn('otto');
    const kept = otto.jar.header();
    expect((await call(otto.jar, 'POST', '/admin/logout')).status).toBe(204);
    const replayed = await fetch(`${proxy.url}/admin/session`, { headers: { cookie: kept } });
    expect(replayed.status).toBe(401);

    const vera = await signIn('vera');
    expect((await call(vera.jar, 'GET', '/admin/keys')).status).toBe(200);
    expect((await withKey('POST', '/admin/sessions/revoke', { subject: 'vera' })).status).toBe(200);
    expect((await call(vera.jar, 'GET', '/admin/keys')).status).toBe(401);
    expect((await call(vera.jar, 'GET', '/dashboard/api/overview')).status).toBe(401);
    // A new sign-in opens a new session.
    expect((await call((await signIn('vera')).jar, 'GET', '/admin/keys')).status).toBe(200);
  });

  it('is refused once expired, forged with another secret, or altered', async () => {
    const { jar } = await signIn('otto');
    const token = jar.cookies.get('tg_operator_session')!;
    const claims = decodeJwt(token);
    const sign = (payload: Record<string, unknown>, secret: string) =>
      new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(secret));
    const now = Math.floor(Date.now() / 1000);
    const expired = await sign({ ...claims, iat: now - 7200, exp: now - 3600, opened: Date.now() }, SESSION_SECRET);
    const forged = await sign({ ...claims, role: 'admin' }, 'another-secret-of-32-characters-or-more!');
    const [header, , signature] = token.split('.');
    const payload = Buffer.from(JSON.stringify({ ...claims, role: 'admin' })).toString('base64url');
    const altered = `${header}.${payload}.${signature}`;
    for (const cookie of [expired, forged, altered, 'not-a-jwt']) {
      const answer = await fetch(`${proxy.url}/admin/session`, {
        headers: { cookie: `tg_operator_session=${cookie}` },
      });
      expect(answer.status).toBe(401);
      expect(answer.headers.get('www-authenticate')).toMatch(/Bearer/);
    }
    expect((await call(jar, 'GET', '/admin/session')).status).toBe(200);
  });

  it('is never refused by an address block, which still holds for everyone else', async () => {
    const { jar } = await signIn('otto');
    const statuses: number[] = [];
    for (let i = 0; i < 30 && !statuses.includes(429); i++)
      statuses.push(
        (await fetch(`${proxy.url}/admin/keys`, { headers: { authorization: `Bearer tgk_wrong-${i}` } })).status,
      );
    expect(statuses.at(-1)).toBe(429);
    expect((await fetch(`${proxy.url}/admin/keys`)).status).toBe(429);
    expect((await call(jar, 'GET', '/admin/keys')).status).toBe(200);
    expect((await withKey('GET', '/admin/keys')).status).toBe(200);
  });
});

describe('the admin key with a role of its own', () => {
  it('is let in and refused as that role, on /admin and the dashboard, and recorded with it', async () => {
    const readerKey = newApiKey();
    const audit = memoryAuditStore();
    const reader = await startProxy(
      { adminKeySha256: sha256Hex(readerKey), operators: { keyRole: 'viewer' } },
      { audit },
    );
    try {
      const send = async (method: string, path: string, body?: unknown) =>
        answerOf(
          await fetch(`${reader.url}${path}`, {
            method,
            headers: { authorization: `Bearer ${readerKey}`, 'content-type': 'application/json' },
            ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          }),
        );
      expect((await send('GET', '/admin/keys')).status).toBe(200);
      expect((await send('GET', '/dashboard/api/overview')).status).toBe(200);
      expect((await send('POST', '/admin/keys', { id: 'k1' })).status).toBe(403);
      expect((await send('POST', '/dashboard/api/keys', { id: 'k2' })).status).toBe(403);
      expect((await send('GET', '/admin/audit')).status).toBe(403);
      expect((await send('GET', '/admin/session')).body).toEqual({
        actor: 'admin key',
        role: 'viewer',
        via: 'admin-key',
      });
    } finally {
      await reader.close();
    }
  });
});

describe('sessions of two gateways on one Redis', () => {
  it('are revoked for both when one signs out or revokes the subject', async () => {
    const prefix = `tg-test-oidc-${process.pid}-${Date.now()}:`;
    const shared = await openOidcIssuer();
    const oidc = {
      issuer: shared.url,
      clientId: CLIENT.clientId,
      clientSecretEnv: 'TG_TEST_OIDC_CLIENT_SECRET',
      sessionSecretEnv: 'TG_TEST_OPERATOR_SESSION_SECRET',
      scopes: ['openid', 'email', 'roles'],
      roleMap: { 'tollgate-operator': 'operator' as const },
    };
    const config = { adminKeySha256: sha256Hex(adminKey), operators: { oidc } };
    // Two gateways as two processes would be: each with its own connection to the one Redis.
    const stores = [createRedisStores({ url: REDIS_URL, prefix }), createRedisStores({ url: REDIS_URL, prefix })];
    const first = await startProxy(config, { stores: stores[0] });
    const second = await startProxy(config, { stores: stores[1] });
    shared.serve(ACCOUNTS, { ...CLIENT, redirectUri: `${first.url}/admin/callback` });
    try {
      const sessionOn = async (proxy: RunningProxy, jar: CookieJar) =>
        (await fetch(`${proxy.url}/admin/session`, { headers: { cookie: jar.header() } })).status;
      const signInOnFirst = async () => {
        const jar = new CookieJar();
        await browse(jar, `${first.url}/admin/login?next=/admin/session`, 'otto');
        return jar;
      };
      // One sign-in serves on both (one secret); signing out on the second ends it on the first.
      const once = await signInOnFirst();
      expect([await sessionOn(first, once), await sessionOn(second, once)]).toEqual([200, 200]);
      const out = await fetch(`${second.url}/admin/logout`, {
        method: 'POST',
        headers: { cookie: once.header(), accept: 'application/json' },
      });
      expect(out.status).toBe(204);
      expect([await sessionOn(first, once), await sessionOn(second, once)]).toEqual([401, 401]);
      // The subject revoked through the second ends its sessions on the first.
      const again = await signInOnFirst();
      expect(await sessionOn(first, again)).toBe(200);
      const revoke = await fetch(`${second.url}/admin/sessions/revoke`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ subject: 'otto' }),
      });
      expect(revoke.status).toBe(200);
      expect([await sessionOn(first, again), await sessionOn(second, again)]).toEqual([401, 401]);
    } finally {
      await first.close();
      await second.close();
      await shared.close();
      for (const store of stores) await store.close();
      await deleteRedisPrefix(prefix);
    }
  });
});
