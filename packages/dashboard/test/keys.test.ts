// Keys through the dashboard's routes change the shared key store, and apiKeyAuth on that store follows at once.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { hashApiKey } from '@tollgate/auth';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { cookieOf, createDashboardApp, hiddenField, withCookies } from './helpers.js';
import type { DashboardTestApp } from './helpers.js';

let subject: DashboardTestApp;
let session: string | undefined;

beforeAll(async () => {
  subject = await createDashboardApp({
    dashboard: {
      configKeys: () => [
        { id: 'from-config', sha256: hashApiKey('config-key'), scopes: ['chat'], createdAt: new Date(0).toISOString() },
      ],
    },
  });
  const form = await request(subject.app).get('/dashboard/login');
  const answer = await withCookies(
    request(subject.app).post('/dashboard/login'),
    cookieOf(form.headers['set-cookie'], 'tg_dashboard_sign_in'),
  )
    .type('form')
    .send({ key: subject.adminKey, _csrf: hiddenField(form.text, '_csrf') });
  session = cookieOf(answer.headers['set-cookie'], 'tg_dashboard_session');
});

afterAll(async () => {
  await subject.close();
});

/** What the keys page shows a signed-in browser, and the token its forms carry. */
async function keysPage(): Promise<{ html: string; token: string }> {
  const page = await withCookies(request(subject.app).get('/dashboard/keys'), session);
  expect(page.status).toBe(200);
  return { html: page.text, token: hiddenField(page.text, '_csrf')! };
}

async function postForm(path: string, fields: Record<string, string>) {
  const { token } = await keysPage();
  return withCookies(request(subject.app).post(path), session)
    .type('form')
    .send({ ...fields, _csrf: token });
}

const whoami = (key: string) => request(subject.app).get('/v1/whoami').set('authorization', `Bearer ${key}`);

describe('creating a key from the page', () => {
  it('stores a hashed record with the form fields and shows the key once', async () => {
    const created = await postForm('/dashboard/keys', {
      tenant: 'acme',
      user: 'dana',
      feature: 'search',
      scopes: 'chat, embeddings',
      expires: '30d',
      id: 'acme-dana',
    });
    expect(created.status).toBe(303);
    expect(created.headers.location).toBe('/dashboard/keys');

    const first = await keysPage();
    const key = /<code class="secret" id="created-key">(tgk_[0-9A-Za-z]{43})<\/code>/.exec(first.html)?.[1];
    expect(key).toBeDefined();
    const second = await keysPage();
    expect(second.html).not.toContain(key!);

    const record = (await subject.stores.keys.findById('acme-dana'))!;
    expect(record).toMatchObject({
      id: 'acme-dana',
      tenantId: 'acme',
      userId: 'dana',
      feature: 'search',
      scopes: ['chat', 'embeddings'],
    });
    expect(record.sha256).toBe(hashApiKey(key!));
    expect(Date.parse(record.expiresAt!) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(JSON.stringify(record)).not.toContain(key!);

    const identity = await whoami(key!);
    expect(identity.status).toBe(200);
    expect(identity.body.identity).toMatchObject({ keyId: 'acme-dana', tenantId: 'acme', userId: 'dana' });
  });

  it('refuses an unknown tenant, a taken id and a past expiry, storing nothing', async () => {
    const before = (await subject.stores.keys.list()).length;
    const json = (fields: Record<string, unknown>) =>
      request(subject.app).post('/dashboard/api/keys').set('authorization', `Bearer ${subject.adminKey}`).send(fields);
    expect((await json({ tenant: 'initech' })).body.error).toMatchObject({ code: 'invalid_request', param: 'tenant' });
    expect((await json({ id: 'acme-app' })).status).toBe(409);
    expect((await json({ id: 'from-config' })).status).toBe(409);
    expect((await json({ expires: '2001-01-01' })).body.error.param).toBe('expires');
    expect((await json({ id: 'bad id!' })).body.error.param).toBe('id');
    expect((await subject.stores.keys.list()).length).toBe(before);
    // The page answers a browser's mistake with a page, not JSON.
    const page = await postForm('/dashboard/keys', { tenant: 'initech' });
    expect(page.status).toBe(400);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.text).toContain('Unknown tenant');
  });
});

describe('revoking a key', () => {
  it('disables it in the store, and apiKeyAuth on the same store refuses it at once', async () => {
    const created = await request(subject.app)
      .post('/dashboard/api/keys')
      .set('authorization', `Bearer ${subject.adminKey}`)
      .send({ tenant: 'globex', user: 'eve', id: 'globex-eve' });
    const key = created.body.key as string;
    expect((await whoami(key)).status).toBe(200);

    const revoked = await postForm('/dashboard/keys/globex-eve/revoke', {});
    expect(revoked.status).toBe(303);
    expect((await subject.stores.keys.findById('globex-eve'))!.disabled).toBe(true);
    const refused = await whoami(key);
    expect(refused.status).toBe(401);
    expect(refused.body.error.message).toBe('This API key has been revoked.');

    const page = await keysPage();
    expect(page.html).toContain('Key globex-eve is revoked');
    expect(page.html).toMatch(/data-key="globex-eve" data-key-state="revoked"/);
  });

  it('leaves config keys alone and says where to change them', async () => {
    const answer = await request(subject.app)
      .post('/dashboard/api/keys/from-config/revoke')
      .set('authorization', `Bearer ${subject.adminKey}`);
    expect(answer.status).toBe(409);
    expect(answer.body.error.message).toContain('config file');
    expect(
      (
        await request(subject.app)
          .post('/dashboard/api/keys/nobody/revoke')
          .set('authorization', `Bearer ${subject.adminKey}`)
      ).status,
    ).toBe(404);
  });
});

