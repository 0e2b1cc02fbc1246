// The Abuse page: the subjects the guard's abuse model scored highest, their action and why, as HTML and JSON.
import { describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { dashboard } from '@tollgate/dashboard';

const adminKey = generateApiKey();
const bearer = { authorization: `Bearer ${adminKey}` };
const until = Date.now() + 600_000;

function app(abuse?: () => readonly unknown[]) {
  const server = express();
  server.use(
    '/dashboard',
    dashboard({ adminKeySha256: hashApiKey(adminKey), ...(abuse ? { abuse: abuse as never } : {}) }),
  );
  return server;
}

const scored = [
  {
    subject: 'address:10.9.9.9',
    score: 0.83,
    requests: 60,
    action: 'block',
    until,
    reasons: [{ feature: 'peers', value: 60, population: 1 }],
  },
  { subject: 'key:calm', score: 0.41, requests: 12, action: 'none', reasons: [] },
];

describe('the Abuse page', () => {
  it('lists the top subjects with their score, action, end and reasons, in the navigation of every page', async () => {
    const page = await request(app(() => scored))
      .get('/dashboard/abuse')
      .set(bearer)
      .set('accept', 'text/html');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<a href="/dashboard/abuse" aria-current="page">Abuse</a>');
    expect(page.text).toMatch(/<tr data-subject="address:10\.9\.9\.9" data-action="block">/);
    expect(page.text).toContain('<li>peers 60 (1)</li>');
    expect(page.text).toMatch(/<td class="num warn">0\.83<\/td>/);
    expect(page.text).toMatch(/data-subject="key:calm" data-action="none"/);
    const json = await request(app(() => scored))
      .get('/dashboard/api/abuse')
      .set(bearer);
    expect(json.body).toEqual({ watched: true, subjects: scored });
  });

  it('says so when the guard scores nothing', async () => {
    const page = await request(app()).get('/dashboard/abuse').set(bearer).set('accept', 'text/html');
    expect(page.text).toContain("The guard's abuse detection is off");
  });
});
