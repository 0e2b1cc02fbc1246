// The Audit page and the dashboard's writes through the audit trail: recorded with the session's actor, listed,
// filtered, exported; refused when the trail cannot record them; a page that says so when no trail is connected.
import { describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createMemoryStores } from '@tollgate/core';
import { auditTrail, memoryAuditStore } from '@tollgate/core/audit';
import type { AuditStore } from '@tollgate/core/audit';
import { dashboard } from '@tollgate/dashboard';

const adminKey = generateApiKey();
const bearer = { authorization: `Bearer ${adminKey}` };

function app(store?: AuditStore) {
  const server = express();
  const audit = store ? auditTrail({ store }) : undefined;
  server.use(
    '/dashboard',
    dashboard({
      adminKeySha256: hashApiKey(adminKey),
      keys: createMemoryStores().keys,
      ...(audit ? { audit } : {}),
    }),
  );
  return server;
}

describe('the Audit page', () => {
  it('lists a key made here, with its actor, action, target and after, and filters and exports it', async () => {
    const server = app(memoryAuditStore());
    const created = await request(server).post('/dashboard/api/keys').set(bearer).send({ id: 'made-here' });
    expect(created.status).toBe(201);
    const json = await request(server).get('/dashboard/api/audit').set(bearer);
    expect(json.body.entries).toEqual([
      expect.objectContaining({
        actor: 'admin key',
        role: 'admin',
        via: 'admin-key',
        action: 'key.create',
        target: 'key:made-here',
        outcome: 'done',
        before: null,
        after: expect.objectContaining({ id: 'made-here' }),
      }),
    ]);
    expect(JSON.stringify(json.body)).not.toContain(created.body.key);
    const page = await request(server).get('/dashboard/audit').set(bearer).set('accept', 'text/html');
    expect(page.text).toContain('<a href="/dashboard/audit" aria-current="page">Audit</a>');
    expect(page.text).toMatch(/<tr data-action="key.create" data-target="key:made-here" data-outcome="done">/);
    expect(page.text).toContain('href="/dashboard/audit?limit=50&amp;format=csv"');
    const none = await request(server).get('/dashboard/api/audit?action=budget').set(bearer);
    expect(none.body.entries).toEqual([]);
    const csv = await request(server).get('/dashboard/audit?format=csv').set(bearer);
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    expect(csv.text.split('\n')[1]).toContain(',key.create,key:made-here,done,201,POST,/dashboard/api/keys,');
    expect((await request(server).get('/dashboard/api/audit?since=not-a-time').set(bearer)).status).toBe(400);
  });

  it('refuses a write the trail cannot record, and changes nothing', async () => {
    const kept = memoryAuditStore();
    const server = app({
      ...kept,
      attempt: async () => {
        throw new Error('down');
      },
    });
    const refused = await request(server).post('/dashboard/api/keys').set(bearer).send({ id: 'never' });
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('service_unavailable');
    const keys = await request(server).get('/dashboard/api/keys').set(bearer);
    expect(JSON.stringify(keys.body)).not.toContain('never');
  });

  it('says when no audit trail is connected', async () => {
    const page = await request(app()).get('/dashboard/audit').set(bearer).set('accept', 'text/html');
    expect(page.status).toBe(200);
    expect(page.text).toContain('No audit trail is connected');
    expect((await request(app()).get('/dashboard/api/audit').set(bearer)).body).toMatchObject({ recorded: false });
  });
});
