// Three processes, one Redis: the guard suspends a runaway key everywhere, lifts it, blocks a flooding address everywhere, and alerts once.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createRedisStores } from '@tollgate/redis';
import { signBody } from '../packages/guard/src/webhook-sender.js';
import type { GuardEvent } from '@tollgate/guard';
import { deleteRedisPrefix, REDIS_URL, ROOT } from './helpers/proxy.js';
import { startWebhookReceiver } from './helpers/webhook-receiver.js';
import type { WebhookReceiver } from './helpers/webhook-receiver.js';

const prefix = `tg-test:${randomUUID()}:`;
const secret = 'e2e-hook-secret';
const runaway = generateApiKey();
const steady = generateApiKey();
const processes: { child: ChildProcess; url: string }[] = [];
/** The webhook receiver: refuses the first delivery (503) so the retry is seen. */
let hook: WebhookReceiver;

async function start(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=source', 'test/helpers/guard-app.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`guard app did not start:\n${output}`)), 30_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/[\d.:]+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`guard app exited with ${code}:\n${output}`)));
  });
  return { child, url };
}

beforeAll(async () => {
  hook = await startWebhookReceiver({ refuseFirst: 1 });
  const stores = createRedisStores({ url: REDIS_URL, prefix });
  const createdAt = new Date().toISOString();
  await stores.keys.put({
    id: 'runaway',
    sha256: hashApiKey(runaway),
    tenantId: 'acme',
    tier: 'pro',
    scopes: [],
    createdAt,
  });
  await stores.keys.put({
    id: 'steady',
    sha256: hashApiKey(steady),
    tenantId: 'acme',
    tier: 'pro',
    scopes: [],
    createdAt,
  });
  await stores.close();
  const config = {
    prefix,
    guard: {
      spendAnomaly: {
        bucketSeconds: 1,
        zScore: 4,
        minBuckets: 3,
        minSpendUsd: 0.005,
        action: 'suspend',
        cooldown: '15m',
        watch: ['key'],
      },
      repeatedRequests: { max: 5, windowSeconds: 60 },
      authFailures: { max: 6, windowSeconds: 60, block: '5m' },
      alerts: { webhooks: [{ url: hook.url, secretEnv: 'GUARD_E2E_HOOK_SECRET', initialDelay: 50 }] },
    },
  };
  const env = { GUARD_APP_CONFIG: JSON.stringify(config), GUARD_E2E_HOOK_SECRET: secret, REDIS_URL };
  processes.push(...(await Promise.all([start(env), start(env), start(env)])));
}, 90_000);

afterAll(async () => {
  await Promise.all(
    processes.map(async ({ child }) => {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }),
  );
  await hook.close();
  await deleteRedisPrefix(prefix);
});

let sent = 0;
async function chat(
  index: number,
  key: string,
  options: { maxTokens?: number; content?: string; from?: string } = {},
): Promise<{ status: number; body: { error?: { code: string; message: string } } }> {
  const response = await fetch(`${processes[index % processes.length]!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(options.from ? { 'x-forwarded-for': options.from } : {}),
    },
    body: JSON.stringify({
      model: 'gpt-4o',
      max_tokens: options.maxTokens ?? 10,
      messages: [{ role: 'user', content: options.content ?? `question ${sent++}` }],
    }),
  });
  return { status: response.status, body: (await response.json()) as { error?: { code: string; message: string } } };
}

const flushAll = () => Promise.all(processes.map(({ url }) => fetch(`${url}/control/flush`, { method: 'POST' })));
const allEvents = () => hook.deliveries.map(({ body }) => JSON.parse(body) as GuardEvent);
/**
 * What the guard found about callers. Alerts about the shared store itself (`store_down`, `store_up`: a store call
 * past its timeout on a loaded machine, during the burst) are the operator's news, not a finding about a key.
 */
const events = () => allEvents().filter((event) => !event.type.startsWith('store_'));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<void>, withinMs: number): Promise<void> {
  const until = Date.now() + withinMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > until) throw error;
      await sleep(25);
    }
  }
}

describe('the guard across three processes on one Redis', () => {
  it('suspends a runaway key in every process, alerting once (signed, after a failed attempt); an operator lifts it everywhere', async () => {
    // Ten seconds of history: a few requests a second over the three processes, about $0.0006 each (gpt-4o, 50 output tokens).
    for (let i = 0; i < 50; i++) {
      await Promise.all([chat(i, runaway, { maxTokens: 50 }), chat(i + 1, steady, { maxTokens: 50 })]);
      await sleep(200);
    }
    // A runaway: two hundred requests of 1,000 output tokens ($0.01 each) in a second or two.
    const burst: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) burst.push(chat(i, runaway, { maxTokens: 1000 }));
    await Promise.all(burst);
    await eventually(async () => {
      for (let index = 0; index < processes.length; index++) {
        const refused = await chat(index, runaway);
        expect(refused.status).toBe(403);
        expect(refused.body.error?.code).toBe('key_suspended');
        expect(refused.body.error?.message).toMatch(/An operator can restore it\.$/);
      }
    }, 5_000);
    for (let index = 0; index < processes.length; index++) expect((await chat(index, steady)).status).toBe(200);
    await flushAll();
    await eventually(
      async () =>
        expect(
          events()
            .map((event) => event.type)
            .sort(),
        ).toEqual(['anomaly', 'suspended']),
      5_000,
    );
    for (const { headers, body } of hook.deliveries)
      expect(headers['x-tollgate-signature']).toBe(signBody(secret, body));
    expect(events()[0]).toMatchObject({ keyId: 'runaway', tenantId: 'acme' });
    expect(hook.attempts()).toBe(allEvents().length + 1);

    const listed = (await (await fetch(`${processes[2]!.url}/admin/guard/mitigations`)).json()) as {
      mitigations: { subject: string }[];
    };
    expect(listed.mitigations.map((m) => m.subject)).toEqual(['key:runaway']);
    const anomalies = (await (await fetch(`${processes[0]!.url}/admin/guard/anomalies`)).json()) as {
      anomalies: { subject: string }[];
    };
    expect(anomalies.anomalies.map((a) => a.subject)).toEqual(['key:runaway']);
    expect((await fetch(`${processes[1]!.url}/admin/guard/keys/runaway/lift`, { method: 'POST' })).status).toBe(200);
    await eventually(async () => {
      for (let index = 0; index < processes.length; index++) expect((await chat(index, runaway)).status).toBe(200);
    }, 2_000);
  }, 60_000);

  it('blocks an address that fails authentication too often in every process, and no other address', async () => {
    hook.deliveries.length = 0;
    for (let i = 0; i < 7; i++)
      expect((await chat(i, 'tgk_not-a-real-key', { from: '203.0.113.77' })).status).toBe(401);
    await flushAll();
    await eventually(async () => {
      for (let index = 0; index < processes.length; index++) {
        const refused = await chat(index, steady, { from: '203.0.113.77' });
        expect(refused.status).toBe(429);
        expect(refused.body.error?.code).toBe('auth_failures_exceeded');
      }
    }, 2_000);
    for (let index = 0; index < processes.length; index++)
      expect((await chat(index, steady, { from: '203.0.113.78' })).status).toBe(200);
    await flushAll();
    expect(events().map((event) => [event.type, event.address])).toEqual([['auth_flood', '203.0.113.77']]);
  }, 30_000);

  it('refuses a request repeated past max by one key, counted across the processes', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++)
      statuses.push((await chat(i, steady, { content: 'the same question, again and again' })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
  }, 30_000);
});
