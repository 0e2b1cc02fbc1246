// After auth: a suspended key or tenant gets 403 key_suspended until lifted; the same request repeated too often gets 429 repeated_request.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { apiErrorHandler, createMemoryStores } from '@tollgate/core';
import { preCallCheckOf } from '@tollgate/core/checks';
import { createGuard, guardAdminRouter, type Guard } from '@tollgate/guard';
import { guardedApp } from './helpers.js';
import { fakeOnly } from '../../../test/helpers/fake-clock.js';

const keys = { k1: { tenantId: 'acme' }, k2: { tenantId: 'acme' }, k3: { tenantId: 'other' } };
let guard: Guard | undefined;
afterEach(async () => {
  jest.useRealTimers();
  await guard?.close();
});

const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content }],
  ...extra,
});

describe('suspensions', () => {
  it('refuse a suspended key with 403 key_suspended, saying why and that an operator can restore it; lifting restores it', async () => {
    guard = createGuard({ alerts: { log: false } });
    const app = guardedApp(guard, keys);
    await guard.suspend('key:k1', 'spend anomaly');
    const refused = await request(app).post('/v1/chat').set('authorization', 'Bearer k1').send(chat('hi'));
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({ code: 'key_suspended', type: 'permission_error' });
    expect(refused.body.error.message).toBe('This API key is suspended: spend anomaly. An operator can restore it.');
    expect((await request(app).post('/v1/chat').set('authorization', 'Bearer k2').send(chat('hi'))).status).toBe(200);
    expect(await guard.lift('key:k1')).toMatchObject([{ kind: 'suspend', subject: 'key:k1' }]);
    expect((await request(app).post('/v1/chat').set('authorization', 'Bearer k1').send(chat('hi'))).status).toBe(200);
  });

  it("are recorded, not enforced, under shadowMode: the suspended key's request is served with key_suspended noted", async () => {
    guard = createGuard({ alerts: { log: false }, repeatedRequests: { max: 1, windowSeconds: 60 } });
    const app = guardedApp(guard, keys, { shadow: (req) => req.headers['x-shadow'] === 'yes' });
    await guard.suspend('key:k1', 'spend anomaly');
    const send = (content: string, shadow: boolean) =>
      request(app)
        .post('/v1/chat')
        .set('authorization', 'Bearer k1')
        .set('x-shadow', shadow ? 'yes' : 'no')
        .send(chat(content));
    expect((await send('one', false)).status).toBe(403);
    const served = await send('one', true);
    expect(served.status).toBe(200);
    expect(served.body.shadowRefusal).toBe('key_suspended');
    await guard.lift('key:k1');
    // The repeat count alone (not in combineLimits): the second send of the same body would be refused.
    expect((await send('two', true)).body.shadowRefusal).toBe(null);
    expect((await send('two', true)).body.shadowRefusal).toBe('repeated_request');
    expect((await send('two', false)).status).toBe(429);
  });

  it('refuse every key of a suspended tenant', async () => {
    guard = createGuard({ alerts: { log: false } });
    const app = guardedApp(guard, keys);
    await guard.suspend('tenant:acme', 'tenant-wide spend anomaly');
    for (const key of ['k1', 'k2']) {
      const res = await request(app).post('/v1/chat').set('authorization', `Bearer ${key}`).send(chat('hi'));
      expect(res.status).toBe(403);
      expect(res.body.error.message).toMatch(/^Every API key of your organization \(acme\) is suspended/);
    }
    expect((await request(app).post('/v1/chat').set('authorization', 'Bearer k3').send(chat('hi'))).status).toBe(200);
  });

  it('are listed, suspended and lifted by the operator routes', async () => {
    guard = createGuard({ alerts: { log: false } });
    const app = guardedApp(guard, keys);
    const admin = express().use('/admin/guard', guardAdminRouter(guard)).use(apiErrorHandler());
    expect(
      (await request(admin).post('/admin/guard/keys/k3/suspend').send({ reason: 'looks stolen' })).body.suspended,
    ).toMatchObject({ kind: 'suspend', subject: 'key:k3', reason: 'looks stolen' });
    expect((await request(admin).get('/admin/guard/mitigations')).body.mitigations).toMatchObject([
      { subject: 'key:k3' },
    ]);
    expect((await request(app).post('/v1/chat').set('authorization', 'Bearer k3').send(chat('hi'))).status).toBe(403);
    expect((await request(admin).post('/admin/guard/keys/k3/lift')).status).toBe(200);
    expect((await request(admin).post('/admin/guard/keys/k3/lift')).status).toBe(404);
    expect((await request(app).post('/v1/chat').set('authorization', 'Bearer k3').send(chat('hi'))).status).toBe(200);
    expect((await request(admin).get('/admin/guard/')).body).toEqual({ anomalies: [], mitigations: [] });
  });

  it('throttle scales the limits of a key and its tenant down for a while, then not', async () => {
    // Only Date is jest's: a throttle's end is read from it; the app and supertest keep real timers and I/O.
    const start = Date.UTC(2026, 10, 24, 9, 0);
    fakeOnly(['Date'], start);
    guard = createGuard({ alerts: { log: false } });
    const app = guardedApp(guard, keys);
    const scaleOf = async (key: string) =>
      (await request(app).get('/scale').set('authorization', `Bearer ${key}`)).body.scale as number;
    await guard.throttle('tenant:acme', { scale: 0.25, durationMs: 300 });
    expect(await scaleOf('k1')).toBe(0.25);
    expect(await scaleOf('k3')).toBe(1);
    jest.setSystemTime(start + 299);
    expect(await scaleOf('k1')).toBe(0.25);
    jest.setSystemTime(start + 300);
    expect(await scaleOf('k1')).toBe(1);
  });
});

