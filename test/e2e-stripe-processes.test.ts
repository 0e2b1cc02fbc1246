// Two proxies on one spool bill through one Stripe meter journal: each record's event is sent once, by one process,
// and the events add up to the usage log per customer and month (the remainder carried across both processes). A
// process killed while Stripe was failing leaves its events to the other, which sends each of them once.
// Before, each process kept its own running total and sent only its own events: two calls under a micro-USD each,
// one per process, made no event at all, and a killed process's events waited for a restart.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { startFakeStripe } from './helpers/fake-stripe.js';
import type { FakeStripe } from './helpers/fake-stripe.js';
import { newApiKey, readUsageLog, sha256Hex, spawnProxy } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-stripe-processes-'));
const usageLog = path.join(dir, 'usage.jsonl');
const acmeKey = newApiKey();
let stripe: FakeStripe;
let proxies: SpawnedProxy[] = [];

beforeAll(async () => {
  stripe = await startFakeStripe(['cus_acme']);
  const configPath = path.join(dir, 'tollgate.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      usageLog,
      spool: path.join(dir, 'spool'),
      upstreams: { mock: { kind: 'mock' } },
      tiers: { pro: { requestsPerMinute: 6000, tokensPerMinute: 20_000_000, models: ['*'] } },
      tenants: { acme: { tier: 'pro' } },
      keys: [{ id: 'acme-key', sha256: sha256Hex(acmeKey), tenant: 'acme', scopes: ['chat'] }],
      export: {
        stripe: {
          apiKeyEnv: 'TOLLGATE_TEST_STRIPE_KEY',
          eventName: 'ai_usage_usd',
          customers: { acme: 'cus_acme' },
          baseUrl: stripe.baseUrl,
        },
      },
    }),
  );
  const env = { TOLLGATE_CONFIG: configPath, TOLLGATE_TEST_STRIPE_KEY: 'sk_test_e2e' };
  proxies = await Promise.all([spawnProxy(env), spawnProxy(env)]);
}, 90_000);

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  await stripe.close();
  rmSync(dir, { recursive: true, force: true });
});

const acmeRecords = () => readUsageLog(usageLog).filter((record) => record.tenantId === 'acme');

/** What the events add up to (micro-USD) and floor(the usage log's nano-USD / 1000), per month. */
function sums(): { billed: Record<string, number>; logged: Record<string, number> } {
  const billed: Record<string, number> = {};
  const logged: Record<string, number> = {};
  for (const event of stripe.events) {
    const month = new Date(event.timestamp * 1000).toISOString().slice(0, 7);
    billed[month] = (billed[month] ?? 0) + Number(event.value);
  }
  for (const record of acmeRecords()) {
    const month = new Date(record.timestamp).toISOString().slice(0, 7);
    logged[month] = (logged[month] ?? 0) + record.costNanoUsd;
  }
  for (const month of Object.keys(logged)) logged[month] = Math.floor(logged[month]! / 1000);
  return { billed, logged };
}

/** Polls `read` until it gives a value, for up to a minute (Stripe's retries wait with a growing backoff). */
async function waitFor<T>(read: () => T | undefined, what: string): Promise<T> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    const value = read();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(sums())}`);
}

const addUp = () => {
  const { billed, logged } = sums();
  return JSON.stringify(billed) === JSON.stringify(logged) ? true : undefined;
};

async function embed(proxy: SpawnedProxy, words: number): Promise<void> {
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: acmeKey, maxRetries: 0 });
  await client.embeddings.create({ model: 'text-embedding-3-small', input: 'word '.repeat(words).trim() });
}

async function chat(proxy: SpawnedProxy, i: number): Promise<void> {
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: acmeKey, maxRetries: 0 });
  await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: `Bill call ${i}.` }] });
}

describe('export.stripe with two processes on one spool', () => {
  it('carries the remainder across both processes and sends each event once, a dead one’s by the other', async () => {
    // One call of under a micro-USD on each process: together they make a whole one.
    await Promise.all(proxies.map((proxy) => embed(proxy, 30)));
    await waitFor(() => (acmeRecords().length === 2 ? true : undefined), '2 records');
    const costs = acmeRecords().map((record) => record.costNanoUsd);
    for (const cost of costs) expect(cost).toBeGreaterThanOrEqual(500);
    for (const cost of costs) expect(cost).toBeLessThan(1000);
    // Before: each process carried its own 500-999 nano-USD, and no event was ever sent.
    await waitFor(addUp, 'the events to add up to the usage log');
    expect(stripe.events).toHaveLength(1);

    // Calls on both at once, then Stripe fails and the first process is killed with its events not accepted.
    await Promise.all(proxies.flatMap((proxy) => [0, 1, 2, 3].map((i) => chat(proxy, i))));
    await Promise.all(proxies.flatMap((proxy) => [10, 11, 12].map((words) => embed(proxy, words))));
    // Every record in the log first: events adding up to a log that still lacks some would add up too early.
    await waitFor(() => (acmeRecords().length === 2 + 8 + 6 ? true : undefined), `${2 + 8 + 6} records`);
    await waitFor(addUp, 'the events to add up to the usage log');
    stripe.failWith = () => 503;
    await Promise.all(proxies.flatMap((proxy) => [4, 5, 6].map((i) => chat(proxy, i))));
    const records = 2 + 8 + 6 + 6;
    await waitFor(() => (acmeRecords().length === records ? true : undefined), `${records} records`);
    const accepted = new Set(stripe.events.map((event) => event.identifier));
    const failing = acmeRecords().filter((record) => !accepted.has(record.id) && record.requestedModel === 'gpt-4o');
    expect(failing).toHaveLength(6);
    await waitFor(() => (failing.every((record) => stripe.posts.has(record.id)) ? true : undefined), 'a try of each');
    proxies[0]!.child.kill('SIGKILL');
    await new Promise((resolve) => proxies[0]!.child.once('exit', resolve));
    const triedBefore = new Map(stripe.posts);
    stripe.failWith = () => undefined;

    // Before: the living process never sent the dead one's events.
    await waitFor(addUp, 'the events to add up to the usage log');
    const ids = stripe.events.map((event) => event.identifier);
    expect(new Set(ids).size).toBe(ids.length);
    for (const record of failing) {
      expect(ids).toContain(record.id);
      // Sent once since Stripe came back: one sender.
      expect((stripe.posts.get(record.id) ?? 0) - (triedBefore.get(record.id) ?? 0)).toBe(1);
    }
    // Every call that carried a whole micro-USD of its own was billed, and nothing else: the usage log's ids.
    const logged = new Set(acmeRecords().map((record) => record.id));
    for (const id of ids) expect(logged.has(id)).toBe(true);
  }, 180_000);
});