describe('rotating a key', () => {
  async function freshKey(id: string): Promise<string> {
    const created = await request(subject.app)
      .post('/dashboard/api/keys')
      .set('authorization', `Bearer ${subject.adminKey}`)
      .send({ tenant: 'acme', user: 'frank', feature: 'search', scopes: ['chat'], id });
    return created.body.key as string;
  }

  it('makes a key with the same attributes and stops the old one now (grace 0)', async () => {
    const oldKey = await freshKey('acme-frank');
    const rotated = await postForm('/dashboard/keys/acme-frank/rotate', { grace: '0' });
    expect(rotated.status).toBe(303);
    const page = await keysPage();
    const newKey = /id="created-key">(tgk_[0-9A-Za-z]{43})</.exec(page.html)![1]!;
    expect(page.html).toContain('The old key acme-frank is revoked.');

    const records = await subject.stores.keys.list();
    const successor = records.find((record: ApiKeyRecord) => record.sha256 === hashApiKey(newKey))!;
    expect(successor.id).toMatch(/^acme-frank--[0-9a-f]{8}$/);
    expect(successor).toMatchObject({ tenantId: 'acme', userId: 'frank', feature: 'search', scopes: ['chat'] });
    expect((await whoami(newKey)).body.identity.keyId).toBe(successor.id);
    expect((await whoami(oldKey)).status).toBe(401);
  });

  it('keeps the end date of a key that expires: its successor ends at the same instant', async () => {
    const created = await request(subject.app)
      .post('/dashboard/api/keys')
      .set('authorization', `Bearer ${subject.adminKey}`)
      .send({ tenant: 'acme', id: 'acme-month', expires: '30d' });
    expect(created.status).toBe(201);
    const end = (await subject.stores.keys.findById('acme-month'))!.expiresAt;
    expect(end).toBeDefined();
    const rotated = await request(subject.app)
      .post('/dashboard/api/keys/acme-month/rotate')
      .set('authorization', `Bearer ${subject.adminKey}`)
      .send({ grace: '0' });
    expect(rotated.status).toBe(201);
    expect((await subject.stores.keys.findById(rotated.body.record.id))!.expiresAt).toBe(end);
  });

  it('lets the old key work through a grace period, ending at its expiry', async () => {
    const oldKey = await freshKey('acme-grace');
    const answer = await request(subject.app)
      .post('/dashboard/api/keys/acme-grace/rotate')
      .set('authorization', `Bearer ${subject.adminKey}`)
      .send({ grace: '1h' });
    expect(answer.status).toBe(201);
    expect(answer.body.key).toMatch(/^tgk_/);
    expect(answer.body.previous.state).toBe('active');
    const expiresAt = Date.parse((await subject.stores.keys.findById('acme-grace'))!.expiresAt!);
    expect(Math.abs(expiresAt - (Date.now() + 3_600_000))).toBeLessThan(10_000);
    expect((await whoami(oldKey)).status).toBe(200);
    expect((await whoami(answer.body.key)).status).toBe(200);
    expect(
      (
        await request(subject.app)
          .post('/dashboard/api/keys/acme-grace/rotate')
          .set('authorization', `Bearer ${subject.adminKey}`)
          .send({ grace: 'soon' })
      ).body.error.param,
    ).toBe('grace');
  });

  it("reads grace and expiry by the CLI's rules (@tollgate/auth): 0s stops the old key now, a past expiry is refused", async () => {
    const oldKey = await freshKey('acme-zero');
    const rotated = await request(subject.app)
      .post('/dashboard/api/keys/acme-zero/rotate')
      .set('authorization', `Bearer ${subject.adminKey}`)
      .send({ grace: '0s' });
    expect(rotated.status).toBe(201);
    expect((await whoami(oldKey)).status).toBe(401);
    const past = await request(subject.app)
      .post(`/dashboard/api/keys/${rotated.body.record.id}/rotate`)
      .set('authorization', `Bearer ${subject.adminKey}`)
      .send({ expires: '2020-01-01' });
    expect(past.status).toBe(400);
    expect(past.body.error).toMatchObject({
      param: 'expires',
      message: expect.stringContaining('must be in the future'),
    });
  });

  it('lists keys without their hashes', async () => {
    const answer = await request(subject.app)
      .get('/dashboard/api/keys')
      .set('authorization', `Bearer ${subject.adminKey}`);
    expect(answer.status).toBe(200);
    expect(JSON.stringify(answer.body)).not.toMatch(/[0-9a-f]{64}/);
    expect(answer.body.keys.find((key: { id: string }) => key.id === 'from-config')).toMatchObject({
      source: 'config',
      state: 'active',
    });
  });
});
