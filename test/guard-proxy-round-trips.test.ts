// The example proxy with every guard check on still sends one Redis command in one flight before the upstream call.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { validateConfig } from '../packages/gateway/src/config/index.js';
import { deleteRedisPrefix, newApiKey, REDIS_URL, sha256Hex, startFakeUpstream, startProxy } from './helpers/proxy.js';
import type { FakeUpstream, RunningProxy } from './helpers/proxy.js';
import { RedisFlightRelay } from './helpers/redis-relay.js';

const relay = new RedisFlightRelay(new URL(REDIS_URL));
const prefix = `tg-test:guard-round-trips:${randomUUID()}:`;
const key = newApiKey();
let stores: RedisStores;
let upstream: FakeUpstream;
let proxy: RunningProxy;
/** The relay's counts when the upstream got each request. */
const atUpstream: { flights: number; commands: number }[] = [];

beforeAll(async () => {
  const relayUrl = await relay.listen();
  upstream = await startFakeUpstream((_request, res) => {
    atUpstream.push({ flights: relay.flights, commands: relay.commands.length });
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        id: 'chatcmpl-rt',
        object: 'chat.completion',
        created: 0,
        model: 'gpt-4o-mini',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
      }),
    );
  });
  stores = createRedisStores({ url: relayUrl, prefix });
  const config = validateConfig({
    upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-fake' } },
    tiers: { pro: { requestsPerMinute: 1000, tokensPerMinute: 1_000_000, models: ['*'] } },
    tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'month' } } },
    keys: [{ id: 'rt', sha256: sha256Hex(key), tenant: 'acme', budget: { usd: 5, period: 'day' } }],
    global: { requestsPerMinute: 100_000 },
    guard: {
      spendAnomaly: { bucketSeconds: 60, action: 'suspend' },
      repeatedRequests: { max: 20, windowSeconds: 60 },
      authFailures: { max: 20, windowSeconds: 60, block: '5m' },
    },
  });
  // The guard's subscriber goes through the relay too: what it is pushed is never a flight.
  proxy = await startProxy(config, { stores, env: { REDIS_URL: relayUrl }, metrics: false });
});

afterAll(async () => {
  await proxy.close();
  await stores.close();
  await upstream.close();
  await relay.close();
  await deleteRedisPrefix(prefix);
});

async function chat(n: number): Promise<{ flights: number; commands: readonly string[] }> {
  const flights = relay.flights;
  const commands = relay.commands.length;
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      max_tokens: 32,
      messages: [{ role: 'user', content: `question ${n}` }],
    }),
  });
  expect(response.status).toBe(200);
  await response.json();
  const seen = atUpstream.at(-1)!;
  return { flights: seen.flights - flights, commands: relay.commands.slice(commands, seen.commands) };
}

describe('the proxy with its guard on Redis, steady state', () => {
  it('makes one flight of one command (the script bundle) before the upstream call: repeat count, limits and budget together', async () => {
    for (let i = 0; i < 4; i++) await chat(i);
    // Timers of the guard and the budget (the mitigations' sync, the usage flush, settles) may share a
    // measured window; they only ever add. The least of several is the request's own.
    const measured: { flights: number; commands: readonly string[] }[] = [];
    for (let i = 0; i < 8; i++) {
      measured.push(await chat(100 + i));
      await sleep(120);
    }
    // Least by flights, then by commands: a timer's call may ride in the request's own flight too.
    const fewer = (a: (typeof measured)[number], b: (typeof measured)[number]) =>
      a.flights < b.flights || (a.flights === b.flights && a.commands.length < b.commands.length);
    const least = measured.reduce((best, next) => (fewer(next, best) ? next : best));
    expect(least).toEqual({ flights: 1, commands: ['EVALSHA'] });
    expect(measured.filter((trip) => trip.flights === 1).length).toBeGreaterThanOrEqual(4);
    console.log(`flights before the upstream call, 8 requests: ${measured.map((trip) => trip.flights).join(', ')}`);
  });

  it('counts repeats in that call: the 21st send of one request is refused', async () => {
    const send = () =>
      fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          max_tokens: 32,
          messages: [{ role: 'user', content: 'the same again' }],
        }),
      });
    for (let i = 0; i < 20; i++) expect((await send()).status).toBe(200);
    const refused = await send();
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('repeated_request');
  });
});
