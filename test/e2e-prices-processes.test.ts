// Two gateway processes (started as `pnpm start` runs one) on one Redis prefix, reading one price file: a change is
// taken by both for their next reservations, with one version on /admin/prices and on records, charged to one budget.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import type { UsageRecord } from '@tollgate/core';
import {
  deleteRedisPrefix,
  newApiKey,
  readUsageLog,
  REDIS_URL,
  sha256Hex,
  spawnProxy,
  startFakeUpstream,
  waitFor,
} from './helpers/proxy.js';
import type { FakeUpstream, SpawnedProxy } from './helpers/proxy.js';
import { costOf, priceFile, readPrices, tenantSpend, tierUpstream } from './helpers/price-source.js';
import type { PriceStatus } from './helpers/price-source.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-prices-processes-'));
const prefix = `tg-test:prices-processes:${randomUUID()}:`;
const priceSource = path.join(dir, 'prices.json');
const adminKey = newApiKey();
const userKey = newApiKey();

/** One gateway process and the usage log it alone writes (two processes appending to one file could mix lines). */
interface Gateway {
  proxy: SpawnedProxy;
  usageLog: string;
}

let upstream: FakeUpstream;
let gateways: Gateway[] = [];

async function startGateway(index: number): Promise<Gateway> {
  const usageLog = path.join(dir, `usage-${index}.jsonl`);
  const configPath = path.join(dir, `config-${index}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({
      redisPrefix: prefix,
      usageLog,
      adminKeySha256: sha256Hex(adminKey),
      upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' } },
      prices: { source: priceSource, refresh: '250ms' },
      tiers: { pro: { requestsPerMinute: 10_000, tokensPerMinute: 100_000_000 } },
      tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'day' } } },
      keys: [{ id: 'acme-key', sha256: sha256Hex(userKey), tenant: 'acme', scopes: ['chat'] }],
      // Blocks (on by default) hand back what they did not hand out within a second, not ten: the test reads the
      // budget in Redis once both processes' blocks went back.
      redis: { blocks: { maxAge: '1s' } },
    }),
  );
  return { proxy: await spawnProxy({ TOLLGATE_CONFIG: configPath, REDIS_URL }), usageLog };
}

/**
 * Both gateways' prices once each reports a version other than `version` (undefined: once each has loaded the
 * source), and both agree on it.
 */
async function pricesAfter(version?: string): Promise<PriceStatus[]> {
  const statuses = await Promise.all(
    gateways.map(({ proxy }) =>
      waitFor(
        async () => {
          const status = await readPrices(proxy.url, adminKey);
          const waiting = version === undefined ? status.loadedAt === null : status.version === version;
          return waiting ? undefined : status;
        },
        `prices other than ${version ?? 'the first'} on ${proxy.url}`,
      ),
    ),
  );
  expect(statuses[1]!.version).toBe(statuses[0]!.version);
  return statuses;
}

/** One chat call through `gateway`, by the official SDK, and its usage record from that process's usage log. */
async function call({ proxy, usageLog }: Gateway): Promise<UsageRecord> {
  const requestId = randomUUID();
  const openai = new OpenAI({ apiKey: userKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  await openai.chat.completions.create(
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 100 },
    { headers: { 'x-request-id': requestId } },
  );
  return waitFor(
    () => readUsageLog(usageLog).find((record) => record.requestId === requestId),
    `the record of ${requestId} in ${usageLog}`,
  );
}

/** The tenant's spend in Redis once both processes see the same figure and nothing is reserved any more. */
function settledSpend(): Promise<number> {
  const settled = async () => {
    const [one, two] = await Promise.all(gateways.map(({ proxy }) => tenantSpend(proxy.url, adminKey, 'acme')));
    const same = one!.spentNanoUsd === two!.spentNanoUsd && one!.reservedNanoUsd === two!.reservedNanoUsd;
    return same && one!.reservedNanoUsd === 0 ? one!.spentNanoUsd : undefined;
  };
  const what = 'the budget settled alike in both processes';
  // Three waits (about 15 s): a block goes back a second after it was taken, on a machine that may be busy.
  return waitFor(settled, what)
    .catch(() => waitFor(settled, what))
    .catch(() => waitFor(settled, what));
}

beforeAll(async () => {
  writeFileSync(priceSource, priceFile(1, 2));
  upstream = await startFakeUpstream(tierUpstream().answer);
  gateways = await Promise.all([startGateway(0), startGateway(1)]);
}, 60_000);

afterAll(async () => {
  await Promise.all(gateways.map(({ proxy }) => proxy.stop()));
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
  await deleteRedisPrefix(prefix);
});

describe('two gateway processes, one Redis prefix, one price file', () => {
  it('take a change for their next reservations, report one version, and charge the shared budget at it', async () => {
    const [first] = await pricesAfter();
    const before = await Promise.all(gateways.map(call));
    for (const record of before) {
      expect(record.priceVersion).toBe(first!.version);
      expect(record.costNanoUsd).toBe(costOf(1, 2));
    }
    const spent = await settledSpend();

    writeFileSync(priceSource, priceFile(3, 6));
    const [second] = await pricesAfter(first!.version);
    expect(second!.changes).toEqual([expect.objectContaining({ model: 'gpt-4o-mini' })]);
    const after = await Promise.all(gateways.map(call));
    for (const [index, record] of after.entries()) {
      expect(record.priceVersion).toBe(second!.version);
      expect(record.costNanoUsd).toBe(costOf(3, 6));
      // Reserved at the new prices too: the same prompt's bound is three times what it was.
      expect(record.estimatedCostNanoUsd).toBe(before[index]!.estimatedCostNanoUsd * 3);
    }
    expect((await settledSpend()) - spent).toBe(2 * costOf(3, 6));
  }, 60_000);

  it('both refuse an invalid file and keep the version in use', async () => {
    const kept = await Promise.all(gateways.map(({ proxy }) => readPrices(proxy.url, adminKey)));
    expect(kept[1]!.version).toBe(kept[0]!.version);
    const spent = await settledSpend();

    writeFileSync(priceSource, priceFile(1, 2, { output_cost_per_token: -1 }));
    const refused = await Promise.all(
      gateways.map(({ proxy }, index) =>
        waitFor(async () => {
          const status = await readPrices(proxy.url, adminKey);
          return status.failures > kept[index]!.failures ? status : undefined;
        }, `a refused read on ${proxy.url}`),
      ),
    );
    for (const status of refused) {
      expect(status.version).toBe(kept[0]!.version);
      expect(status.lastError?.message).toMatch(/output_cost_per_token/);
    }
    const records = await Promise.all(gateways.map(call));
    for (const record of records) {
      expect(record.priceVersion).toBe(kept[0]!.version);
      expect(record.costNanoUsd).toBe(costOf(3, 6));
    }
    expect((await settledSpend()) - spent).toBe(2 * costOf(3, 6));
  }, 60_000);
});
