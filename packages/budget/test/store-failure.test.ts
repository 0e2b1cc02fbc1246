// When the ledger is unreachable (a real Redis URL nobody answers): 503 by default, pass-through with failOpen, never a hung request.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createRedisStores } from '@tollgate/redis';
import type { RedisStores } from '@tollgate/redis';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard } from '@tollgate/budget';
import { createApp } from './helpers.js';

let stores: RedisStores;
const guards: BudgetGuard[] = [];

beforeAll(async () => {
  // A port that was free a moment ago: connections to it are refused.
  const probe = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => probe.once('listening', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  stores = createRedisStores({ url: `redis://127.0.0.1:${port}`, prefix: 'tg-test:down:', timeoutMs: 200 });
});

afterAll(async () => {
  for (const guard of guards) await guard.close();
  await stores.close();
});

function guardWith(onStoreFailure?: 'failOpen' | 'failClosed') {
  const guard = budgetGuard({
    ledger: stores.ledger,
    global: { usd: 1, period: 'day' },
    timeoutMs: 300,
    log: false,
    ...(onStoreFailure ? { onStoreFailure } : {}),
  });
  guards.push(guard);
  return createApp(guard);
}

describe('ledger unavailable', () => {
  it('answers 503 service_unavailable with Retry-After by default', async () => {
    const response = await request(guardWith())
      .post('/v1/chat/completions')
      .send({ model: 'gpt-4o-mini', max_tokens: 10 });
    expect(response.status).toBe(503);
    expect(response.body.error.code).toBe('service_unavailable');
    expect(response.headers['retry-after']).toBe('5');
  });

  it('lets the request through unbudgeted with failOpen', async () => {
    const response = await request(guardWith('failOpen'))
      .post('/v1/chat/completions')
      .send({ model: 'gpt-4o-mini', max_tokens: 10 });
    expect(response.status).toBe(200);
    expect(response.body.cap).toBe(10);
  });

  it('rejects an unknown failure policy at construction', () => {
    expect(() => budgetGuard({ onStoreFailure: 'maybe' as 'failOpen' })).toThrow(
      /onStoreFailure must be "failClosed" or "failOpen"/,
    );
  });
});
