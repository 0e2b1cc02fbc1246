// reprice: a request moved to another model mid-call gets its reservation at the new price, each reservation settled once.
import { afterAll, describe, expect, it } from '@jest/globals';
import type { Request, Response } from 'express';
import request from 'supertest';
import { createMemoryStores } from '@tollgate/core';
import type {
  MaybePromise,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  SettleResult,
} from '@tollgate/core/store-contracts';
import { budgetGuard } from '@tollgate/budget';
import { INPUT_NANO, OUTPUT_NANO, createApp, eventually, fakeMeter, pricing, usageOf } from './helpers.js';

const NOW = Date.UTC(2026, 10, 22, 9, 0);
const KEY = 'budget:global:day:2026-11-22';
const MINI_INPUT_NANO = INPUT_NANO / 10;
const MINI_OUTPUT_NANO = OUTPUT_NANO / 10;
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

/** The memory ledger, noting every reservation granted and every settle or release by id. */
function watchedLedger(inner: ReservationLedger) {
  const granted: { id: string; amount: number }[] = [];
  const closed = new Map<string, number>();
  const close = (id: string) => closed.set(id, (closed.get(id) ?? 0) + 1);
  const ledger: ReservationLedger = {
    async reserve(reserve: ReserveRequest): Promise<ReserveResult> {
      const result = await inner.reserve(reserve);
      if (result.ok) granted.push({ id: reserve.id, amount: result.amount });
      return result;
    },
    settle(id: string, amount: number): MaybePromise<SettleResult> {
      close(id);
      return inner.settle(id, amount);
    },
    release(id: string): MaybePromise<SettleResult> {
      close(id);
      return inner.release(id);
    },
    usage: (scopes) => inner.usage(scopes),
    adjustSpent: (scope, delta, expiresAt) => inner.adjustSpent(scope, delta, expiresAt),
    addCredit: (scope, amount, expiresAt) => inner.addCredit(scope, amount, expiresAt),
    resetScope: (scope) => inner.resetScope(scope),
  };
  return { ledger, granted, closed };
}

function setup(usd: number) {
  const stores = createMemoryStores({ clock: () => NOW, sweepIntervalMs: 0 });
  const watched = watchedLedger(stores.ledger);
  const guard = budgetGuard({
    ledger: watched.ledger,
    pricing,
    now: () => NOW,
    log: false,
    global: { usd, period: 'day' },
  });
  closers.push(
    () => guard.close(),
    () => stores.close(),
  );
  /** A provider that moves the call to `test-model` (as a router's fallback does), asks for the re-price, then answers. */
  const movingProvider = async (req: Request, res: Response) => {
    const ctx = req.tollgate;
    const reservedBefore = (await usageOf(watched.ledger, KEY)).reserved;
    ctx.switchModel('test-model', pricing.get('test-model'));
    const covered = await guard.reprice(req, res);
    // Refused: back to the model the reservation covers, as the router does.
    if (!covered) ctx.switchModel('test-mini', pricing.get('test-mini'));
    const reservedAfter = (await usageOf(watched.ledger, KEY)).reserved;
    res.locals.outputTokens = 10;
    const remaining = ctx.reservations.find((note) => note.kind === 'budget')?.remaining;
    res.json({ covered, reservedBefore, reservedAfter, remaining });
  };
  const app = createApp(guard, fakeMeter(), (req, res, next) => void movingProvider(req, res).catch(next));
  return { app, ...watched };
}

describe('reprice', () => {
  it('moves the reservation to the new price: a new one held, the old released, the new settled at the real cost', async () => {
    const { app, granted, closed, ledger } = setup(1);
    const response = await request(app)
      .post('/v1/chat/completions')
      .send({ model: 'test-mini', input_tokens: 100, max_tokens: 50 });
    expect(response.body).toEqual({
      covered: true,
      reservedBefore: 100 * MINI_INPUT_NANO + 50 * MINI_OUTPUT_NANO,
      reservedAfter: 100 * INPUT_NANO + 50 * OUTPUT_NANO,
      // What the $1 budget has left with the new reservation held and the old one let go.
      remaining: 1e9 - (100 * INPUT_NANO + 50 * OUTPUT_NANO),
    });
    await eventually(() => granted.every(({ id }) => closed.has(id)));
    expect(granted).toHaveLength(2);
    expect([...closed.values()]).toEqual([1, 1]);
    await eventually(async () => (await usageOf(ledger, KEY)).reserved === 0);
    expect(await usageOf(ledger, KEY)).toEqual({ spent: 100 * INPUT_NANO + 10 * OUTPUT_NANO, reserved: 0 });
  });

  it('keeps the old reservation when the budget cannot cover the new price, and settles it once', async () => {
    // Enough for test-mini (100 input, up to 50 output) but not for a minimal test-model answer.
    const { app, granted, closed, ledger } = setup(0.00005);
    const response = await request(app)
      .post('/v1/chat/completions')
      .send({ model: 'test-mini', input_tokens: 100, max_tokens: 50 });
    expect(response.body).toMatchObject({ covered: false, reservedAfter: response.body.reservedBefore as number });
    // The old reservation's figure stands.
    expect(response.body.remaining).toBe(50_000 - (response.body.reservedBefore as number));
    await eventually(() => granted.every(({ id }) => closed.has(id)));
    expect(granted).toHaveLength(1);
    expect([...closed.values()]).toEqual([1]);
    await eventually(async () => (await usageOf(ledger, KEY)).reserved === 0);
    expect(await usageOf(ledger, KEY)).toEqual({ spent: 100 * MINI_INPUT_NANO + 10 * MINI_OUTPUT_NANO, reserved: 0 });
  });

  it('does nothing for a request without a budget hold or on the same price', async () => {
    const { app, granted } = setup(1);
    const same = budgetGuard({ pricing, log: false });
    closers.push(() => same.close());
    const fake = { tollgate: undefined } as unknown as Request;
    await expect(same.reprice(fake, {} as Response)).resolves.toBe(true);
    await request(app).post('/v1/chat/completions').send({ model: 'test-model', input_tokens: 100, max_tokens: 50 });
    // Already priced for test-model: no second reservation.
    await eventually(() => granted.length === 1);
    expect(granted).toHaveLength(1);
  });
});
