// Stripe meter events from the proxy: an event per billed call (customer, the record's id, whole micro-USD with the
// remainder carried), across a SIGKILL nothing accepted is sent again and nothing unaccepted is lost, and calls under
// a micro-USD each (short embeddings) are billed too: the events add up to the usage log per customer and month.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { startFakeStripe } from './helpers/fake-stripe.js';
import type { FakeStripe } from './helpers/fake-stripe.js';
import { MOCK_UPSTREAMS, newApiKey, readUsageLog, sha256Hex, spawnProxy, waitFor } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-stripe-e2e-'));
const usageLog = path.join(dir, 'usage.jsonl');
const configPath = path.join(dir, 'tollgate.json');
const acmeKey = newApiKey();
const globexKey = newApiKey();
let stripe: FakeStripe;
const running: SpawnedProxy[] = [];

beforeAll(async () => {
  stripe = await startFakeStripe(['cus_acme']);
  writeFileSync(
    configPath,
    JSON.stringify({
      upstreams: MOCK_UPSTREAMS,
      usageLog,
      tiers: { pro: { requestsPerMinute: 600, tokensPerMinute: 2_000_000, models: ['*'] } },
      tenants: { acme: { tier: 'pro' }, globex: { tier: 'pro' } },
      keys: [
        { id: 'acme-key', sha256: sha256Hex(acmeKey), tenant: 'acme', scopes: ['chat'] },
        { id: 'globex-key', sha256: sha256Hex(globexKey), tenant: 'globex', scopes: ['chat'] },
      ],
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
});

afterAll(async () => {
  await Promise.all(running.map((proxy) => proxy.stop()));
  await stripe.close();
  rmSync(dir, { recursive: true, force: true });
});

async function start(): Promise<SpawnedProxy> {
  const proxy = await spawnProxy({ TOLLGATE_CONFIG: configPath, TOLLGATE_TEST_STRIPE_KEY: 'sk_test_e2e' });
  running.push(proxy);
  return proxy;
}

async function chat(url: string, apiKey: string, stream: boolean): Promise<void> {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
  const messages = [{ role: 'user' as const, content: 'Bill me, please.' }];
  if (!stream) {
    await client.chat.completions.create({ model: 'gpt-4o', messages });
    return;
  }
  for await (const _chunk of await client.chat.completions.create({ model: 'gpt-4o', messages, stream: true })) {
    // read to the end
  }
}

const acmeRecords = () => readUsageLog(usageLog).filter((record) => record.tenantId === 'acme');

/** Per month: what Stripe's events for cus_acme add up to (micro-USD), and floor(the usage log's nano-USD / 1000). */
function acmeSums(): { billed: Record<string, number>; logged: Record<string, number> } {
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

async function embed(url: string, words: number): Promise<void> {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: acmeKey, maxRetries: 0 });
  await client.embeddings.create({ model: 'text-embedding-3-small', input: 'word '.repeat(words).trim() });
}

describe('export.stripe', () => {
  it('bills each call once, and after a SIGKILL sends what was not accepted and nothing that was', async () => {
    const first = await start();
    for (let i = 0; i < 5; i++) await chat(first.url, acmeKey, i % 2 === 1);
    await chat(first.url, globexKey, false); // not mapped to a customer: never billed
    await waitFor(() => (stripe.events.length >= 5 ? true : undefined), '5 meter events');
    const billed = acmeRecords();
    expect(billed).toHaveLength(5);
    // Each call costs more than a micro-USD: each has its event, of its cost in whole micro-USD with what the calls
    // before it left under a micro-USD carried on.
    expect(stripe.events.map(({ identifier, customer }) => [identifier, customer]).sort()).toEqual(
      billed.map((record) => [record.id, 'cus_acme']).sort(),
    );
    expect(acmeSums().billed).toEqual(acmeSums().logged);

    // Stripe fails from here; three more calls are recorded, then the proxy is killed.
    stripe.failWith = () => 503;
    for (let i = 0; i < 3; i++) await chat(first.url, acmeKey, i === 0);
    await waitFor(() => (acmeRecords().length === 8 ? true : undefined), '8 records in the usage log');
    await waitFor(() => (stripe.posts.size === 8 ? true : undefined), 'a try of each new event');
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    expect(stripe.events).toHaveLength(5);

    stripe.failWith = () => undefined;
    await start();
    await waitFor(() => (stripe.events.length >= 8 ? true : undefined), '8 meter events');
    const all = acmeRecords();
    expect(stripe.events.map((event) => event.identifier).sort()).toEqual(all.map((record) => record.id).sort());
    // What Stripe had accepted before the kill was never sent again.
    for (const record of billed) expect(stripe.posts.get(record.id)).toBe(1);
    // Together the events are the usage log's total to the micro-USD, per month.
    expect(acmeSums().billed).toEqual(acmeSums().logged);
  }, 120_000);

  it('bills calls of under a micro-USD each (short embeddings): every nano-USD reaches Stripe, across a SIGKILL', async () => {
    for (const proxy of running) await proxy.stop();
    const first = await start();
    const before = acmeRecords().length;
    // 4 to 12 words of text-embedding-3-small: 80 to 240 nano-USD a call, none a micro-USD on its own.
    for (let i = 0; i < 20; i++) await embed(first.url, 4 + (i % 9));
    await waitFor(() => (acmeRecords().length === before + 20 ? true : undefined), '20 embedding records');
    expect(
      acmeRecords()
        .slice(before)
        .every((record) => record.costNanoUsd > 0 && record.costNanoUsd < 500),
    ).toBe(true);
    // Killed with some of it carried, perhaps some not yet sent: the next process picks up where it stopped.
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    const second = await start();
    for (let i = 0; i < 20; i++) await embed(second.url, 12 - (i % 9));
    await waitFor(() => (acmeRecords().length === before + 40 ? true : undefined), '40 embedding records');
    await waitFor(() => {
      const { billed, logged } = acmeSums();
      return JSON.stringify(billed) === JSON.stringify(logged) ? true : undefined;
    }, 'the events to add up to the usage log');
    const embeddings = acmeRecords().slice(before);
    const billedIds = new Set(stripe.events.map((event) => event.identifier));
    expect(embeddings.some((record) => billedIds.has(record.id))).toBe(true);
    // Accepted once each: an embedding's event was never sent twice.
    for (const record of embeddings) expect(stripe.posts.get(record.id) ?? 0).toBeLessThanOrEqual(1);
  }, 120_000);
});