describe('repeatedRequests', () => {
  it('refuses the same request past max in the window with 429 repeated_request and Retry-After, whatever its volatile fields', async () => {
    guard = createGuard({ repeatedRequests: { max: 3, windowSeconds: 60 }, alerts: { log: false } });
    const app = guardedApp(guard, keys);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++)
      statuses.push(
        (
          await request(app)
            .post('/v1/chat')
            .set('authorization', 'Bearer k1')
            .send(chat('loop', { user: `u${i}`, stream: i % 2 === 0, metadata: { run: i } }))
        ).status,
      );
    const refused = await request(app)
      .post('/v1/chat')
      .set('authorization', 'Bearer k1')
      .send(chat('loop', { stream_options: { include_usage: true } }));
    expect(statuses).toEqual([200, 200, 200]);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('repeated_request');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    // Another prompt, or the same one from another key, is another request.
    expect(
      (await request(app).post('/v1/chat').set('authorization', 'Bearer k1').send(chat('loop, but different'))).status,
    ).toBe(200);
    expect((await request(app).post('/v1/chat').set('authorization', 'Bearer k2').send(chat('loop'))).status).toBe(200);
  });

  it('counts a JSON-RPC request (an MCP tools/call) by its method and params: a new id or _meta is the same call', async () => {
    guard = createGuard({ repeatedRequests: { max: 2, windowSeconds: 60 }, alerts: { log: false } });
    const app = guardedApp(guard, keys);
    const call = (id: number, query: string, meta?: object) => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'web_search', arguments: { query }, ...(meta ? { _meta: meta } : {}) },
    });
    const send = async (body: object) =>
      (await request(app).post('/v1/chat').set('authorization', 'Bearer k1').send(body)).status;
    expect([await send(call(1, 'loop')), await send(call(2, 'loop', { progressToken: 7 }))]).toEqual([200, 200]);
    expect(await send(call(3, 'loop', { progressToken: 8 }))).toBe(429);
    // Other arguments are another call.
    expect(await send(call(4, 'not a loop'))).toBe(200);
  });

  it('carries a PreCallCheck, so combineLimits runs it with the limits, and a refusal elsewhere gives its count back', async () => {
    const stores = createMemoryStores();
    guard = createGuard({ stores, repeatedRequests: { max: 1, windowSeconds: 60 }, alerts: { log: false } });
    const check = preCallCheckOf(guard.repeatedRequests)!;
    expect(check).toBeDefined();
    const req = Object.assign(Object.create(express.request), {
      body: chat('once'),
      tollgate: { identity: { keyId: 'k1', scopes: [], authMethod: 'api_key' } },
    });
    const first = await check.attempt(req, {} as never);
    expect(first.kind).toBe('allowed');
    await check.cancel((first as { value: unknown }).value);
    expect((await check.attempt(req, {} as never)).kind).toBe('allowed');
    expect((await check.attempt(req, {} as never)).kind).toBe('denied');
    await stores.close();
  });
});
