// The example proxy's guard across processes on one Redis: suspension and lift, throttle and its cooldown, an auth flood, repeats, alerts once.
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { eventually } from '../packages/redis/test/helpers.js';
import { deleteRedisPrefix, MOCK_UPSTREAMS, newApiKey, REDIS_URL, sha256Hex, spawnProxy } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';
import { startWebhookReceiver } from './helpers/webhook-receiver.js';
import type { WebhookReceiver } from './helpers/webhook-receiver.js';

const HOOK_SECRET = 'e2e-guard-hook-secret';
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-e2e-guard-'));
const prefixes: string[] = [];
const adminKey = newApiKey();
const keys = {
  runaway: newApiKey(),
  steady: newApiKey(),
  tiny: newApiKey(),
  loop: newApiKey(),
  hot: newApiKey(),
  calm: newApiKey(),
};
let running: SpawnedProxy[] = [];

/** The webhook receiver: refuses the very first delivery (503) so the retry is seen, keeps the rest. */
let hook: WebhookReceiver;
const events = () =>
  hook.deliveries.map(
    ({ body }) =>
      JSON.parse(body) as {
        type: string;
        id: string;
        keyId?: string;
        tenantId?: string;
        address?: string;
        message: string;
      },
  );

/**
 * A proxy config for `processes` processes on a prefix of their own. The model costs $100 per
 * million tokens either way: a mock reply (about 35 tokens) is about $0.0035, so one bucket of a
 * burst passes minSpendUsd and a steady second does not come near it.
 */
/** The environment of the processes started last: one more process of the same deployment starts with it. */
let lastEnv: Record<string, string> = {};

async function startProxies(processes: number, guard: Record<string, unknown>, name: string): Promise<SpawnedProxy[]> {
  const prefix = `tg-test:e2e-guard:${randomUUID()}:`;
  prefixes.push(prefix);
  const configPath = path.join(dir, `${name}.json`);
  const key = (id: string, tenant: string, extra: Record<string, unknown> = {}) => ({
    id,
    sha256: sha256Hex(keys[id as keyof typeof keys]),
    tenant,
    ...extra,
  });
  writeFileSync(
    configPath,
    JSON.stringify({
      upstreams: MOCK_UPSTREAMS,
      redisPrefix: prefix,
      adminKeySha256: sha256Hex(adminKey),
      models: { 'guard-model': { provider: 'openai', inputPerMTok: 100, outputPerMTok: 100 } },
      tiers: {
        roomy: { requestsPerMinute: 100_000, tokensPerMinute: 1_000_000_000, models: ['*'] },
        metered: { requestsPerMinute: 400, tokensPerMinute: 1_000_000_000, models: ['*'] },
      },
      tenants: {
        acme: { tier: 'roomy' },
        thrifty: { tier: 'roomy' },
        busy: { tier: 'metered' },
        quiet: { tier: 'metered' },
      },
      keys: [
        key('runaway', 'acme'),
        key('steady', 'acme'),
        key('loop', 'acme'),
        key('tiny', 'thrifty', { budget: { usd: 0.01, period: 'day', softLimit: 0.5 } }),
        key('hot', 'busy'),
        key('calm', 'quiet'),
      ],
      trustProxy: 'loopback',
      guard,
      alerts: { webhooks: [{ url: hook.url, secretEnv: 'E2E_GUARD_HOOK_SECRET' }] },
    }),
  );
  const env = { TOLLGATE_CONFIG: configPath, REDIS_URL, E2E_GUARD_HOOK_SECRET: HOOK_SECRET };
  lastEnv = env;
  return Promise.all(Array.from({ length: processes }, () => spawnProxy(env, 120_000)));
}

let sent = 0;
interface Answer {
  status: number;
  error?: { code: string; message: string };
}

