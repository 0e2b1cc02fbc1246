// The reservations a budget holds for calls in flight, with their age and the guard that holds them, in the admin view.
import { afterEach, describe, expect, it } from '@jest/globals';
import type { Request, Response } from 'express';
import request from 'supertest';
import { createMemoryStores } from '@tollgate/core';
import { budgetAdminRouter, budgetGuard } from '@tollgate/budget';
import type { BudgetGuard, HeldReservation } from '@tollgate/budget';
import { createApp, eventually, fakeMeter, fakeProvider, pricing } from './helpers.js';

let open: BudgetGuard | undefined;
afterEach(async () => {
  await open?.close();
  open = undefined;
});

describe('held reservations', () => {
  it('lists a call in flight with its amount, age and owner, and nothing once it settled', async () => {
    let now = Date.now();
    const { ledger } = createMemoryStores({ clock: () => now });
    const guard = budgetGuard({
      ledger,
      pricing,
      now: () => now,
      reservationTtl: '2m',
      log: false,
      tenants: { acme: { usd: 10, period: 'month' } },
    });
    open = guard;
    let answer: (() => void) | undefined;
    const waiting = (req: Request, res: Response) => {
      answer = () => fakeProvider(req, res);
    };
    const app = createApp(guard, fakeMeter(), waiting);
    app.use('/admin/budgets', budgetAdminRouter(guard));
    const call = request(app)
      .post('/v1/chat/completions')
      .set({ 'x-test-tenant': 'acme', 'x-test-key': 'acme-key' })
      .send({ max_tokens: 1000, input_tokens: 100, produce: 10 })
      .then((response) => response);
    await eventually(() => answer !== undefined);
    now += 1_500;

    const { body } = await request(app).get('/admin/budgets/tenant/acme/holds').expect(200);
    const holds = (body as { holds: HeldReservation[] }).holds;
    // 100 input tokens at 1000 nano-USD and the whole cap of 1000 output tokens at 2000: the most the call may cost.
    expect(holds).toEqual([
      {
        key: expect.stringMatching(/^budget:tenant:acme:month/),
        amountNanoUsd: 2_100_000,
        expiresAt: new Date(now - 1_500 + 120_000).toISOString(),
        ageMs: 1_500,
        id: expect.stringMatching(/:budget:[0-9a-f-]{36}:1$/),
        owner: expect.stringMatching(/^budget:[0-9a-f-]{36}$/),
      },
    ]);
    expect(holds[0]!.id!.endsWith(`:${holds[0]!.owner!}:1`)).toBe(true);

    answer!();
    expect((await call).status).toBe(200);
    await eventually(async () => (await guard.holds({ scope: 'tenant', id: 'acme' })).length === 0);
    const [status] = await guard.status({ scope: 'tenant', id: 'acme' });
    expect(status).toMatchObject({ spentNanoUsd: 100_000 + 20_000, reservedNanoUsd: 0 });
    await request(app).get('/admin/budgets/tenant/nobody/holds').expect(404);
  });
});
