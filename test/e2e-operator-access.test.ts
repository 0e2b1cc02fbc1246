// The operator is never locked out: a valid admin key passes address blocks and auth-failure limits, which still hold
// for every other request from that address (a wrong admin key, a valid API key).
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

async function call(path: string, key: string, method = 'GET'): Promise<{ status: number; code?: string }> {
  const response = await fetch(`${proxy.url}${path}`, { method, headers: { authorization: `Bearer ${key}` } });
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