/** One chat call through `proxy`, from `from` (X-Forwarded-For, which the proxy trusts from loopback). */
async function chat(
  proxy: SpawnedProxy,
  key: string,
  options: { maxTokens?: number; content?: string; from?: string } = {},
): Promise<Answer> {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(options.from ? { 'x-forwarded-for': options.from } : {}),
    },
    body: JSON.stringify({
      model: 'guard-model',
      max_tokens: options.maxTokens ?? 24,
      messages: [{ role: 'user', content: options.content ?? `question number ${sent++}` }],
    }),
  });
  const body = (await response.json()) as { error?: { code: string; message: string } };
  return { status: response.status, ...(body.error ? { error: body.error } : {}) };
}

async function admin(
  proxy: SpawnedProxy,
  method: 'GET' | 'POST',
  route: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${proxy.url}/admin/guard${route}`, {
    method,
    headers: { authorization: `Bearer ${adminKey}` },
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** About ten seconds of history for `key`: five requests a second, spread over the processes (buckets are 1 s). */
async function buildBaseline(proxies: SpawnedProxy[], key: string, also?: string): Promise<void> {
  for (let i = 0; i < 55; i++) {
    const calls = [chat(proxies[i % proxies.length]!, key)];
    if (also) calls.push(chat(proxies[(i + 1) % proxies.length]!, also));
    for (const answer of await Promise.all(calls)) expect(answer.status).toBe(200);
    await sleep(200);
  }
}

/** A runaway: `count` requests at once through the processes. */
async function burst(proxies: SpawnedProxy[], key: string, count: number): Promise<Answer[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => chat(proxies[i % proxies.length]!, key)));
}

const SPEND = { bucketSeconds: 1, zScore: 4, minBuckets: 3, minSpendUsd: 0.05, watch: ['key'] };
const measured: string[] = [];

beforeAll(async () => {
  hook = await startWebhookReceiver({ refuseFirst: 1 });
  running = await startProxies(
    3,
    {
      spendAnomaly: { ...SPEND, action: 'suspend', cooldown: '15m' },
      repeatedRequests: { max: 5, windowSeconds: 60 },
      authFailures: { max: 6, windowSeconds: 60, block: '5m' },
    },
    'suspend',
  );
}, 240_000);

afterAll(async () => {
  await Promise.all(running.map((proxy) => proxy.stop()));
  await hook.close();
  await Promise.all(prefixes.map((prefix) => deleteRedisPrefix(prefix)));
  rmSync(dir, { recursive: true, force: true });
  if (measured.length > 0) console.log(`guard across processes:\n${measured.join('\n')}`);
});

describe('the proxy guard across processes on one Redis', () => {
  it('suspends a runaway key in every process (its neighbour untouched); lifting it through /admin/guard restores it everywhere', async () => {
    await buildBaseline(running, keys.runaway, keys.steady);
    const answers = await burst(running, keys.runaway, 240);
    expect(answers.filter((answer) => answer.status === 200).length).toBeGreaterThan(0);
    // Every process refuses the key within moments of the first refusal.
    let firstRefusal = 0;
    await eventually(async () => {
      const refused = await chat(running[0]!, keys.runaway);
      expect(refused.status).toBe(403);
      firstRefusal ||= Date.now();
    }, 15_000);
    await eventually(async () => {
      for (const proxy of running) {
        const refused = await chat(proxy, keys.runaway);
        expect(refused.status).toBe(403);
        expect(refused.error?.code).toBe('key_suspended');
        expect(refused.error?.message).toMatch(
          /^This API key is suspended: unusual \w+ .*An operator can restore it\.$/,
        );
      }
    }, 3_000);
    measured.push(
      `  suspension in force in all ${running.length} processes ${Date.now() - firstRefusal} ms after the first refusal seen`,
    );
    for (const proxy of running) expect((await chat(proxy, keys.steady)).status).toBe(200);

    const listed = await admin(running[2]!, 'GET', '/mitigations');
    expect(
      (listed.body.mitigations as { kind: string; subject: string }[]).map(({ kind, subject }) => `${kind} ${subject}`),
    ).toEqual(['suspend key:runaway']);
    const anomalies = await admin(running[1]!, 'GET', '/anomalies');
    expect(
      (anomalies.body.anomalies as { subject: string; action: string }[]).map(
        ({ subject, action }) => `${subject} ${action}`,
      ),
    ).toEqual(['key:runaway suspend']);
    // The operator routes are the admin's only.
    expect((await fetch(`${running[0]!.url}/admin/guard/mitigations`)).status).toBe(401);
    // A process started now (a restart, a new replica) refuses the key from its very first request.
    const joined = await spawnProxy(lastEnv, 120_000);
    try {
      const first = await chat(joined, keys.runaway);
      expect(first.status).toBe(403);
      expect(first.error?.code).toBe('key_suspended');
    } finally {
      await joined.stop();
    }

    const lifted = await admin(running[1]!, 'POST', '/keys/runaway/lift');
    expect(lifted.status).toBe(200);
    const liftedAt = Date.now();
    await eventually(async () => {
      for (const proxy of running) expect((await chat(proxy, keys.runaway)).status).toBe(200);
    }, 3_000);
    measured.push(`  lift in force in all processes ${Date.now() - liftedAt} ms after the admin call answered`);
    expect((await admin(running[0]!, 'POST', '/keys/runaway/lift')).status).toBe(404);
  }, 90_000);

  it('blocks an address past its failed authentications in every process, and no other address, valid keys included', async () => {
    // Six different wrong keys (distinctKeys is min(10, max)): credential stuffing, blocked at the sixth.
    for (let i = 0; i < 6; i++) {
      const answer = await chat(running[i % 3]!, `tgk_not-a-real-key-${i}`, { from: '203.0.113.77' });
      expect(answer.status).toBe(401);
    }
    await eventually(async () => {
      for (const proxy of running) {
        const refused = await chat(proxy, keys.steady, { from: '203.0.113.77' });
        expect(refused.status).toBe(429);
        expect(refused.error?.code).toBe('auth_failures_exceeded');
      }
    }, 3_000);
    for (const proxy of running) {
      expect((await chat(proxy, keys.steady, { from: '203.0.113.78' })).status).toBe(200);
      expect((await chat(proxy, keys.steady)).status).toBe(200);
      // A wrong key from another address is a 401 like before: the block is the flooding address's alone.
      expect((await chat(proxy, 'tgk_wrong', { from: '198.51.100.9' })).status).toBe(401);
    }
    const listed = await admin(running[0]!, 'GET', '/mitigations');
    expect(
      (listed.body.mitigations as { kind: string; subject: string }[]).map(({ kind, subject }) => `${kind} ${subject}`),
    ).toEqual(['block ip:203.0.113.77']);
  }, 30_000);

  it('refuses the same request past max from one key, counted across the processes', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++)
      statuses.push((await chat(running[i % 3]!, keys.loop, { content: 'the same question, again and again' })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    const refused = await chat(running[0]!, keys.loop, { content: 'the same question, again and again' });
    expect(refused.error?.code).toBe('repeated_request');
    expect((await chat(running[1]!, keys.loop, { content: 'another question' })).status).toBe(200);
  }, 30_000);

  it('sends budget events into the same stream: a soft limit and a spent budget', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await chat(running[i % 3]!, keys.tiny)).status);
    expect(statuses).toContain(429);
    await eventually(
      async () =>
        expect(events().map((event) => event.type)).toEqual(
          expect.arrayContaining(['budget.threshold', 'budget.exhausted']),
        ),
      5_000,
    );
  }, 30_000);

  it('delivered every event once across the processes, signed, the first after a retry, and logged it once', async () => {
    // A store call past its deadline on a loaded machine is a true store_down event: counted apart. The admin writes'
    // audit events (the lifts above) are the audit trail's, checked in e2e-audit.test.ts.
    const guardEvents = () => events().filter((event) => event.type !== 'store_down' && event.type !== 'audit.event');
    await eventually(
      async () =>
        expect(
          guardEvents()
            .map((event) => event.type)
            .sort(),
        ).toEqual(['anomaly', 'auth_flood', 'budget.exhausted', 'budget.threshold', 'suspended']),
      15_000,
    );
    // Anything still in flight would show up as a duplicate now.
    await sleep(1_500);
    const ids = events().map((event) => event.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(guardEvents()).toHaveLength(5);
    for (const { headers, body } of hook.deliveries) {
      expect(headers['x-tollgate-signature']).toBe(
        `sha256=${createHmac('sha256', HOOK_SECRET).update(body).digest('hex')}`,
      );
      expect(headers['x-tollgate-event']).toBe(JSON.parse(body).type);
    }
    expect(hook.attempts()).toBe(hook.deliveries.length + 1);
    const byType = Object.fromEntries(events().map((event) => [event.type, event]));
    expect(byType.anomaly).toMatchObject({ keyId: 'runaway', tenantId: 'acme' });
    expect(byType.auth_flood).toMatchObject({ address: '203.0.113.77' });
    // The key's own budget ran out: the event names the key (a key budget is the key's, whatever its tenant).
    expect(byType['budget.exhausted']).toMatchObject({ keyId: 'tiny', details: { scope: 'key', id: 'tiny' } });
    // The operator log of the processes together holds each event once too.
    const logged = running
      .map((proxy) => proxy.output())
      .join('\n')
      .split('\n')
      .filter((line) => line.includes('"msg":"tollgate alert"'));
    expect(logged.map((line) => (JSON.parse(line) as { id: string }).id).sort()).toEqual([...ids].sort());
  }, 30_000);

  it('throttles a runaway key in every process, scaling its tier limits, until the cooldown ends', async () => {
    await Promise.all(running.map((proxy) => proxy.stop()));
    running = await startProxies(
      2,
      { spendAnomaly: { ...SPEND, action: 'throttle', throttleScale: 0.1, cooldown: '4s' } },
      'throttle',
    );
    await buildBaseline(running, keys.hot);
    await burst(running, keys.hot, 150);
    let throttledAt = 0;
    await eventually(async () => {
      const listed = await admin(running[1]!, 'GET', '/mitigations');
      expect(
        (listed.body.mitigations as { kind: string; subject: string }[]).map(
          ({ kind, subject }) => `${kind} ${subject}`,
        ),
      ).toEqual(['throttle key:hot']);
      throttledAt = Date.now();
    }, 15_000);
    // 400 a minute for the tier, 40 while throttled: in every process the refusal names the scaled limit.
    for (const proxy of running) {
      let refusal: Answer | undefined;
      for (let i = 0; i < 45 && !refusal; i++) {
        const answer = await chat(proxy, keys.hot);
        if (answer.status === 429) refusal = answer;
      }
      expect(refusal?.error?.code).toBe('rate_limit_exceeded');
      expect(refusal?.error?.message).toMatch(/limit 40 per minute/);
    }
    // Another tenant of the same tier keeps its whole limit.
    for (const proxy of running) expect((await chat(proxy, keys.calm)).status).toBe(200);
    await eventually(async () => {
      for (const proxy of running) expect((await chat(proxy, keys.hot)).status).toBe(200);
    }, 8_000);
    const restoredAfter = Date.now() - throttledAt;
    measured.push(
      `  throttle (cooldown 4 s) seen at ${new Date(throttledAt).toISOString()}, full limit back in every process after ${restoredAfter} ms`,
    );
    expect(restoredAfter).toBeGreaterThan(2_000);
    expect((await admin(running[0]!, 'GET', '/mitigations')).body.mitigations).toEqual([]);
  }, 240_000);
});
