// Settle: whatever happens to the request (success, client abort, upstream failure, exception, TTL passed), exactly one settle charges what was used.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { Request, Response } from 'express';
import request from 'supertest';
import { createMemoryStores } from '@tollgate/core';
import { budgetRemainingAfter } from '@tollgate/core/provider-call';
import { NANO_PER_USD } from '../../core/src/money.js';
import type {
  MaybePromise,
  ReservationLedger,
  ReserveRequest,
  ScopeUsage,
  SettleResult,
} from '@tollgate/core/store-contracts';
import { budgetGuard } from '@tollgate/budget';
import {
  INPUT_NANO,
  OUTPUT_NANO,
  createApp,
  eventually,
  fakeMeter,
  fakeProvider,
  pricing,
  usageOf,
} from './helpers.js';

/** The real memory ledger, counting the settles that reach it. */
class CountingLedger implements ReservationLedger {
  settles = 0;
  constructor(private readonly inner: ReservationLedger) {}
  reserve(request: ReserveRequest) {
    return this.inner.reserve(request);
  }
  settle(id: string, actualAmount: number): MaybePromise<SettleResult> {
    if (!id.includes(':soft-limit:')) this.settles++;
    return this.inner.settle(id, actualAmount);
  }
  release(id: string) {
    return this.settle(id, 0);
  }
  usage(keys: string[]): Promise<ScopeUsage[]> {
    return this.inner.usage(keys);
  }
  adjustSpent(key: string, delta: number, expiresAt: number) {
    return this.inner.adjustSpent(key, delta, expiresAt);
  }
  addCredit(key: string, amount: number, expiresAt: number) {
    return this.inner.addCredit(key, amount, expiresAt);
  }
  resetScope(key: string) {
    return this.inner.resetScope(key);
  }
}

const NOW = Date.UTC(2026, 10, 22, 9, 0);
const KEY = 'budget:global:day:2026-11-22';
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

function setup(clock = { now: NOW }) {
  const stores = createMemoryStores({ clock: () => clock.now, sweepIntervalMs: 0 });
  const ledger = new CountingLedger(stores.ledger);
  const guard = budgetGuard({
    ledger,
    pricing,
    now: () => clock.now,
    log: false,
    global: { usd: 1, period: 'day' },
    reservationTtl: '10m',
  });
  closers.push(
    () => guard.close(),
    () => stores.close(),
  );
  const settledTo = async (spent: number) => {
    await eventually(async () => (await usageOf(ledger, KEY)).reserved === 0 && ledger.settles > 0);
    expect(await usageOf(ledger, KEY)).toEqual({ spent, reserved: 0 });
    expect(ledger.settles).toBe(1);
  };
  return { guard, ledger, clock, settledTo };
}

describe('settle', () => {
  it('charges the real cost after a normal response, once', async () => {
    const { guard, settledTo } = setup();
    const response = await request(createApp(guard))
      .post('/v1/chat/completions')
      .send({ input_tokens: 100, max_tokens: 500, produce: 42 });
    expect(response.status).toBe(200);
    await settledTo(100 * INPUT_NANO + 42 * OUTPUT_NANO);
  });

  it('charges only what passed when the client aborts mid-stream (real HTTP abort)', async () => {
    const { guard, settledTo } = setup();
    const streaming = (req: Request, res: Response) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"delta":"ten tokens worth"}\n\n');
      // The meter counts output from what passed: 10 tokens so far. Then the stream stalls.
      res.locals.outputTokens = 10;
    };
    const server = createApp(guard, fakeMeter(), streaming).listen(0, '127.0.0.1');
    closers.push(() => new Promise((resolve) => server.close(() => resolve())));
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;

    await new Promise<void>((resolve, reject) => {
      const client = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json' },
        },
        (response) => {
          response.once('data', () => {
            client.destroy();
            resolve();
          });
        },
      );
      client.on('error', (error) =>
        (error as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(error),
      );
      client.end(JSON.stringify({ input_tokens: 100, max_tokens: 500, stream: true }));
    });
    await settledTo(100 * INPUT_NANO + 10 * OUTPUT_NANO);
  });

  it('charges nothing when the upstream fails with 502', async () => {
    const { guard, settledTo } = setup();
    const response = await request(createApp(guard))
      .post('/v1/chat/completions')
      .send({ input_tokens: 100, max_tokens: 500, fail: '502' });
    expect(response.status).toBe(502);
    await settledTo(0);
  });

  it('charges nothing when the handler throws before any output', async () => {
    const { guard, settledTo } = setup();
    const response = await request(createApp(guard))
      .post('/v1/chat/completions')
      .send({ input_tokens: 100, max_tokens: 500, fail: 'throw' });
    expect(response.status).toBe(500);
    await settledTo(0);
  });

  it('charges the reserved amount when nothing metered the request (the most it could have cost)', async () => {
    const { guard, settledTo } = setup();
    const response = await request(createApp(guard, fakeMeter({ settles: false })))
      .post('/v1/chat/completions')
      .send({ input_tokens: 100, max_tokens: 500, fail: 'throw' });
    expect(response.status).toBe(500);
    await settledTo(100 * INPUT_NANO + 500 * OUTPUT_NANO);
  });

  it('settles once even when the request is settled twice', async () => {
    const { guard, settledTo } = setup();
    const app = express();
    app.use(express.json());
    app.post('/v1/chat/completions', fakeMeter({ settles: false }), guard, (req, res) => {
      res.locals.outputTokens = 5;
      fakeProvider(req, res);
      void req.tollgate.settle(undefined);
      void req.tollgate.settle(undefined);
    });
    await request(app).post('/v1/chat/completions').send({ input_tokens: 100, max_tokens: 500 });
    await settledTo(100 * INPUT_NANO + 500 * OUTPUT_NANO);
  });

  it('still charges a request that outlived its reservation TTL', async () => {
    const { guard, clock, settledTo } = setup();
    const slow = (req: Request, res: Response) => {
      // An 11-minute stream: the 10-minute reservation expired and released its amount meanwhile.
      clock.now += 11 * 60_000;
      fakeProvider(req, res);
    };
    const response = await request(createApp(guard, fakeMeter(), slow))
      .post('/v1/chat/completions')
      .send({ input_tokens: 100, max_tokens: 500, produce: 50 });
    expect(response.status).toBe(200);
    await settledTo(100 * INPUT_NANO + 50 * OUTPUT_NANO);
  });

  it('records the reservation in req.tollgate.reservations, with what its budget has left', async () => {
    const { guard } = setup();
    const app = createApp(guard, fakeMeter(), (req, res) => {
      res.json({
        reservations: req.tollgate.reservations,
        afterCostOf40: budgetRemainingAfter(req.tollgate, 40),
        afterCostOfAll: budgetRemainingAfter(req.tollgate, 2 * NANO_PER_USD),
      });
    });
    const amount = 100 * INPUT_NANO + 500 * OUTPUT_NANO;
    const response = await request(app).post('/v1/chat/completions').send({ input_tokens: 100, max_tokens: 500 });
    expect(response.body).toEqual({
      // The global $1 budget, this reservation held: what the reserve reported, without a read.
      reservations: [
        { kind: 'budget', id: expect.stringMatching(/:budget:/), amount, remaining: NANO_PER_USD - amount },
      ],
      afterCostOf40: NANO_PER_USD - 40,
      afterCostOfAll: 0,
    });
  });
});
