// Stripe meter events from the proxy: one event per billed call (customer, value, the record's id), and across a
// SIGKILL nothing accepted is sent again and nothing unaccepted is lost.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { startFakeStripe } from './helpers/fake-stripe.js';
import type { FakeStripe } from './helpers/fake-stripe.js';
import { newApiKey, readUsageLog, sha256Hex, spawnProxy, waitFor } from './helpers/proxy.js';
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

describe('export.stripe', () => {
  it('bills each call once, and after a SIGKILL sends what was not accepted and nothing that was', async () => {
    const first = await start();
    for (let i = 0; i < 5; i++) await chat(first.url, acmeKey, i % 2 === 1);
    await chat(first.url, globexKey, false); // not mapped to a customer: never billed
    await waitFor(() => (stripe.events.length >= 5 ? true : undefined), '5 meter events');
    const billed = acmeRecords();
    expect(billed).toHaveLength(5);
    expect(stripe.events.map(({ identifier, customer, value }) => [identifier, customer, value]).sort()).toEqual(
      billed.map((record) => [record.id, 'cus_acme', String(Math.round(record.costNanoUsd / 1000))]).sort(),
    );

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
    // Each value is the record's cost in micro-USD; together they are the usage log's total to the micro-dollar.
    const sum = stripe.events.reduce((total, event) => total + Number(event.value), 0);
    const cost = all.reduce((total, record) => total + record.costNanoUsd, 0);
    expect(Math.abs(sum * 1000 - cost)).toBeLessThanOrEqual(500 * all.length);
  }, 120_000);
});
