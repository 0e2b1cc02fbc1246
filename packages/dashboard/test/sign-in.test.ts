// Who sees the dashboard: the admin key signs a browser in (HttpOnly, SameSite=Strict cookie) or comes as Bearer; nobody else sees a thing.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { hashApiKey } from '@tollgate/auth';
import { dashboard } from '@tollgate/dashboard';
import express from 'express';
import { cookieOf, createDashboardApp, hiddenField, withCookies } from './helpers.js';
import type { DashboardTestApp } from './helpers.js';

let subject: DashboardTestApp;

beforeAll(async () => {
  subject = await createDashboardApp();
  await subject.charge('tenant', 'acme', 9_000_000_000); // a tenant whose name and spend must not leak
});

afterAll(async () => {
  await subject.close();
});

async function signIn(key: string): Promise<{ status: number; location?: string; session?: string; body: string }> {
  const form = await request(subject.app).get('/dashboard/login');
  const formCookie = cookieOf(form.headers['set-cookie'], 'tg_dashboard_sign_in');
  const token = hiddenField(form.text, '_csrf')!;
  const answer = await withCookies(request(subject.app).post('/dashboard/login'), formCookie)
    .type('form')
    .send({ key, _csrf: token });
  return {
    status: answer.status,
    location: answer.headers.location,
    session: cookieOf(answer.headers['set-cookie'], 'tg_dashboard_session'),
    body: answer.text,
  };
}

describe('signing in', () => {
  it('sets an HttpOnly, SameSite=Strict session cookie scoped to the dashboard for the right key, and never the key', async () => {
    const answer = await signIn(subject.adminKey);
    expect(answer.status).toBe(303);
    expect(answer.location).toBe('/dashboard/');
    expect(answer.session).toMatch(/^tg_dashboard_session=[A-Za-z0-9_-]{43};/);
    expect(answer.session).toMatch(/; HttpOnly/);
    expect(answer.session).toMatch(/; SameSite=Strict/);
    expect(answer.session).toMatch(/; Path=\/dashboard/);
    expect(answer.session).not.toContain(subject.adminKey);
    expect(answer.session).not.toContain(hashApiKey(subject.adminKey));

    const overview = await withCookies(request(subject.app).get('/dashboard/'), answer.session);
    expect(overview.status).toBe(200);
    expect(overview.headers['content-type']).toMatch(/text\/html/);
    expect(overview.headers['cache-control']).toBe('no-store');
    expect(overview.text).toContain('acme');
  });

  it('shows a wrong key the form again and nothing else: no cookie, no data', async () => {
    const answer = await signIn('tgk_not-the-admin-key');
    expect(answer.status).toBe(401);
    expect(answer.session).toBeUndefined();
    expect(answer.body).toContain('That is not the admin key.');
    expect(answer.body).not.toContain('acme');
    expect(answer.body).not.toContain('$9.00');
  });

  it('refuses a sign-in posted without the form token of its own cookie (login CSRF)', async () => {
    const answer = await request(subject.app)
      .post('/dashboard/login')
      .type('form')
      .send({ key: subject.adminKey, _csrf: 'forged' });
    expect(answer.status).toBe(403);
    expect(cookieOf(answer.headers['set-cookie'], 'tg_dashboard_session')).toBeUndefined();
  });

  it('returns to the page asked for, and only to a page of the dashboard', async () => {
    const form = await request(subject.app).get('/dashboard/login?next=%2Fdashboard%2Fkeys');
    const token = hiddenField(form.text, '_csrf')!;
    expect(hiddenField(form.text, 'next')).toBe('/dashboard/keys');
    const cookie = cookieOf(form.headers['set-cookie'], 'tg_dashboard_sign_in');
    const back = await withCookies(request(subject.app).post('/dashboard/login'), cookie)
      .type('form')
      .send({ key: subject.adminKey, _csrf: token, next: '/dashboard/keys' });
    expect(back.headers.location).toBe('/dashboard/keys');
    const away = await withCookies(request(subject.app).post('/dashboard/login'), cookie)
      .type('form')
      .send({ key: subject.adminKey, _csrf: token, next: '//evil.example/' });
    expect(away.headers.location).toBe('/dashboard/');
  });

  it('signs out: the session is gone from memory, not only from the browser', async () => {
    const { session } = await signIn(subject.adminKey);
    const page = await withCookies(request(subject.app).get('/dashboard/keys'), session);
    const token = hiddenField(page.text, '_csrf')!;
    const out = await withCookies(request(subject.app).post('/dashboard/logout'), session)
      .type('form')
      .send({ _csrf: token });
    expect(out.status).toBe(303);
    const after = await withCookies(request(subject.app).get('/dashboard/'), session);
    expect(after.status).toBe(303);
    expect(after.headers.location).toMatch(/^\/dashboard\/login/);
  });
});

