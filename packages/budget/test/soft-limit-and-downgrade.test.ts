// Soft limits: one event per scope per period (callback, log, webhook with retries); past it, the downgrade map applies before reserving.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createMemoryStores } from '@tollgate/core';
import { maxCostNanoUsd } from '@tollgate/core/costs';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetEvent, BudgetGuardOptions, SoftLimitEvent } from '@tollgate/budget';
import { createApp, eventually, pricing } from './helpers.js';

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

function setup(options: BudgetGuardOptions, clock = { now: Date.UTC(2026, 10, 22, 9, 0) }) {
  const stores = createMemoryStores({ clock: () => clock.now, sweepIntervalMs: 0 });
  const guard = budgetGuard({ ledger: stores.ledger, pricing, now: () => clock.now, ...options });
  closers.push(
    () => guard.close(),
    () => stores.close(),
  );
  const app = createApp(guard);
  const call = async (body: object) => {
    const response = await request(app).post('/v1/chat/completions').set('x-test-tenant', 'acme').send(body);
    await eventually(async () =>
      (await guard.status({ scope: 'tenant', id: 'acme' })).every((s) => s.reservedNanoUsd === 0),
    );
    await guard.flush();
    return response;
  };
  return { guard, clock, call };
}

// $0.01 a day; 400 output tokens cost $0.0008.
const tenants = { acme: { usd: 0.01, period: 'day' as const, softLimit: 0.8 } };
const step = { input_tokens: 0, max_tokens: 1000 };

