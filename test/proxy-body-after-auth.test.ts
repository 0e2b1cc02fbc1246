// The proxy reads a provider route's body only after the credentials passed, and only within guard.bodyTimeout.
import { request as httpRequest } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { validateConfig } from '../packages/gateway/src/config/index.js';
import { fakeOnly, turnsUntil } from './helpers/fake-clock.js';
import { newApiKey, sha256Hex, startProxy, WITH_MOCK } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const key = newApiKey();
let proxy: RunningProxy;

beforeAll(async () => {
  const config = validateConfig({
    ...WITH_MOCK,
    keys: [{ id: 'body-key', sha256: sha256Hex(key) }],
    guard: { bodyTimeout: '1s' },
  });
  proxy = await startProxy(config, { metrics: false });
});

afterAll(async () => {
  await proxy.close();
});
afterEach(() => {
  jest.useRealTimers();
});

/** Starts a POST announcing a 1 MB body, sends 100 bytes of it and no more; resolves with the answer's status and when it came. */
function trickle(authorization: string | undefined): Promise<{ status: number; afterMs: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-length': String(1_000_000),
        ...(authorization ? { authorization } : {}),
      },
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, afterMs: Date.now() - started });
      req.destroy();
    });
    req.on('error', (error) => reject(error));
    req.write('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + 'x'.repeat(50));
  });
}

describe('proxy bodies after auth', () => {
  it('refuses a caller without a valid key from its headers, without waiting for its body', async () => {
    const missing = await trickle(undefined);
    expect(missing.status).toBe(401);
    expect(missing.afterMs).toBeLessThan(500);
    const wrong = await trickle('Bearer tgk_wrong');
    expect(wrong.status).toBe(401);
    expect(wrong.afterMs).toBeLessThan(500);
  });

  it('gives an identified caller bodyTimeout for its body, then 408', async () => {
    // The body's deadline is a timer: jest's, moved by the test. The proxy's sockets and the client are real.
    fakeOnly(['setTimeout', 'clearTimeout']);
    const slow = trickle(`Bearer ${key}`);
    await turnsUntil(() => jest.getTimerCount() === 1, 'the body deadline');
    jest.advanceTimersByTime(999);
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(1);
    expect(jest.getTimerCount()).toBe(0);
    expect((await slow).status).toBe(408);
  });

  it('serves a whole body as before', async () => {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(response.status).toBe(200);
  });
});
