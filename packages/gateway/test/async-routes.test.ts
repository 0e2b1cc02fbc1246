// Async admin routes on both Express majors (this file runs in `pnpm test:express4` too): a key store that rejects, and
// a handler that throws after an await, get a clean JSON answer through the error handlers, and no promise is left
// rejected unhandled (Express 4 does not catch a rejected handler; asyncRoute hands the error to next).
import { describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createMemoryStores } from '@tollgate/core';
import { createGatewayApp } from '../src/app.js';
import { validateConfig } from '../src/config/index.js';

const adminKey = generateApiKey();
/**
 * Lets a rejection of the turn just ended be reported. jest fails the test that is running when a promise is rejected
 * unhandled (it reports the rejection as the test's error; process.on here would not see it, jest takes it first), so
 * waiting here is the check that the route left none.
 */
const afterRejectionsReport = () => new Promise((resolve) => setTimeout(resolve, 20));

function gatewayWithFailingKeyStore() {
  const stores = createMemoryStores();
  stores.keys.list = () => Promise.reject(new Error('the key store is down'));
  stores.keys.page = () => Promise.reject(new Error('the key store is down'));
  return createGatewayApp(
    validateConfig({
      ...WITH_MOCK,
      adminKeySha256: hashApiKey(adminKey),
      tenants: { acme: { tier: 'free' } },
      tiers: { free: { requestsPerMinute: 60 } },
      log: { level: 'silent' },
    }),
    { stores, log: () => undefined, metrics: false },
  );
}

describe('async routes hand failures to next (Express 4 and 5)', () => {
  it('answers a 500 in the API shape when the key store rejects, with no unhandled rejection', async () => {
    const app = gatewayWithFailingKeyStore();
    const response = await request(app).get('/admin/keys').set('authorization', `Bearer ${adminKey}`).timeout(10_000);
    expect(response.status).toBe(500);
    expect(response.body).toEqual({
      error: { message: 'Internal proxy error.', type: 'server_error', code: 'internal_error', param: null },
    });
    await afterRejectionsReport();
    await app.close();
  });

  it('renders an ApiError thrown after an await (budgets: an unknown scope is a 404)', async () => {
    const app = gatewayWithFailingKeyStore();
    const response = await request(app)
      .get('/admin/budgets/tenant/nobody')
      .set('authorization', `Bearer ${adminKey}`)
      .timeout(10_000);
    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe('not_found');
    await afterRejectionsReport();
    await app.close();
  });
});
