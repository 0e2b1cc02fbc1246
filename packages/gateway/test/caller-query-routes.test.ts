// The caller's own queries (GET /v1/models, POST /v1/outcomes) composed as their profile: the address checks run before
// the key is read, so a bad key there counts toward the address's block like anywhere else, and a blocked address is
// refused on them before its key is looked at.
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGatewayApp, validateConfig } from '@tollgate/gateway';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import type { GatewayApp } from '../src/app.js';
import { PROFILES } from '../src/stages.js';

const key = generateApiKey();
const apps: GatewayApp[] = [];
afterAll(async () => {
  for (const app of apps.splice(0)) await app.close();
});

function gateway(): GatewayApp {
  const app = createGatewayApp(
    validateConfig({
      ...WITH_MOCK,
      keys: [{ id: 'k', sha256: hashApiKey(key) }],
      guard: { authFailures: { max: 3, windowSeconds: 60, block: '5m' } },
      trustProxy: 'loopback',
      log: { level: 'silent' },
    }),
    { log: () => undefined },
  );
  apps.push(app);
  return app;
}

const outcome = { requestId: 'req-1', outcome: 'resolved' };

describe("the caller's queries", () => {
  it('run the address checks, the caller, then their answer: the callerQuery profile', () => {
    expect(PROFILES.callerQuery.skips).not.toContain('guardAdmit');
    expect(PROFILES.callerQuery.skips).not.toContain('auth');
    expect(PROFILES.callerQuery.skips).not.toContain('call');
    expect(PROFILES.callerQuery.skips).toHaveLength(13);
  });

  it.each([
    [
      'POST /v1/outcomes',
      404,
      (app: GatewayApp, address: string, bearer: string) =>
        request(app)
          .post('/v1/outcomes')
          .set('x-forwarded-for', address)
          .set('authorization', `Bearer ${bearer}`)
          .send(outcome),
    ],
    [
      'GET /v1/models',
      200,
      (app: GatewayApp, address: string, bearer: string) =>
        request(app).get('/v1/models').set('x-forwarded-for', address).set('authorization', `Bearer ${bearer}`),
    ],
  ])(
    '%s: bad keys there block the address, and a blocked address is refused there with a valid key',
    async (_name, answered, call) => {
      const app = gateway();
      const address = '10.20.30.40';
      // The valid key answers (an outcome for a request it never made is still not a 401).
      expect((await call(app, '10.20.30.41', key)).status).not.toBe(401);
      for (let i = 0; i < 3; i++) expect((await call(app, address, `tg_forged${i}`)).status).toBe(401);
      const refused = await call(app, address, key);
      // The address's block answers, as on every other route: the key is not looked at.
      expect(refused.status).toBe(429);
      expect(refused.headers['retry-after']).toBeDefined();
      // Another address with the valid key reaches the route's own answer (outcomes: this proxy keeps no ledger).
      const served = await call(app, '10.20.30.42', key);
      expect([200, 201, 400, 404]).toContain(served.status);
      expect(served.status).toBe(answered);
    },
  );
});
