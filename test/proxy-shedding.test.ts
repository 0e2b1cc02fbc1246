// The proxy's `guard.shedding`: a saturated process refuses lower tiers first (503) and keeps serving the highest.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { validateConfig } from '../packages/gateway/src/config/index.js';
import { createMockProvider } from '@tollgate/providers/mock';
import type { MockProvider } from '@tollgate/providers/mock';
import { fakeOnly } from './helpers/fake-clock.js';
import { newApiKey, sha256Hex, startProxy, WITH_MOCK } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const free = newApiKey();
const pro = newApiKey();
let proxy: RunningProxy;
let mock: MockProvider;

/** How often the shedder judges the load (its default). */
const JUDGE_MS = 500;

beforeAll(async () => {
  // The shedder judges on an interval: jest's, moved by the test. Answers, requests and their timers stay real.
  fakeOnly(['setInterval', 'clearInterval']);
  const config = validateConfig({
    ...WITH_MOCK,
    tiers: { free: { models: ['*'] }, pro: { models: ['*'] } },
    tenants: { small: { tier: 'free' }, big: { tier: 'pro' } },
    keys: [
      { id: 'free-key', sha256: sha256Hex(free), tenant: 'small' },
      { id: 'pro-key', sha256: sha256Hex(pro), tenant: 'big' },
    ],
    // Saturated by requests in flight alone: the event loop's own delay on a loaded machine is not what is tested.
    guard: { shedding: { priorities: { free: 0, pro: 10 }, maxConcurrency: 1, maxEventLoopDelay: '1m' } },
  });
  // Each answer takes 400 ms, so one request in flight is enough to saturate a process allowed one.
  mock = createMockProvider({ latencyMs: 400 });
  proxy = await startProxy(config, { mock, metrics: false });
});

afterAll(async () => {
  await proxy.close();
  jest.useRealTimers();
});

const chat = (key: string) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
  });

describe('proxy shedding by tier', () => {
  it('sheds the free tier while the process is at its ceiling, never the pro tier, and serves both once it is not', async () => {
    const holding = chat(pro);
    // In flight once the upstream holds it (a fixed wait is too short on a loaded machine).
    for (let i = 0; i < 200 && mock.requests.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(mock.requests).toHaveLength(1);
    // A judgement while the process is at its ceiling: the free class is shed from now on, not only while it is.
    jest.advanceTimersByTime(JUDGE_MS);
    const [shed, alsoPro] = await Promise.all([chat(free), chat(pro)]);
    expect(shed.status).toBe(503);
    expect(shed.headers.get('retry-after')).toBe('2');
    const body = (await shed.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('service_unavailable');
    expect(body.error.message).toMatch(/serves higher tiers first \(this key's tier: free\)/);
    expect(alsoPro.status).toBe(200);
    expect((await holding).status).toBe(200);
    // Shedding eases by a class once the load stayed low for four judgements (2 s): no flapping.
    expect((await chat(free)).status).toBe(503);
    for (let calm = 1; calm < 4; calm++) {
      jest.advanceTimersByTime(JUDGE_MS);
      expect((await chat(free)).status).toBe(503);
    }
    jest.advanceTimersByTime(JUDGE_MS);
    expect((await chat(free)).status).toBe(200);
    expect((await chat(pro)).status).toBe(200);
  });
});
