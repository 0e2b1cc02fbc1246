// The Batch API across two gateways sharing one Redis: a file uploaded through one is run through the other, a job
// two processes see finished at once is settled once, and another tenant finds neither (docs/batch.md).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import {
  caught,
  newApiKey,
  readUsageLog,
  redisTestStores,
  sha256Hex,
  startFakeUpstream,
  startSharingGateways,
  waitFor,
} from './helpers/proxy.js';
import type { FakeUpstream, OwnedStores, RunningProxy } from './helpers/proxy.js';
import * as batchApi from './helpers/batch-upstream.js';

type ApiError = InstanceType<typeof OpenAI.APIError>;

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-batch-redis-'));
const adminKey = newApiKey();
const keys = { acme: newApiKey(), other: newApiKey() };
let upstream: FakeUpstream;
let owned: OwnedStores;
let gateways: RunningProxy[];
let closeGateways: () => Promise<void>;

const client = (gateway: RunningProxy, key: string) =>
  new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: 0 });

const charged = (gateway: RunningProxy) => batchApi.keyCharged(gateway.url, adminKey, 'acme');

beforeAll(async () => {
  upstream = await startFakeUpstream(batchApi.answerAsOpenAi);
  owned = redisTestStores('batch');
  const started = await startSharingGateways('Redis', owned, (index) => ({
    usageLog: path.join(dir, `usage-${index}.jsonl`),
    adminKeySha256: sha256Hex(adminKey),
    upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' } },
    tiers: { pro: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, models: ['*'] } },
    tenants: { acme: { tier: 'pro' }, globex: { tier: 'pro' } },
    keys: [
      { id: 'acme', sha256: sha256Hex(keys.acme), tenant: 'acme', scopes: [], budget: { usd: 10, period: 'day' } },
      { id: 'other', sha256: sha256Hex(keys.other), tenant: 'globex', scopes: [] },
    ],
  }));
  gateways = started.gateways;
  closeGateways = () => started.close();
});

afterAll(async () => {
  await closeGateways();
  await owned.release();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a batch job on two gateways sharing Redis', () => {
  it('is run through one from a file uploaded through the other, and settled once when both see it batchApi.finish', async () => {
    const [first, second] = gateways as [RunningProxy, RunningProxy];
    const lines = [batchApi.chatLine(1, 'gpt-4o-mini', 900), batchApi.chatLine(2, 'gpt-4o-mini', 400)];
    const file = await batchApi.uploadBatchFile(client(first, keys.acme), lines);
    const batch = await batchApi.createChatBatch(client(second, keys.acme), file.id);
    const worstCase = batchApi.worstCaseOf(lines);
    await waitFor(async () => ((await charged(first)) === worstCase ? true : undefined), 'the worst case charged');

    // Another tenant knows neither the file nor the job, on either gateway.
    const run = (await caught(batchApi.createChatBatch(client(first, keys.other), file.id))) as ApiError;
    expect(run.status).toBe(404);
    expect(((await caught(client(second, keys.other).batches.retrieve(batch.id))) as ApiError).status).toBe(404);

    batchApi.finish(batch.id, 'completed', [
      { prompt: 24, completion: 610 },
      { prompt: 25, completion: 120 },
    ]);
    const seen = await Promise.all([
      client(first, keys.acme).batches.retrieve(batch.id),
      client(second, keys.acme).batches.retrieve(batch.id),
    ]);
    expect(seen.map((one) => one.status)).toEqual(['completed', 'completed']);
    const billed =
      Math.ceil((24 * batchApi.INPUT_PICO + 610 * batchApi.OUTPUT_PICO) / 1000) +
      Math.ceil((25 * batchApi.INPUT_PICO + 120 * batchApi.OUTPUT_PICO) / 1000);
    await waitFor(async () => ((await charged(first)) === billed ? true : undefined), 'the settle at the bill');
    for (const gateway of gateways) await gateway.app.flushUsage();
    const records = [0, 1].flatMap((index) => readUsageLog(path.join(dir, `usage-${index}.jsonl`)));
    const ofBatch = records.filter((record) => record.requestId === batch.id);
    expect(ofBatch.map((record) => record.costNanoUsd).reduce((sum, cost) => sum + cost, 0)).toBe(billed);
    expect(ofBatch).toHaveLength(2);
  });
});
