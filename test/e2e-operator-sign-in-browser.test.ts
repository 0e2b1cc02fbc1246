// The dashboard in Chromium (Debian's, through playwright-core) signed into with OpenID Connect: a viewer and an
// operator go through a real provider's login and consent pages, and each may do what its role allows and no more.
import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM } from '../packages/dashboard/test/helpers.js';
import { openOidcIssuer } from './helpers/oidc-issuer.js';
import type { RunningIssuer } from './helpers/oidc-issuer.js';
import { answerOf, newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const SHOTS = '/tmp/operator-sign-in-shots';
const adminKey = newApiKey();
const CLIENT = { clientId: 'tollgate-dashboard', clientSecret: 'client-secret-of-the-browser-test' };

let issuer: RunningIssuer;
let proxy: RunningProxy;
let browser: Browser;

async function withKey(method: string, path: string, body?: unknown) {
  return answerOf(
    await fetch(`${proxy.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    }),
  );
}

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  process.env.TG_TEST_BROWSER_OIDC_SECRET = CLIENT.clientSecret;
  issuer = await openOidcIssuer();
  proxy = await startProxy({
    adminKeySha256: sha256Hex(adminKey),
    tiers: { pro: { requestsPerMinute: 1000, tokensPerMinute: 1_000_000 } },
    tenants: { acme: { tier: 'pro', budget: { usd: 10, period: 'day' } } },
    operators: {
      oidc: {
        issuer: issuer.url,
        clientId: CLIENT.clientId,
        clientSecretEnv: 'TG_TEST_BROWSER_OIDC_SECRET',
        scopes: ['openid', 'email', 'roles'],
      },
    },
  });
  issuer.serve(
    [
      { login: 'vera', email: 'vera@example.test', roles: ['viewer'] },
      { login: 'otto', email: 'otto@example.test', roles: ['operator'] },
    ],
    { ...CLIENT, redirectUri: `${proxy.url}/admin/callback` },
  );
  for (const id of ['acme-support', 'acme-batch'])
    expect((await withKey('POST', '/admin/keys', { id, tenant: 'acme' })).status).toBe(201);
  browser = await chromium.launch({ ...CHROMIUM, args: [...CHROMIUM.args, '--disable-quic'] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await proxy?.close();
  await issuer?.close();
});

/** From the dashboard's sign-in page, through the provider's login and consent, back to the dashboard. */
async function signIn(login: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('dialog', (dialog) => void dialog.accept());
  await page.goto(`${proxy.url}/dashboard/keys`);
  expect(new URL(page.url()).pathname).toBe('/dashboard/login');
  await page.click('#single-sign-on');
  await page.waitForURL((url) => url.origin === issuer.url);
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'any password');
  await page.click('button[type="submit"]');
  // The provider asks to confirm what the dashboard asks for, once.
  await page.waitForURL((url) => url.origin === proxy.url || /\/interaction\//.test(url.pathname));
  if (new URL(page.url()).origin === issuer.url) await page.click('button[type="submit"]');
  await page.waitForURL(`${proxy.url}/dashboard/keys`);
  return page;
}

/** The HTTP status of the next page the browser is sent to by `act`. */
async function statusAfter(page: Page, act: () => Promise<unknown>): Promise<number> {
  const answered = page.waitForResponse((response) => response.request().isNavigationRequest());
  await act();
  return (await answered).status();
}

describe('operators signed in with OIDC, in Chromium', () => {
  it('shows a viewer spend and keys, and refuses its writes and the audit page', async () => {
    const page = await signIn('vera');
    await expect(page.locator('text=acme-support').first().isVisible()).resolves.toBe(true);
    await page.screenshot({ path: `${SHOTS}/viewer-keys.png`, fullPage: true });
    const revoke = await statusAfter(page, () => page.click('button[aria-label="Revoke acme-support"]'));
    expect(revoke).toBe(403);
    await expect(page.locator('body').innerText()).resolves.toContain('viewer role may not POST');
    await page.screenshot({ path: `${SHOTS}/viewer-revoke-refused.png`, fullPage: true });
    const keys = (await withKey('GET', '/admin/keys')).body.keys as Record<string, unknown>[];
    expect(keys.find((key) => key.id === 'acme-support')).not.toHaveProperty('disabled');
    expect((await page.goto(`${proxy.url}/dashboard/`))?.status()).toBe(200);
    await page.screenshot({ path: `${SHOTS}/viewer-overview.png`, fullPage: true });
    expect((await page.goto(`${proxy.url}/dashboard/audit`))?.status()).toBe(403);
    expect((await page.goto(`${proxy.url}/dashboard/abuse`))?.status()).toBe(403);
    await page.context().close();
  }, 60_000);

  it('lets an operator revoke a key, recorded by name, and refuses the audit page', async () => {
    const page = await signIn('otto');
    const revoke = await statusAfter(page, () => page.click('button[aria-label="Revoke acme-batch"]'));
    // Done: sent back to the keys page with the news.
    expect(revoke).toBe(303);
    await page.waitForURL(`${proxy.url}/dashboard/keys`);
    await expect(page.locator('body').innerText()).resolves.toContain('Key acme-batch is revoked');
    await page.screenshot({ path: `${SHOTS}/operator-revoked.png`, fullPage: true });
    expect((await page.goto(`${proxy.url}/dashboard/audit`))?.status()).toBe(403);
    await page.screenshot({ path: `${SHOTS}/operator-audit-refused.png`, fullPage: true });

    const entries = (await withKey('GET', '/admin/audit?action=key.revoke')).body.entries as Record<string, unknown>[];
    expect(entries[0]).toMatchObject({
      actor: `otto@example.test (oidc:${issuer.url}#otto)`,
      role: 'operator',
      via: 'oidc',
      action: 'key.revoke',
      target: 'key:acme-batch',
      outcome: 'done',
      path: '/dashboard/keys/acme-batch/revoke',
    });
    // The viewer's refused try is on the trail too, by name and role.
    const refused = (
      await withKey('GET', '/admin/audit?actor=' + encodeURIComponent(`vera@example.test (oidc:${issuer.url}#vera)`))
    ).body.entries as Record<string, unknown>[];
    expect(refused).toEqual([expect.objectContaining({ role: 'viewer', outcome: 'refused', status: 403 })]);

    // Signing out ends the session: the dashboard asks to sign in again.
    await page.goto(`${proxy.url}/dashboard/`);
    await page.click('form[action$="/logout"] button');
    await page.waitForURL(`${proxy.url}/dashboard/login`);
    await page.goto(`${proxy.url}/dashboard/keys`);
    expect(new URL(page.url()).pathname).toBe('/dashboard/login');
    await page.screenshot({ path: `${SHOTS}/signed-out.png`, fullPage: true });
    await page.context().close();
  }, 60_000);
});