describe('without a session or key', () => {
  it.each([
    '/dashboard/',
    '/dashboard/tenants/acme',
    '/dashboard/keys',
    '/dashboard/requests',
    '/dashboard/providers',
    '/dashboard/no-such-page',
  ])('a browser asking %s is sent to the sign-in page', async (path) => {
    const answer = await request(subject.app).get(path).set('accept', 'text/html');
    expect(answer.status).toBe(303);
    expect(answer.headers.location).toBe(`/dashboard/login?next=${encodeURIComponent(path)}`);
    expect(answer.text).not.toMatch(/\$9\.00|Tenants|acme-app/);
  });

  it('a script gets a 401 on the JSON, and a made-up session cookie counts for nothing', async () => {
    const json = await request(subject.app).get('/dashboard/api/overview');
    expect(json.status).toBe(401);
    expect(json.headers['www-authenticate']).toBe('Bearer realm="tollgate-dashboard"');
    expect(json.body.error.code).toBe('invalid_api_key');
    expect(JSON.stringify(json.body)).not.toContain('acme');
    const forged = await request(subject.app)
      .get('/dashboard/?format=json')
      .set('cookie', 'tg_dashboard_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    expect(forged.status).toBe(401);
  });

  it('serves the assets without a session (they hold no data)', async () => {
    for (const name of ['dashboard.css', 'dashboard.js', 'uPlot.iife.min.js', 'uPlot.min.css']) {
      const answer = await request(subject.app).get(`/dashboard/assets/${name}`);
      expect(answer.status).toBe(200);
      expect(answer.headers.etag).toBeDefined();
    }
    expect((await request(subject.app).get('/dashboard/assets/../package.json')).status).not.toBe(200);
  });
});

describe('the admin key as Bearer', () => {
  it('reads every page as JSON', async () => {
    for (const path of [
      '/dashboard/api/overview',
      '/dashboard/api/tenants/acme',
      '/dashboard/api/keys',
      '/dashboard/api/requests',
      '/dashboard/api/providers',
      '/dashboard/?format=json',
    ]) {
      const answer = await request(subject.app).get(path).set('authorization', `Bearer ${subject.adminKey}`);
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toMatch(/application\/json/);
    }
    const overview = await request(subject.app)
      .get('/dashboard/api/overview')
      .set('authorization', `Bearer ${subject.adminKey}`);
    expect(overview.body.tenants.find((row: { id: string }) => row.id === 'acme').budget.spentNanoUsd).toBe(
      9_000_000_000,
    );
  });

  it('reads the HTML pages too, and a JSON client gets JSON from them', async () => {
    const page = await request(subject.app)
      .get('/dashboard/')
      .set('authorization', `Bearer ${subject.adminKey}`)
      .set('accept', 'text/html');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>Overview</h1>');
    const json = await request(subject.app)
      .get('/dashboard/keys')
      .set('authorization', `Bearer ${subject.adminKey}`)
      .set('accept', 'application/json');
    expect(json.body.keys.map((key: { id: string }) => key.id)).toContain('acme-app');
  });

  it('refuses a wrong key, another scheme, or a good cookie next to a bad key', async () => {
    const wrong = await request(subject.app).get('/dashboard/api/overview').set('authorization', 'Bearer tgk_wrong');
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toContain('error="invalid_token"');
    const basic = await request(subject.app)
      .get('/dashboard/')
      .set('authorization', `Basic ${Buffer.from(`admin:${subject.adminKey}`).toString('base64')}`);
    expect(basic.status).toBe(401);
    const { session } = await signIn(subject.adminKey);
    const mixed = await withCookies(request(subject.app).get('/dashboard/api/overview'), session).set(
      'authorization',
      'Bearer tgk_wrong',
    );
    expect(mixed.status).toBe(401);
  });

  it('needs no CSRF token to write (a header is no ambient credential)', async () => {
    const answer = await request(subject.app)
      .post('/dashboard/api/keys')
      .set('authorization', `Bearer ${subject.adminKey}`)
      .send({ tenant: 'globex', user: 'script' });
    expect(answer.status).toBe(201);
    expect(answer.body.key).toMatch(/^tgk_/);
  });
});

describe('CSRF on writes from a session', () => {
  it('refuses a write with the token missing, wrong, or from a cross-site page, and changes nothing', async () => {
    const { session } = await signIn(subject.adminKey);
    const page = await withCookies(request(subject.app).get('/dashboard/keys'), session);
    const token = hiddenField(page.text, '_csrf')!;
    const before = (await subject.stores.keys.list()).length;
    const missing = await withCookies(request(subject.app).post('/dashboard/keys'), session)
      .type('form')
      .send({ tenant: 'acme' });
    expect(missing.status).toBe(403);
    expect(missing.text).toContain('CSRF');
    const wrong = await withCookies(request(subject.app).post('/dashboard/keys'), session)
      .type('form')
      .send({ tenant: 'acme', _csrf: `${token}x` });
    expect(wrong.status).toBe(403);
    const revoke = await withCookies(request(subject.app).post('/dashboard/keys/acme-app/revoke'), session)
      .type('form')
      .send({ _csrf: 'nope' });
    expect(revoke.status).toBe(403);
    const crossSite = await withCookies(request(subject.app).post('/dashboard/keys'), session)
      .set('sec-fetch-site', 'cross-site')
      .type('form')
      .send({ tenant: 'acme', _csrf: token });
    expect(crossSite.status).toBe(403);
    const json = await withCookies(request(subject.app).post('/dashboard/api/keys'), session).send({ tenant: 'acme' });
    expect(json.status).toBe(403);
    expect(json.body.error.param).toBe('_csrf');
    expect((await subject.stores.keys.list()).length).toBe(before);
    expect((await subject.stores.keys.findById('acme-app'))!.disabled).toBeUndefined();

    const good = await withCookies(request(subject.app).post('/dashboard/api/keys'), session)
      .set('x-csrf-token', token)
      .send({ tenant: 'acme', user: 'csrf-ok' });
    expect(good.status).toBe(201);
    // Each page carries the token masked anew (nothing constant for a compression side channel), and each works.
    const again = hiddenField((await withCookies(request(subject.app).get('/dashboard/keys'), session)).text, '_csrf')!;
    expect(again).not.toBe(token);
    const second = await withCookies(request(subject.app).post('/dashboard/api/keys'), session)
      .set('x-csrf-token', again)
      .send({ tenant: 'acme', user: 'csrf-again' });
    expect(second.status).toBe(201);
    // Another session's token is no good here.
    const other = await signIn(subject.adminKey);
    const otherToken = hiddenField(
      (await withCookies(request(subject.app).get('/dashboard/keys'), other.session)).text,
      '_csrf',
    )!;
    expect(
      (
        await withCookies(request(subject.app).post('/dashboard/api/keys'), session)
          .set('x-csrf-token', otherToken)
          .send({ tenant: 'acme' })
      ).status,
    ).toBe(403);
  });

  it('ends a session at its time-to-live', async () => {
    let now = Date.now();
    const adminKey = 'tgk_clock_test_admin_key_0000000000000000000000';
    const app = express();
    app.use('/d', dashboard({ adminKeySha256: hashApiKey(adminKey), sessionTtl: '1h', now: () => now }));
    const form = await request(app).get('/d/login');
    const answer = await withCookies(
      request(app).post('/d/login'),
      cookieOf(form.headers['set-cookie'], 'tg_dashboard_sign_in'),
    )
      .type('form')
      .send({ key: adminKey, _csrf: hiddenField(form.text, '_csrf') });
    const session = cookieOf(answer.headers['set-cookie'], 'tg_dashboard_session');
    expect((await withCookies(request(app).get('/d/?format=json'), session)).status).toBe(200);
    now += 3_600_001;
    expect((await withCookies(request(app).get('/d/?format=json'), session)).status).toBe(401);
  });
});

describe('what pages echo', () => {
  it('escapes what a request or a store puts on a page', async () => {
    const hostile = '<script>alert(1)</script>';
    const page = await request(subject.app)
      .get(`/dashboard/tenants/${encodeURIComponent(hostile)}`)
      .set('authorization', `Bearer ${subject.adminKey}`)
      .set('accept', 'text/html');
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(hostile);
    expect(page.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    const requests = await request(subject.app)
      .get(`/dashboard/requests?tenant=${encodeURIComponent('"><b>x')}`)
      .set('authorization', `Bearer ${subject.adminKey}`)
      .set('accept', 'text/html');
    expect(requests.text).not.toContain('"><b>x');
  });

  it('shows the quotas and alerts the app passes, asking for the tenant of the page', async () => {
    const app = express();
    const adminKey = 'tgk_quota_test_admin_key_000000000000000000000';
    const asked: unknown[] = [];
    app.use(
      '/d',
      dashboard({
        adminKeySha256: hashApiKey(adminKey),
        now: () => Date.parse('2029-12-31T23:59:18.000Z'),
        limits: (query) => {
          asked.push(query);
          return [
            {
              name: 'tenant acme',
              tenantId: 'acme',
              unit: 'requests',
              window: 'minute',
              limit: 600,
              remaining: 0,
              resetAt: '2030-01-01T00:00:00.000Z',
            },
          ];
        },
        alerts: async () => [{ level: 'info', message: 'Deploy at noon.' }],
      }),
    );
    const overview = await request(app).get('/d/api/overview').set('authorization', `Bearer ${adminKey}`);
    expect(overview.body.quotas).toHaveLength(1);
    expect(overview.body.alerts).toEqual([
      { level: 'warning', message: 'No requests left for tenant acme until 2030-01-01 00:00:00 UTC.' },
      { level: 'info', message: 'Deploy at noon.' },
    ]);
    const tenant = await request(app).get('/d/api/tenants/acme').set('authorization', `Bearer ${adminKey}`);
    expect(tenant.body.quotas.map((quota: { name: string }) => quota.name)).toEqual(['tenant acme']);
    // The overview names the tenants it shows (none: no ledger, no budgets); a tenant's page its tenant.
    expect(asked).toEqual([{ tenantIds: [] }, { tenantId: 'acme' }]);
    const page = await request(app)
      .get('/d/tenants/acme')
      .set('authorization', `Bearer ${adminKey}`)
      .set('accept', 'text/html');
    // Used is what the limit does not have left, when the app does not say.
    expect(page.text).toMatch(
      /requests per minute<\/td><td class="num" data-used="600" data-limit="600">600 \/ 600<\/td><td class="num">0<\/td><td><time[^>]*>in 42 s<\/time>/,
    );
  });
});

describe('options', () => {
  it('refuses to start without a way to check the key, and names typos', () => {
    expect(() => dashboard({})).toThrow(/ERR_TG_DASHBOARD_INVALID_OPTION/);
    expect(() => dashboard({ adminKeySha256: 'abc' })).toThrow(/SHA-256 hex/);
    expect(() => dashboard({ adminKeySha256: hashApiKey('k'), ledgr: {} } as never)).toThrow(/did you mean "ledger"/);
  });

  it('takes an authorize function instead of a hash', async () => {
    const app = express();
    app.use('/d', dashboard({ authorize: (key) => key === 'let-me-in' }));
    expect((await request(app).get('/d/api/keys').set('authorization', 'Bearer let-me-in')).status).toBe(200);
    expect((await request(app).get('/d/api/keys').set('authorization', 'Bearer no')).status).toBe(401);
  });
});
