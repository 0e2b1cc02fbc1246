// wait: instead of a 429, requests wait in a bounded FIFO queue per caller; the wait is reported in x-tollgate-queue-ms.
import type http from 'node:http';
import { afterAll, afterEach, describe, expect, it, jest } from '@jest/globals';
import request from 'supertest';
import type { RequestHandler } from 'express';
import { createMemoryStores, getContext } from '@tollgate/core';
import { concurrencyLimit, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { QUEUE_HEADER } from '../src/wait-queue.js';
import {
  estimateFromHeader,
  holdingHandler,
  listen,
  send,
  sleep,
  testApp,
  turnsUntil,
  usageRecord,
} from './helpers.js';
import { fakeOnly } from '../../../test/helpers/fake-clock.js';

const servers: http.Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});
afterEach(() => {
  jest.useRealTimers();
});

async function serve(middleware: RequestHandler | RequestHandler[], hold: ReturnType<typeof holdingHandler>) {
  const { server, port } = await listen(testApp(middleware, hold.handler));
  servers.push(server);
  return port;
}

/** Lets a request reach the queue before the next is sent: the order under test is arrival order. */
const settleIn = () => sleep(50);

describe('wait queue on concurrencyLimit', () => {
  it('serves waiting requests in arrival order once slots free up, with the wait in a header', async () => {
    const hold = holdingHandler();
    const port = await serve(concurrencyLimit({ limit: 1, wait: { maxMs: 10_000 } }), hold);
    const a = send(port, { 'x-key': 'k-fifo', 'x-name': 'a', 'x-hold': '' });
    await hold.untilEntered(1);
    const waiting = [];
    for (const name of ['b', 'c', 'd', 'e']) {
      waiting.push(send(port, { 'x-key': 'k-fifo', 'x-name': name }));
      await settleIn();
    }
    expect(hold.entered).toEqual(['a']);
    hold.release('a');
    const responses = await Promise.all(waiting.map((w) => w.response));
    expect(hold.entered).toEqual(['a', 'b', 'c', 'd', 'e']);
    for (const response of responses) {
      expect(response.status).toBe(200);
      expect(Number(response.headers[QUEUE_HEADER])).toBeGreaterThan(0);
    }
    expect((await a.response).headers[QUEUE_HEADER]).toBe('0');
  });

  it('refuses at once when the queue is full, and with 429 when the wait runs out', async () => {
    // The wait is on jest's clock (Date and timeouts), moved by the test; the requests are real.
    fakeOnly(['Date', 'setTimeout', 'clearTimeout']);
    const hold = holdingHandler();
    const port = await serve(concurrencyLimit({ limit: 1, wait: { maxMs: 300, maxQueue: 1 } }), hold);
    const a = send(port, { 'x-key': 'k-full', 'x-name': 'a', 'x-hold': '' });
    await hold.untilEntered(1);
    const b = send(port, { 'x-key': 'k-full', 'x-name': 'b' });
    // b waits: its next look at the slot is a timer.
    await turnsUntil(() => jest.getTimerCount() === 1, 'b in the queue');
    const c = await send(port, { 'x-key': 'k-full', 'x-name': 'c' }).response;
    expect(c.status).toBe(429);
    expect(c.headers[QUEUE_HEADER]).toBe('0');
    // Still waiting a millisecond before maxMs; given up at it.
    await jest.advanceTimersByTimeAsync(299);
    expect(jest.getTimerCount()).toBe(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(jest.getTimerCount()).toBe(0);
    const timedOut = await b.response;
    expect(timedOut.status).toBe(429);
    expect(JSON.parse(timedOut.body).error.code).toBe('rate_limit_exceeded');
    expect(Number(timedOut.headers[QUEUE_HEADER])).toBeGreaterThan(0);
    hold.release('a');
    await a.response;
  });

  it('drops a waiting request whose client went away, and serves the one behind it', async () => {
    const hold = holdingHandler();
    const port = await serve(concurrencyLimit({ limit: 1, wait: { maxMs: 10_000 } }), hold);
    const a = send(port, { 'x-key': 'k-gone', 'x-name': 'a', 'x-hold': '' });
    await hold.untilEntered(1);
    const b = send(port, { 'x-key': 'k-gone', 'x-name': 'b' });
    await settleIn();
    const c = send(port, { 'x-key': 'k-gone', 'x-name': 'c' });
    await settleIn();
    b.abort();
    await settleIn();
    hold.release('a');
    expect((await a.response).status).toBe(200);
    expect((await c.response).status).toBe(200);
    expect(hold.entered).toEqual(['a', 'c']);
  });
});

describe('wait queue on request and token limits', () => {
  it('tieredRateLimit waits for the window to reset instead of refusing (a 1 s window)', async () => {
    // The window and the wait are on jest's clock (Date and timeouts), moved by the test; the requests are real.
    fakeOnly(['Date', 'setTimeout', 'clearTimeout'], Date.UTC(2026, 10, 24, 9, 0));
    const app = testApp(tieredRateLimit({ limit: 1, window: '1s', wait: { maxMs: 5000 } }));
    expect((await request(app).get('/').set('x-key', 'k-window')).status).toBe(200);
    const waiting = request(app)
      .get('/')
      .set('x-key', 'k-window')
      .then((response) => response);
    await turnsUntil(() => jest.getTimerCount() === 1, 'the wait for the window');
    // The window ends a second after it began: the wait is not over a millisecond before.
    jest.advanceTimersByTime(999);
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(1);
    const waited = await waiting;
    expect(waited.status).toBe(200);
    expect(Number(waited.headers[QUEUE_HEADER])).toBe(1000);
  });

  it('tieredRateLimit refuses at once when the reset is further away than maxMs', async () => {
    const app = testApp(tieredRateLimit({ limit: 1, window: '1m', wait: { maxMs: 100 } }));
    await request(app).get('/').set('x-key', 'k-far');
    const refused = await request(app).get('/').set('x-key', 'k-far');
    expect(refused.status).toBe(429);
    expect(refused.headers[QUEUE_HEADER]).toBe('0');
  });

  it('tokenRateLimit wakes the waiting request when a settle refunds tokens', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const hold = holdingHandler();
    // What metering does after a response: settle with the real usage (here 100 of the 900 reserved).
    const settleAfterResponse: RequestHandler = (req, res, next) => {
      const context = getContext(req, res);
      context.metered = true;
      res.once('finish', () => void context.settle(usageRecord(Number(req.header('x-used') ?? 0), 0)));
      next();
    };
    const port = await serve(
      [estimateFromHeader, settleAfterResponse, tokenRateLimit({ stores, limit: 1000, wait: { maxMs: 30_000 } })],
      hold,
    );
    const a = send(port, { 'x-key': 'k-tokens', 'x-name': 'a', 'x-hold': '', 'x-tokens': '900', 'x-used': '100' });
    await hold.untilEntered(1);
    const b = send(port, { 'x-key': 'k-tokens', 'x-name': 'b', 'x-tokens': '500', 'x-used': '500' });
    await settleIn();
    expect(hold.entered).toEqual(['a']);
    hold.release('a');
    expect((await a.response).status).toBe(200);
    const served = await b.response;
    expect(served.status).toBe(200);
    expect(Number(served.headers[QUEUE_HEADER])).toBeGreaterThan(0);
    expect(hold.entered).toEqual(['a', 'b']);
    expect(await stores.counter.peek('tg:tokens:key:key:k-tokens', { windowMs: 60_000 })).toBe(600);
  });
});
