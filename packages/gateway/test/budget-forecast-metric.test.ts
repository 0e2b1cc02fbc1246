// The gateway's /metrics carries tollgate_budget_forecast_usd once a budget's rate is known: no series before.
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGateway, validateConfig } from '@tollgate/gateway';
import { createMockProvider } from '@tollgate/providers/mock';
import { fakeOnly } from '../../../test/helpers/fake-clock.js';
import type { Gateway } from '../src/app.js';

const SERIES = 'tollgate_budget_forecast_usd{scope="tenant",id="acme",period="month"}';

/** The value of `series` in a scrape, if it is there. */
function sampleOf(scrape: string, series: string): number | undefined {
  const line = scrape.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('tollgate_budget_forecast_usd', () => {
  const key = generateApiKey();
  let upstream: Server;
  let gateway: Gateway;
  let app: express.Express;

  beforeAll(async () => {
    // Only Date is faked: the budget guard's clock, moved on by hand so a rate is known without waiting.
    fakeOnly(['Date']);
    upstream = createMockProvider().app.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    gateway = createGateway(
      validateConfig({
        upstreams: { openai: { baseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1` } },
        tiers: { pro: { requestsPerMinute: 600, models: ['*'] } },
        defaultTier: 'pro',
        tenants: { acme: { tier: 'pro', budget: { usd: 0.001, period: 'month' } } },
        keys: [{ id: 'acme-key', sha256: hashApiKey(key), tenant: 'acme' }],
        metrics: { public: true },
        log: { level: 'silent' },
      }),
      { log: () => undefined },
    );
    await gateway.spendReady();
    app = express();
    app.use(gateway);
  });

  afterAll(async () => {
    jest.useRealTimers();
    await gateway?.close();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  it('has no series until a rate is known, then the projected spend at the end of the month', async () => {
    const first = (await request(app).get('/metrics').expect(200)).text;
    expect(first).toMatch(/^# TYPE tollgate_budget_forecast_usd gauge$/m);
    expect(sampleOf(first, SERIES)).toBeUndefined();

    await request(app)
      .post('/v1/chat/completions')
      .set('authorization', `Bearer ${key}`)
      .send({ model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'hello' }] })
      .expect(200);
    await gateway.flushUsage();
    jest.setSystemTime(Date.now() + 10 * 60_000);

    const later = (await request(app).get('/metrics').expect(200)).text;
    const spent = sampleOf(later, 'tollgate_budget_spent_usd{scope="tenant",id="acme",period="month"}')!;
    expect(spent).toBeGreaterThan(0);
    // Ten minutes' spend, kept up to the month's end (at least hours away): well past what was spent.
    expect(sampleOf(later, SERIES)).toBeGreaterThan(spent * 5);
  });
});
