// loadShedder: when the process is saturated, the lowest tiers are refused first and the highest never; service returns when load falls.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { apiErrorHandler, getContext } from '@tollgate/core';
import { loadShedder, type LoadShedder } from '@tollgate/guard';
import { fakeOnly } from '../../../test/helpers/fake-clock.js';

let shedder: LoadShedder | undefined;
afterEach(() => {
  shedder?.close();
  jest.useRealTimers();
});

function app(made: LoadShedder, slowMs = 0) {
  const application = express();
  application.use((req, res, next) => {
    getContext(req, res).identity = {
      keyId: String(req.headers['x-key']),
      tier: String(req.headers['x-tier']),
      scopes: [],
      authMethod: 'api_key',
    };
    next();
  });
  application.get('/', made, (_req, res) => void setTimeout(() => res.json({ ok: true }), slowMs));
  application.use(apiErrorHandler());
  return application;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const busy = (ms: number) => {
  const until = Date.now() + ms;
  while (Date.now() < until);
};

describe('loadShedder', () => {
  it('sheds the lowest tier first while the event loop lags, never the highest, and stops once the lag is gone', async () => {
    // The judgements are the shedder's interval: jest's, one judgement per move. The lag itself is real.
    fakeOnly(['setInterval', 'clearInterval']);
    shedder = loadShedder({ priorities: { free: 0, team: 5, pro: 10 }, maxEventLoopDelay: '100ms', interval: '50ms' });
    const judge = () => jest.advanceTimersByTime(50);
    const application = app(shedder);
    const status = async (tier: string) => (await request(application).get('/').set('x-tier', tier)).status;
    // Nothing judged yet: every tier served.
    expect([await status('free'), await status('team'), await status('pro')]).toEqual([200, 200, 200]);
    // Lag over maxEventLoopDelay that lasts: the first judgement sheds free, the next one team too, none ever pro.
    // Real waits past the monitor's resolution (10 ms) around it: the monitor counts a lag from its sample before
    // (a judgement's reset drops the one under way), and records it with its late sample.
    const lag = async () => {
      await sleep(20);
      busy(150);
      await sleep(20);
    };
    await lag();
    judge();
    expect(shedder.level).toBe(1);
    expect(await status('free')).toBe(503);
    expect(await status('team')).toBe(200);
    await lag();
    judge();
    expect(shedder.level).toBe(2);
    await lag();
    judge();
    expect(shedder.level).toBe(2);
    const refused = await request(application).get('/').set('x-tier', 'free');
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('service_unavailable');
    expect(refused.headers['retry-after']).toBe('2');
    expect(await status('team')).toBe(503);
    expect(await status('pro')).toBe(200);
    // Four calm judgements in a row ease one class: three are not enough.
    for (let calm = 0; calm < 3; calm++) judge();
    expect(shedder.level).toBe(2);
    judge();
    expect(shedder.level).toBe(1);
    expect(await status('team')).toBe(200);
    expect(await status('free')).toBe(503);
    for (let calm = 0; calm < 4; calm++) judge();
    expect(shedder.level).toBe(0);
    expect(await status('free')).toBe(200);
  });

  it('sheds every tier but the highest past maxConcurrency in flight, at once', async () => {
    shedder = loadShedder({ priorities: { free: 0, pro: 10 }, maxConcurrency: 2, interval: '1m' });
    const application = app(shedder, 200);
    const server = application.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
    const get = (tier: string) => fetch(url, { headers: { 'x-tier': tier } }).then((res) => res.status);
    const slow = [get('pro'), get('pro')];
    await sleep(50);
    expect(await Promise.all([get('free'), get('pro')])).toEqual([503, 200]);
    await Promise.all(slow);
    expect(await get('free')).toBe(200);
    server.close();
  });
});
