// apiKeyAuth on a real Redis key store: two app instances (two connections, one prefix) see revocation, expiry and rotation within the pub/sub delivery time.
import { randomUUID } from 'node:crypto';
import { describe, it, expect, afterAll } from '@jest/globals';
import request from 'supertest';
import { createRedisStores } from '@tollgate/redis';
import { apiKeyAuth, bearerAuth, generateApiKey } from '../src/index.js';
import { createServer, makeKey } from './helpers.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Retries `check` until it passes. Each store caches records in its process; a change made by
 * the other instance reaches it by pub/sub, typically in well under a millisecond on one host,
 * so the bound is short: a cache that missed the message would fail here.
 */
async function soon(check: () => Promise<void>, withinMs = 500): Promise<void> {
  const until = Date.now() + withinMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}
const prefix = `tg-test:${randomUUID()}:`;

describe('apiKeyAuth with the Redis key store across two instances', () => {
  // Two processes in miniature: each app has its own connection to the same Redis prefix.
  const storesA = createRedisStores({ url, prefix });
  const storesB = createRedisStores({ url, prefix });
  const appA = createServer(apiKeyAuth({ keys: storesA.keys }));
  const appB = createServer(apiKeyAuth({ keys: storesB.keys }));

  afterAll(async () => {
    for (const record of await storesA.keys.list()) await storesA.keys.delete(record.id);
    await storesA.close();
    await storesB.close();
  });

  it('a key put by one instance works on the other, from both headers', async () => {
    const k = makeKey();
    await storesA.keys.put(k.record);
    const viaBearer = await request(appB).post('/v1/chat/completions').set('Authorization', `Bearer ${k.key}`).send({});
    expect(viaBearer.status).toBe(200);
    expect(viaBearer.body.identity).toMatchObject({ keyId: k.record.id, tenantId: 'acme', authMethod: 'api_key' });
    expect((await request(appA).post('/v1/messages').set('x-api-key', k.key).send({})).status).toBe(200);
    expect((await request(appB).get('/x').set('x-api-key', generateApiKey())).status).toBe(401);
  });

  it('revocation on instance B is refused by instance A as soon as the change message arrives', async () => {
    const k = makeKey();
    await storesA.keys.put(k.record);
    expect((await request(appA).get('/x').set('x-api-key', k.key)).status).toBe(200);
    expect((await request(appA).get('/x').set('x-api-key', k.key)).status).toBe(200); // served from A's cache
    expect(await storesB.keys.disable(k.record.id)).toBe(true);
    await soon(async () => {
      const res = await request(appA).get('/x').set('x-api-key', k.key);
      expect(res.status).toBe(401);
      expect(res.body.error.message).toMatch(/revoked/);
    });
  });

  it('the instance that revokes refuses the key on its very next request', async () => {
    const k = makeKey();
    await storesA.keys.put(k.record);
    expect((await request(appA).get('/x').set('x-api-key', k.key)).status).toBe(200);
    await storesA.keys.disable(k.record.id);
    expect((await request(appA).get('/x').set('x-api-key', k.key)).status).toBe(401);
  });

  it('expiry is checked against the clock on every request, cached or not', async () => {
    const k = makeKey({ expiresAt: new Date(Date.now() + 300).toISOString() });
    await storesA.keys.put(k.record);
    expect((await request(appB).get('/x').set('x-api-key', k.key)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect((await request(appB).get('/x').set('x-api-key', k.key)).body.error.message).toMatch(/expired/);
  });

  it('expiry and deletion set on one instance count on the other', async () => {
    const k = makeKey({ expiresAt: new Date(Date.now() + 3_600_000).toISOString() });
    await storesA.keys.put(k.record);
    expect((await request(appB).get('/x').set('x-api-key', k.key)).status).toBe(200);
    await storesB.keys.put({ ...k.record, expiresAt: new Date(Date.now() - 1000).toISOString() });
    await soon(async () =>
      expect((await request(appA).get('/x').set('x-api-key', k.key)).body.error?.message).toMatch(/expired/),
    );
    await storesA.keys.put(k.record);
    await soon(async () => expect((await request(appB).get('/x').set('x-api-key', k.key)).status).toBe(200));
    await storesA.keys.delete(k.record.id);
    await soon(async () => expect((await request(appB).get('/x').set('x-api-key', k.key)).status).toBe(401));
  });

  it('rotation: old and new keys of one principal both work until the old one is revoked', async () => {
    const old = makeKey({ id: `rot-old-${randomUUID().slice(0, 6)}` });
    const fresh = makeKey({ id: `rot-new-${randomUUID().slice(0, 6)}` });
    await storesA.keys.put(old.record);
    await storesA.keys.put(fresh.record);
    expect((await request(appB).get('/x').set('x-api-key', old.key)).body.identity.keyId).toBe(old.record.id);
    expect((await request(appB).get('/x').set('x-api-key', fresh.key)).body.identity.keyId).toBe(fresh.record.id);
    await storesA.keys.disable(old.record.id);
    await soon(async () => expect((await request(appB).get('/x').set('x-api-key', old.key)).status).toBe(401));
    expect((await request(appB).get('/x').set('x-api-key', fresh.key)).status).toBe(200);
  });

  it('bearerAuth on Redis sees a revocation made elsewhere too', async () => {
    const k = makeKey();
    await storesA.keys.put(k.record);
    const bearerApp = createServer(bearerAuth({ keys: storesB.keys }));
    expect((await request(bearerApp).get('/x').set('Authorization', `Bearer ${k.key}`)).status).toBe(200);
    await storesA.keys.disable(k.record.id);
    await soon(async () =>
      expect((await request(bearerApp).get('/x').set('Authorization', `Bearer ${k.key}`)).status).toBe(401),
    );
  });

  it('fails closed with 503 when Redis cannot be reached', async () => {
    const dead = createRedisStores({ url: 'redis://127.0.0.1:1', prefix, timeoutMs: 200 });
    const app = createServer(apiKeyAuth({ keys: dead.keys, timeoutMs: 300, onStoreError: () => undefined }));
    const res = await request(app).get('/x').set('x-api-key', generateApiKey());
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('service_unavailable');
    await dead.close();
  });
});