describe('soft limit', () => {
  it('fires once when spend crosses the threshold, again only in the next period', async () => {
    const events: SoftLimitEvent[] = [];
    const { clock, call } = setup({ tenants, onSoftLimit: (event) => void events.push(event) });
    for (let i = 0; i < 3; i++) await call(step); // $0.006: under $0.008
    expect(events).toHaveLength(0);
    await call(step); // $0.008: at the threshold
    await call({ input_tokens: 0, max_tokens: 500 }); // $0.009
    expect(events).toEqual([
      expect.objectContaining({
        type: 'budget.threshold',
        scope: 'tenant',
        id: 'acme',
        period: 'day',
        key: 'budget:tenant:acme:day:2026-11-22',
        softLimit: 0.8,
        limitNanoUsd: 10_000_000,
        spentNanoUsd: 8_000_000,
        limitUsd: 0.01,
        spentUsd: 0.008,
        resetAt: '2026-11-23T00:00:00.000Z',
      }),
    ]);
    clock.now = Date.UTC(2026, 10, 23, 9, 0);
    for (let i = 0; i < 4; i++) await call(step);
    expect(events.map((e) => e.key)).toEqual([
      'budget:tenant:acme:day:2026-11-22',
      'budget:tenant:acme:day:2026-11-23',
    ]);
  });

  it("fires once per ISO week of the guard's timezone, again from Monday 00:00 there", async () => {
    const events: SoftLimitEvent[] = [];
    // Sunday 2026-11-22, 23:00 in New York (EST): 04:00 UTC on Monday.
    const { clock, call } = setup(
      {
        timezone: 'America/New_York',
        tenants: { acme: { ...tenants.acme, period: 'week' } },
        onSoftLimit: (event) => void events.push(event),
      },
      { now: Date.UTC(2026, 10, 23, 4, 0) },
    );
    for (let i = 0; i < 5; i++) await call(step);
    clock.now = Date.UTC(2026, 10, 23, 5, 0);
    for (let i = 0; i < 5; i++) await call(step);
    expect(events.map((event) => [event.key, event.resetAt])).toEqual([
      ['budget:tenant:acme:week:2026-W47', '2026-11-23T05:00:00.000Z'],
      ['budget:tenant:acme:week:2026-W48', '2026-11-30T05:00:00.000Z'],
    ]);
  });

  it('fires again in the same period after an operator reset', async () => {
    const events: SoftLimitEvent[] = [];
    const { guard, call } = setup({ tenants, onSoftLimit: (event) => void events.push(event) });
    for (let i = 0; i < 4; i++) await call(step);
    await guard.reset({ scope: 'tenant', id: 'acme' });
    for (let i = 0; i < 4; i++) await call(step);
    expect(events).toHaveLength(2);
  });

  it('writes a log line, and never lets a failing listener touch the request', async () => {
    const lines: BudgetEvent[] = [];
    const { call } = setup({
      tenants,
      log: (event) => void lines.push(event),
      onSoftLimit: () => {
        throw new Error('listener bug');
      },
    });
    for (let i = 0; i < 4; i++) expect((await call(step)).status).toBe(200);
    // The listener ran, threw, and was reported as a process warning; the log line still went out.
    expect(lines).toHaveLength(1);
    expect((await call(step)).status).toBe(200);
  });

  it('POSTs the event to a webhook, retrying with backoff until it is accepted', async () => {
    const received: {
      attempt: number;
      body: SoftLimitEvent;
      contentType: string | undefined;
      secret: string | undefined;
    }[] = [];
    let attempts = 0;
    const receiver = http.createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
      req.on('end', () => {
        attempts++;
        // The first two deliveries fail: the receiver is "down".
        if (attempts <= 2) {
          res.statusCode = 503;
          res.end();
          return;
        }
        received.push({
          attempt: attempts,
          body: JSON.parse(raw) as SoftLimitEvent,
          contentType: req.headers['content-type'],
          secret: req.headers['x-secret'] as string | undefined,
        });
        res.end('ok');
      });
    });
    receiver.listen(0, '127.0.0.1');
    await new Promise((resolve) => receiver.once('listening', resolve));
    closers.push(() => new Promise((resolve) => receiver.close(() => resolve())));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/budget`;

    const { call } = setup({
      tenants,
      webhook: { url, headers: { 'x-secret': 's3cret' }, attempts: 4, initialDelay: 10 },
    });
    for (let i = 0; i < 5; i++) await call(step);
    // The threshold after 2 failed tries; then the fifth step spends the budget to its limit.
    expect(attempts).toBe(4);
    expect(received).toHaveLength(2);
    expect(received[0]).toMatchObject({
      attempt: 3,
      contentType: 'application/json',
      secret: 's3cret',
      body: { type: 'budget.threshold', threshold: 0.8, scope: 'tenant', id: 'acme' },
    });
    expect(received[1]).toMatchObject({ attempt: 4, body: { type: 'budget.exhausted', scope: 'tenant', id: 'acme' } });
  });
});

describe('downgrade', () => {
  const options: BudgetGuardOptions = {
    tenants: { acme: { usd: 0.01, period: 'day', softLimit: 0.5 } },
    downgrade: { 'gpt-4o': 'gpt-4o-mini' },
    log: false,
  };

  it('keeps the asked model under the soft limit, swaps it past the limit, before reserving', async () => {
    const { call } = setup(options);
    // gpt-4o: $2.50 in, $10 out per MTok. 100 in + 100 out = $0.00125: under 50% of $0.01.
    const before = await call({ model: 'gpt-4o', input_tokens: 100, max_tokens: 100 });
    expect(before.body).toMatchObject({ model: 'gpt-4o', requestedModel: 'gpt-4o' });
    // 1000 in + 300 out = $0.0055 more: $0.00675 is past the soft limit.
    await call({ model: 'gpt-4o', input_tokens: 1000, max_tokens: 300 });

    const after = await call({ model: 'gpt-4o-2024-08-06', input_tokens: 1000, max_tokens: 200 });
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ model: 'gpt-4o-mini', requestedModel: 'gpt-4o-2024-08-06', cap: 200 });
    // The estimate is the downgraded model's: the reservation was made at its price.
    expect(after.body.estimate).toMatchObject({
      model: 'gpt-4o-mini',
      provider: 'openai',
      costNanoUsd: maxCostNanoUsd(1000, 200, pricing.get('gpt-4o-mini')),
    });
  });

  it('leaves models outside the map alone, and never downgrades without a soft limit crossed', async () => {
    const { call } = setup(options);
    await call({ model: 'gpt-4o', input_tokens: 1000, max_tokens: 600 });
    const other = await call({ model: 'gpt-4o-mini', input_tokens: 10, max_tokens: 10 });
    expect(other.body).toMatchObject({ model: 'gpt-4o-mini', requestedModel: 'gpt-4o-mini' });
    const { call: freshCall } = setup(options);
    expect((await freshCall({ model: 'gpt-4o', input_tokens: 10, max_tokens: 10 })).body.model).toBe('gpt-4o');
  });

  it('lets a budget carry its own downgrade map (the proxy config tenants.*.downgrade)', async () => {
    const { call } = setup({
      tenants: { acme: { usd: 0.01, period: 'day', softLimit: 0.1, downgrade: { 'test-model': 'test-mini' } } },
      log: false,
    });
    await call({ model: 'test-model', input_tokens: 0, max_tokens: 1000 });
    expect((await call({ model: 'test-model', input_tokens: 0, max_tokens: 10 })).body).toMatchObject({
      model: 'test-mini',
      requestedModel: 'test-model',
    });
  });
});
