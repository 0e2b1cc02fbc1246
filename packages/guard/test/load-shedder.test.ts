// loadShedder: when the process is saturated, the lowest tiers are refused first and the highest never; service returns when load falls.
import { afterEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { apiErrorHandler, getContext } from '@tollgate/core';
import { loadShedder, type LoadShedder } from '@tollgate/guard';

let shedder: LoadShedder | undefined;
afterEach(() => shedder?.close());

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
    shedder = loadShedder({ priorities: { free: 0, team: 5, pro: 10 }, maxEventLoopDelay: '100ms', interval: '50ms' });
    const application = app(shedder);
    const status = async (tier: string) => (await request(application).get('/').set('x-tier', tier)).status;
    // Whatever the first requests and the test runner cost the event loop has passed.
    // Calm first (a loaded test machine may lag on its own): every tier served.
    let served: number[] = [];
    for (let tries = 0; tries < 40 && served.join() !== '200,200,200'; tries++) {
      while (shedder.level > 0) await sleep(50);
      served = [await status('free'), await status('team'), await status('pro')];
    }
    expect(served).toEqual([200, 200, 200]);
    // Lag that lasts: the first judgement sheds free, a later one team too, none ever pro.
    for (let i = 0; i < 8 && shedder.level < 2; i++) {
      busy(300);
      await sleep(70);
    }
    expect(shedder.level).toBe(2);
    const refused = await request(application).get('/').set('x-tier', 'free');
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('service_unavailable');
    expect(refused.headers['retry-after']).toBe('2');
    expect(await status('team')).toBe(503);
    expect(await status('pro')).toBe(200);
    // Four calm judgements in a row ease one class (on a busy machine calm may take longer to come).
    for (let waited = 0; waited < 3_000 && shedder.level > 0; waited += 50) await sleep(50);
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
