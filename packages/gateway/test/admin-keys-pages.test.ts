// GET /admin/keys by page: the config file's keys and the store's in id order, by tenant and by the start of the id,
// never every key read, and bad parameters refused with a 400 naming them.
import { afterEach, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createMemoryStores } from '@tollgate/core';
import { createGatewayApp } from '../src/app.js';
import type { GatewayApp } from '../src/app.js';
import { validateConfig } from '../src/config/index.js';
import { WITH_MOCK } from './helpers/mock-upstream.js';

const adminKey = generateApiKey();
const admin = { authorization: `Bearer ${adminKey}` };
let app: GatewayApp | undefined;

afterEach(async () => app?.close());

/** A gateway with two config keys (c-acme, k-050x) and 150 stored keys k000..k149, tenants acme and globex by turns. */
async function gateway(): Promise<GatewayApp> {
  const stores = createMemoryStores();
  // Lists read pages: a list of every key is a failure here.
  stores.keys.list = () => Promise.reject(new Error('a list read every key'));
  // No key here carries a budget: what a store with its own list of them (Redis's) answers without reading every key.
  Object.assign(stores.keys, { listBudgeted: async () => [] });
  for (let i = 0; i < 150; i++) {
    await stores.keys.put({
      id: `k${String(i).padStart(3, '0')}`,
      sha256: hashApiKey(`key ${i}`),
      tenantId: i % 2 === 0 ? 'acme' : 'globex',
      scopes: [],
      createdAt: '2026-11-27T08:00:00.000Z',
      // k007 expires in two days, k008 in thirty: the overview warns of the first only.
      ...(i === 7 ? { expiresAt: new Date(Date.now() + 2 * 86_400_000).toISOString() } : {}),
      ...(i === 8 ? { expiresAt: new Date(Date.now() + 30 * 86_400_000).toISOString() } : {}),
    });
  }
  app = createGatewayApp(
    validateConfig({
      ...WITH_MOCK,
      adminKeySha256: hashApiKey(adminKey),
      tiers: { pro: { requestsPerMinute: 1000, perKey: { requestsPerMinute: 100 } } },
      tenants: { acme: { tier: 'pro' }, globex: { tier: 'pro' } },
      keys: [
        { id: 'c-acme', sha256: hashApiKey('config one'), tenant: 'acme', scopes: [] },
        { id: 'k050x', sha256: hashApiKey('config two'), tenant: 'globex', scopes: [] },
      ],
      log: { level: 'silent' },
    }),
    { stores, log: () => undefined, metrics: false },
  );
  return app;
}

const ids = (body: { keys: { id: string }[] }) => body.keys.map((key) => key.id);
const stored = Array.from({ length: 150 }, (_, i) => `k${String(i).padStart(3, '0')}`);
const everyId = ['c-acme', ...stored.slice(0, 51), 'k050x', ...stored.slice(51)];

describe('GET /admin/keys by page', () => {
  it('answers the first 100 keys and the next cursor without parameters, and pages through every key once', async () => {
    const proxy = await gateway();
    const first = await request(proxy).get('/admin/keys').set(admin);
    expect(first.status).toBe(200);
    expect(ids(first.body)).toEqual(everyId.slice(0, 100));
    expect(first.body.next).toBe(everyId[99]);
    expect(first.body.keys[0]).toMatchObject({ id: 'c-acme', source: 'config', tenantId: 'acme' });
    expect(first.body.keys[1]).toMatchObject({ id: 'k000', source: 'store' });
    expect(first.body.keys[0]).not.toHaveProperty('sha256');

    const seen: string[] = [];
    let after = '';
    do {
      const page = await request(proxy).get(`/admin/keys?limit=40&after=${after}`).set(admin);
      expect(page.status).toBe(200);
      seen.push(...ids(page.body));
      after = (page.body.next as string | undefined) ?? '';
    } while (after !== '');
    expect(seen).toEqual(everyId);
  });

  it("reads one tenant's keys and the start of an id", async () => {
    const proxy = await gateway();
    const globex = await request(proxy).get('/admin/keys?tenant=globex&q=k05&limit=3').set(admin);
    expect(ids(globex.body)).toEqual(['k050x', 'k051', 'k053']);
    expect(globex.body.next).toBe('k053');
    const rest = await request(proxy).get('/admin/keys?tenant=globex&q=k05&limit=3&after=k053').set(admin);
    expect(ids(rest.body)).toEqual(['k055', 'k057', 'k059']);
    expect(rest.body.next).toBeUndefined();
    const acme = await request(proxy).get('/admin/keys?tenant=acme&limit=1000').set(admin);
    expect(ids(acme.body)).toEqual(['c-acme', ...stored.filter((_, i) => i % 2 === 0)]);
    expect(acme.body.keys.every((key: { tenantId: string }) => key.tenantId === 'acme')).toBe(true);
    expect((await request(proxy).get('/admin/keys?tenant=nobody').set(admin)).body).toEqual({ keys: [] });
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=ten', 'limit'],
    ['limit=1.5', 'limit'],
    ['limit=-3', 'limit'],
    ['after=a&after=b', 'after'],
    [`q=${'x'.repeat(129)}`, 'q'],
    ['tenant=a&tenant=b', 'tenant'],
  ])('refuses ?%s with a 400 naming %s', async (query, param) => {
    const proxy = await gateway();
    const response = await request(proxy).get(`/admin/keys?${query}`).set(admin);
    expect(response.status).toBe(400);
    expect(response.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_request', param });
  });

  it("reads a tenant page's quotas from one page of its keys, not every key", async () => {
    const proxy = await gateway();
    const page = await request(proxy).get('/dashboard/tenants/acme?format=json').set(admin);
    expect(page.status).toBe(200);
    const body = page.body as { quotas: { name: string }[]; problems: string[] };
    expect(body.problems).toEqual([]);
    const keyQuotas = new Set(body.quotas.map((quota) => quota.name).filter((name) => name.startsWith('key ')));
    // Its page of keys (list() fails here): the config key c-acme and the store's k000, k002, ... k148, in id order.
    expect(keyQuotas.size).toBe(76);
    expect([...keyQuotas].slice(0, 3)).toEqual(['key c-acme', 'key k000', 'key k002']);
    expect(keyQuotas.has('key k001')).toBe(false);
  });

  it('reads no list of every key for the overview: its expiry warnings from the index, the quotas of its tenants', async () => {
    const proxy = await gateway();
    const overview = await request(proxy).get('/dashboard/?format=json').set(admin);
    expect(overview.status).toBe(200);
    const body = overview.body as { alerts: { level: string; message: string }[]; quotas: { name: string }[] };
    expect(body.alerts.filter((alert) => alert.level === 'info').map((alert) => alert.message)).toEqual([
      expect.stringMatching(/^Key k007 expires in /),
    ]);
    expect(body.alerts.filter((alert) => alert.level === 'critical')).toEqual([]);
    // The config's two tenants (few enough to list); no global limit is configured.
    expect(new Set(body.quotas.map((quota) => quota.name))).toEqual(new Set(['tenant acme', 'tenant globex']));
  });
});
