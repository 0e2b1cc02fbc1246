// The keys page and a tenant page's keys table read one page of keys: id order, a search by the start of the id,
// Next and Previous links that walk every key once, and the key store's whole list never read.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { hashApiKey } from '@tollgate/auth';
import { createDashboardApp } from './helpers.js';
import type { DashboardTestApp } from './helpers.js';

let subject: DashboardTestApp;
const bearer = () => ({ authorization: `Bearer ${subject.adminKey}` });
const stored = Array.from({ length: 250 }, (_, i) => `key-${String(i).padStart(3, '0')}`);

beforeAll(async () => {
  subject = await createDashboardApp();
  for (const [i, id] of stored.entries())
    await subject.stores.keys.put({
      id,
      sha256: hashApiKey(id),
      tenantId: i % 2 === 0 ? 'acme' : 'globex',
      scopes: [],
      createdAt: '2026-11-27T08:00:00.000Z',
    });
  // Pages read pages: a list of every key is a failure here.
  subject.stores.keys.list = () => Promise.reject(new Error('a page read every key'));
});

afterAll(async () => {
  await subject.close();
});

const rowIds = (html: string) => [...html.matchAll(/<tr data-key="([^"]+)"/g)].map((match) => match[1]!);
const link = (html: string, rel: 'next' | 'prev') =>
  [...html.matchAll(/<a href="([^"]+)" rel="(next|prev)">/g)]
    .find((match) => match[2] === rel)?.[1]
    ?.replaceAll('&amp;', '&');

describe('the keys page', () => {
  it('walks every key once with Next, and back with Previous', async () => {
    const every = ['acme-app', ...stored];
    const seen: string[] = [];
    const visited: string[] = [];
    let path: string | undefined = '/dashboard/keys';
    while (path !== undefined) {
      const page = await request(subject.app).get(path).set(bearer());
      expect(page.status).toBe(200);
      visited.push(path);
      seen.push(...rowIds(page.text));
      path = link(page.text, 'next');
    }
    expect(seen).toEqual(every);
    expect(visited).toHaveLength(3);
    // Previous from the last page leads to the second, and from there to the first.
    const last = await request(subject.app).get(visited[2]!).set(bearer());
    const second = await request(subject.app).get(link(last.text, 'prev')!).set(bearer());
    expect(rowIds(second.text)).toEqual(every.slice(100, 200));
    const first = await request(subject.app).get(link(second.text, 'prev')!).set(bearer());
    expect(rowIds(first.text)).toEqual(every.slice(0, 100));
    expect(link(first.text, 'prev')).toBeUndefined();
  });

  it('searches by the start of the id, and by tenant, in the page and its JSON', async () => {
    const page = await request(subject.app).get('/dashboard/keys?q=key-24').set(bearer());
    expect(page.text).toContain('id="key-search" name="q" maxlength="128" value="key-24"');
    expect(rowIds(page.text)).toEqual(stored.slice(240, 250));
    expect(link(page.text, 'next')).toBeUndefined();
    const json = await request(subject.app).get('/dashboard/api/keys?q=key-1&tenant=globex').set(bearer());
    expect(json.body.keys.map((key: { id: string }) => key.id)).toEqual(
      stored.slice(100, 200).filter((_, i) => i % 2 === 1),
    );
    expect(json.body.next).toBeNull();
    const refused = await request(subject.app)
      .get(`/dashboard/api/keys?q=${'k'.repeat(129)}`)
      .set(bearer());
    expect(refused.status).toBe(400);
  });
});

describe("a tenant page's keys", () => {
  it('shows the first page of its keys, searched, with a link to the next on the keys page', async () => {
    const page = await request(subject.app).get('/dashboard/tenants/globex?range=24h').set(bearer());
    expect(page.status).toBe(200);
    const globex = stored.filter((_, i) => i % 2 === 1);
    expect(rowIds(page.text)).toEqual(globex.slice(0, 100));
    const next = await request(subject.app).get(link(page.text, 'next')!).set(bearer());
    expect(rowIds(next.text)).toEqual(globex.slice(100));
    const searched = await request(subject.app).get('/dashboard/tenants/acme?range=24h&q=key-00').set(bearer());
    expect(rowIds(searched.text)).toEqual(['key-000', 'key-002', 'key-004', 'key-006', 'key-008']);
  });
});
