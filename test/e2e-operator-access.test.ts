// The operator is never locked out: a valid admin key passes address blocks and auth-failure limits, which still hold
// for every other request from that address (a wrong admin key, a valid API key, a wrong key in the dashboard's form).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const adminKey = newApiKey();
const apiKey = newApiKey();
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startProxy({
    adminKeySha256: sha256Hex(adminKey),
    keys: [{ id: 'app', sha256: sha256Hex(apiKey), tenant: 'acme' }],
    tenants: { acme: { tier: 'pro' } },
    tiers: { pro: { requestsPerMinute: 1000, tokensPerMinute: 1_000_000 } },
    guard: { authFailures: { max: 3, windowSeconds: 60, block: '5m' }, abuse: { subjects: ['key', 'address'] } },
  });
});

afterAll(async () => {
  await proxy.close();
});

/** A request with `key` as Bearer: to a path of the first gateway, or to a whole URL. */
async function call(path: string, key: string, method = 'GET'): Promise<{ status: number; code?: string }> {
  const response = await fetch(path.startsWith('http') ? path : `${proxy.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}` },
  });
  const text = await response.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
  } catch {
    code = undefined;
  }
  return { status: response.status, ...(code === undefined ? {} : { code }) };
}

async function chat(key: string): Promise<{ status: number; code?: string }> {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] }),
  });
  const body = (await response.json()) as { error?: { code?: string } };
  return { status: response.status, ...(body.error?.code === undefined ? {} : { code: body.error.code }) };
}

describe('an address blocked for failed authentications', () => {
  it('still lets the valid admin key in, to every admin route and the one that clears the block', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 10 && !statuses.includes(429); i++) statuses.push((await chat(`tgk_wrong-${i}`)).status);
    expect(statuses.slice(0, 3)).toEqual([401, 401, 401]);
    expect(statuses.at(-1)).toBe(429);

    // Everything else from the address is refused: a valid API key, no key, a wrong admin key.
    expect(await chat(apiKey)).toEqual({ status: 429, code: 'auth_failures_exceeded' });
    expect(await call('/admin/guard/mitigations', 'tgk_not-the-admin-key')).toEqual({
      status: 429,
      code: 'auth_failures_exceeded',
    });

    // The admin key is the operator's: every admin route answers it, the metrics and the dashboard's API too.
    const listed = await fetch(`${proxy.url}/admin/guard/mitigations`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(listed.status).toBe(200);
    const { mitigations } = (await listed.json()) as { mitigations: { kind: string; subject: string }[] };
    expect(mitigations.map(({ kind, subject }) => `${kind} ${subject}`)).toEqual(['block ip:127.0.0.1']);
    expect((await call('/admin/abuse', adminKey)).status).toBe(200);
    expect((await call('/admin/keys', adminKey)).status).toBe(200);
    expect((await call('/metrics', adminKey)).status).toBe(200);
    expect((await call('/dashboard/api/overview', adminKey)).status).toBe(200);

    // The route that clears the block, from the blocked address itself; then the API key works again.
    expect(await call('/admin/guard/addresses/127.0.0.1/unblock', adminKey, 'POST')).toEqual({ status: 200 });
    expect((await chat(apiKey)).status).toBe(200);
  }, 30_000);
});

/** A sign-in through the dashboard's form, as a browser posts it: the form's token and cookie, then the key. */
async function signIn(url: string, key: string): Promise<{ status: number; code?: string; session?: string }> {
  const form = await fetch(`${url}/dashboard/login`);
  const formCookie = form.headers.getSetCookie().find((cookie) => cookie.startsWith('tg_dashboard_sign_in='));
  const token = /name="_csrf" value="([^"]+)"/.exec(await form.text())?.[1];
  const answer = await fetch(`${url}/dashboard/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: formCookie!.split(';')[0]! },
    body: new URLSearchParams({ _csrf: token!, key }).toString(),
  });
  const text = await answer.text();
  const code = answer.headers.get('content-type')?.includes('json')
    ? (JSON.parse(text) as { error?: { code?: string } }).error?.code
    : undefined;
  const session = answer.headers.getSetCookie().find((cookie) => cookie.startsWith('tg_dashboard_session='));
  return {
    status: answer.status,
    ...(code === undefined ? {} : { code }),
    ...(session === undefined ? {} : { session: session.split(';')[0]! }),
  };
}

/** A fresh gateway (the address's count at 0), for one sequence of guesses. */
async function withGateway(use: (url: string) => Promise<void>): Promise<void> {
  const gateway = await startProxy({
    adminKeySha256: sha256Hex(adminKey),
    guard: { authFailures: { max: 3, windowSeconds: 60, block: '5m' } },
  });
  try {
    await use(gateway.url);
  } finally {
    await gateway.close();
  }
}

/** Different wrong keys, one after another, until the address is blocked (at most 10): their statuses. */
async function guessUntilBlocked(guess: (key: string) => Promise<{ status: number }>): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < 10 && !statuses.includes(429); i++) statuses.push((await guess(`tgk_guess-${i}`)).status);
  return statuses;
}

describe("the dashboard's sign-in form", () => {
  it('counts wrong keys as /admin does and blocks the address alike, while the admin key still signs in', async () => {
    let onAdmin: number[] = [];
    await withGateway(async (url) => {
      onAdmin = await guessUntilBlocked((key) => call(`${url}/admin/guard/mitigations`, key));
    });
    expect(onAdmin.at(-1)).toBe(429);

    await withGateway(async (url) => {
      expect(await guessUntilBlocked((key) => signIn(url, key))).toEqual(onAdmin);
      expect(await signIn(url, 'tgk_one-more-guess')).toEqual({ status: 429, code: 'auth_failures_exceeded' });
      // One count: the form's failures block the admin API to a wrong key too.
      expect(await call(`${url}/admin/guard/mitigations`, 'tgk_not-the-admin-key')).toEqual({
        status: 429,
        code: 'auth_failures_exceeded',
      });

      // The operator is never locked out: the admin key in the form opens a session, and the session is let in.
      const signedIn = await signIn(url, adminKey);
      expect(signedIn.status).toBe(303);
      const overview = await fetch(`${url}/dashboard/api/overview`, { headers: { cookie: signedIn.session! } });
      expect(overview.status).toBe(200);
    });
  }, 30_000);

  it("counts a wrong key in a header on the dashboard's pages the same way", async () => {
    let onAdmin: number[] = [];
    await withGateway(async (url) => {
      onAdmin = await guessUntilBlocked((key) => call(`${url}/admin/guard/mitigations`, key));
    });
    await withGateway(async (url) => {
      expect(await guessUntilBlocked((key) => call(`${url}/dashboard/api/overview`, key))).toEqual(onAdmin);
      expect((await signIn(url, 'tgk_another-guess')).status).toBe(429);
      expect((await call(`${url}/dashboard/api/overview`, adminKey)).status).toBe(200);
    });
  }, 30_000);
});
