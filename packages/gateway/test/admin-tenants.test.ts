// /admin/tenants on both Express majors (this file runs in `pnpm test:express4` too): a stored tenant's tier decides
// its limits from the next request, `:import` is matched as written, and refusals are 4xx naming the field.
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

function gateway(): GatewayApp {
  app = createGatewayApp(
    validateConfig({
      ...WITH_MOCK,
      adminKeySha256: hashApiKey(adminKey),
      tiers: { free: { requestsPerMinute: 1 }, pro: { requestsPerMinute: 1000 } },
      tenants: { acme: { tier: 'pro' } },
      log: { level: 'silent' },
    }),
    { stores: createMemoryStores(), log: () => undefined, metrics: false },
  );
  return app;
}

const chat = (proxy: GatewayApp, key: string) =>
  request(proxy)
    .post('/v1/chat/completions')
    .set('authorization', `Bearer ${key}`)
    .send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 });

describe('/admin/tenants (Express 4 and 5)', () => {
  it("applies a stored tenant's tier from the next request", async () => {
    const proxy = gateway();
    await proxy.spendReady();
    const created = await request(proxy).post('/admin/tenants').set(admin).send({ id: 'globex', tier: 'free' });
    expect(created.status).toBe(201);
    const key = (await request(proxy).post('/admin/keys').set(admin).send({ tenant: 'globex' })).body.key as string;
    expect((await chat(proxy, key)).status).toBe(200);
    expect((await chat(proxy, key)).status).toBe(429);
    expect((await request(proxy).patch('/admin/tenants/globex').set(admin).send({ tier: 'pro' })).status).toBe(200);
    expect((await chat(proxy, key)).status).toBe(200);
    // The dashboard makes keys for it too.
    const onDashboard = await request(proxy).post('/dashboard/keys').set(admin).send({ tenant: 'globex' });
    expect(onDashboard.status).toBe(201);
  });

  it('imports NDJSON at /admin/tenants:import and lists by page', async () => {
    const proxy = gateway();
    await proxy.spendReady();
    const body = ['{"id":"b","tier":"pro"}', '{"id":"a","tier":"free"}', 'nope', '{"id":"c","tier":"pro"}'].join('\n');
    const imported = await request(proxy)
      .post('/admin/tenants:import')
      .set(admin)
      .set('content-type', 'application/x-ndjson')
      .send(body);
    expect(imported.status).toBe(200);
    expect(imported.body).toMatchObject({
      created: 3,
      errors: 1,
      lines: expect.arrayContaining([expect.objectContaining({ line: 3, outcome: 'error' })]),
    });
    const first = await request(proxy).get('/admin/tenants?limit=2').set(admin);
    expect(first.body.tenants.map((tenant: { id: string }) => tenant.id)).toEqual(['a', 'acme']);
    const next = await request(proxy)
      .get(`/admin/tenants?limit=2&cursor=${first.body.nextCursor as string}`)
      .set(admin);
    expect(next.body).toEqual({
      tenants: [expect.objectContaining({ id: 'b' }), expect.objectContaining({ id: 'c' })],
    });
    expect((await request(proxy).get('/admin/tenants:import').set(admin)).status).toBe(404);
  });

  it('refuses bad input with a 4xx, never a 500', async () => {
    const proxy = gateway();
    await proxy.spendReady();
    const unknownTier = await request(proxy).post('/admin/tenants').set(admin).send({ id: 'x', tier: 'gold' });
    expect(unknownTier.status).toBe(400);
    expect(unknownTier.body.error).toMatchObject({ code: 'invalid_request', param: 'tier' });
    expect((await request(proxy).post('/admin/tenants').set(admin).send([1])).status).toBe(400);
    expect((await request(proxy).get('/admin/tenants?limit=x').set(admin)).status).toBe(400);
    expect((await request(proxy).get('/admin/tenants?q=a&q=b').set(admin)).status).toBe(400);
    expect((await request(proxy).get('/admin/tenants/nobody').set(admin)).status).toBe(404);
    expect((await request(proxy).delete('/admin/tenants/acme').set(admin)).status).toBe(409);
    const renamed = await request(proxy).post('/admin/tenants').set(admin).send({ id: 'y', tier: 'pro' });
    expect(renamed.status).toBe(201);
    expect((await request(proxy).patch('/admin/tenants/y').set(admin).send({ id: 'z' })).status).toBe(400);
    expect((await request(proxy).patch('/admin/tenants/y').set(admin).send({ tier: null })).body.error.param).toBe(
      'tier',
    );
  });
});
