// The proxy on a Redis that stalls: fast 503s and a bounded /healthz during the stall, and no limit left drained by the stalled requests afterwards.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createStores } from '../packages/gateway/src/stores.js';
import { validateConfig } from '../packages/gateway/src/config/index.js';
import type { TollgateStores } from '@tollgate/core';
import { StallingRelay } from '../packages/ratelimit/test/stalling-relay.js';
import { deleteRedisPrefix, newApiKey, sha256Hex, startProxy, WITH_MOCK } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const prefix = `tg-test:${randomUUID()}:`;
const key = newApiKey();
const relay = new StallingRelay();
let stores: TollgateStores;
let proxy: RunningProxy;

beforeAll(async () => {
  // The stores exactly as `pnpm start` opens them, through a relay the test can stall.
  stores = await createStores({ redisUrl: await relay.listen(), redisPrefix: prefix });
  // No output cap on the tier: one request reserves most of the token window (input + the model's whole output).
  proxy = await startProxy(
    validateConfig({
      ...WITH_MOCK,
      tiers: { free: { requestsPerMinute: 3, tokensPerMinute: 20_000 } },
      tenants: { 'stall-co': { tier: 'free' } },
      keys: [{ id: 'stall', sha256: sha256Hex(key), tenant: 'stall-co' }],
    }),
    { stores },
  );
});

afterAll(async () => {
  relay.resume();
  await proxy?.close();
  await stores?.close();
  await relay.close();
  await deleteRedisPrefix(prefix);
});

const chat = () =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello!' }] }),
  });

describe('a Redis stall', () => {
  it('answers 503 while it lasts, and leaves no request or token counted for the refused requests', async () => {
    expect((await chat()).status).toBe(200);

    relay.stall();
    const during = await Promise.all([chat(), chat()]);
    expect(during.map((response) => response.status)).toEqual([503, 503]);
    expect(await during[0]!.json()).toMatchObject({ error: { code: 'service_unavailable' } });
    expect(during[0]!.headers.get('retry-after')).toBe('1');
    expect((await fetch(`${proxy.url}/healthz`)).status).toBe(503);
    relay.resume();

    // Redis answers again: what the stalled requests counted when their commands landed is given back
    // (one round trip after they land).
    for (let i = 0; i < 50 && (await fetch(`${proxy.url}/healthz`)).status !== 200; i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const after = await chat();
    expect(after.status).toBe(200);
    expect(after.headers.get('x-ratelimit-remaining-requests')).toBe('1');
    expect((await chat()).status).toBe(200);
  });
});
