// The Batch API through the gateway with the official OpenAI SDK, against an upstream answering files and batches as
// OpenAI's does: a job is charged its input file's worst case at batch prices when it is created, refused when a
// budget cannot take it, and settled from its output file's usage to the nano-USD when it ends (docs/batch.md).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { caught, newApiKey, readUsageLog, sha256Hex, startFakeUpstream, startProxy, waitFor } from './helpers/proxy.js';
import type { FakeUpstream, RunningProxy } from './helpers/proxy.js';
import {
  answerAsOpenAi,
  chatLine,
  createChatBatch,
  files,
  finish,
  INPUT_PICO,
  jsonl,
  keyCharged,
  OUTPUT_PICO,
  uploadBatchFile,
  worstCaseOf,
} from './helpers/batch-upstream.js';

type ApiError = InstanceType<typeof OpenAI.APIError>;

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-batch-'));
const usageLog = path.join(dir, 'usage.jsonl');
const adminKey = newApiKey();
const keys = {
  create: newApiKey(),
  cancel: newApiKey(),
  race: newApiKey(),
  broke: newApiKey(),
  free: newApiKey(),
  other: newApiKey(),
};
let upstream: FakeUpstream;
let proxy: RunningProxy;

const client = (key: string) => new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });

const upload = (key: string, lines: unknown[]) => uploadBatchFile(client(key), lines);
const createBatch = (key: string, fileId: string) => createChatBatch(client(key), fileId);
const charged = (id: string) => keyCharged(proxy.url, adminKey, id);

async function batchRecords(batchId: string) {
  await proxy.app.flushUsage();
  return readUsageLog(usageLog).filter((record) => record.requestId === batchId);
}

beforeAll(async () => {
  upstream = await startFakeUpstream(answerAsOpenAi);
  const budget = { usd: 10, period: 'day' as const };
  proxy = await startProxy({
    usageLog,
    adminKeySha256: sha256Hex(adminKey),
    upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' } },
    tiers: {
      pro: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, models: ['*'] },
      free: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, models: ['gpt-4o-mini'] },
    },
    tenants: { acme: { tier: 'pro' }, globex: { tier: 'pro' } },
    keys: [
      { id: 'create', sha256: sha256Hex(keys.create), tenant: 'acme', scopes: [], budget },
      { id: 'cancel', sha256: sha256Hex(keys.cancel), tenant: 'acme', scopes: [], budget },
      { id: 'race', sha256: sha256Hex(keys.race), tenant: 'acme', scopes: [], budget },
      // Less than the worst case of two lines capped at 1000 tokens (about $0.0006).
      {
        id: 'broke',
        sha256: sha256Hex(keys.broke),
        tenant: 'acme',
        scopes: [],
        budget: { usd: 0.0003, period: 'day' },
      },
      { id: 'free', sha256: sha256Hex(keys.free), tier: 'free', scopes: [] },
      { id: 'other', sha256: sha256Hex(keys.other), tenant: 'globex', scopes: [] },
    ],
  });
});

beforeEach(() => {
  upstream.requests.length = 0;
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a batch job', () => {
  it('is charged its worst case at create and settled from its output at batch prices', async () => {
    const lines = [chatLine(1, 'gpt-4o-mini', 1000), chatLine(2, 'gpt-4o-mini', 500)];
    const file = await upload(keys.create, lines);
    // The file reached the upstream byte for byte.
    expect(files.get(file.id)!.content).toBe(jsonl(lines));
    expect((await client(keys.create).files.retrieve(file.id)).id).toBe(file.id);
    expect(await (await client(keys.create).files.content(file.id)).text()).toBe(jsonl(lines));

    const { data: batch, response } = await client(keys.create)
      .batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' })
      .withResponse();
    expect(batch.status).toBe('validating');
    const worstCase = worstCaseOf(lines);
    expect(await charged('create')).toBe(worstCase);
    // Told to the nano-USD: the ledger's number, as a decimal of USD.
    expect(Math.round(Number(response.headers.get('x-tollgate-reserved-usd')) * 1e9)).toBe(worstCase);

    finish(batch.id, 'completed', [
      { prompt: 21, completion: 180 },
      { prompt: 22, completion: 95 },
    ]);
    const done = await client(keys.create).batches.retrieve(batch.id);
    expect(done.status).toBe('completed');
    const billed =
      Math.ceil((21 * INPUT_PICO + 180 * OUTPUT_PICO) / 1000) + Math.ceil((22 * INPUT_PICO + 95 * OUTPUT_PICO) / 1000);
    expect(await charged('create')).toBe(billed);
    const records = await batchRecords(batch.id);
    expect(records.map((record) => record.costNanoUsd)).toEqual([
      Math.ceil((21 * INPUT_PICO + 180 * OUTPUT_PICO) / 1000),
      Math.ceil((22 * INPUT_PICO + 95 * OUTPUT_PICO) / 1000),
    ]);
    expect(records[0]).toMatchObject({ keyId: 'create', tenantId: 'acme', route: '/v1/batches', inputTokens: 21 });

    // Polled again: nothing more is written or charged.
    await client(keys.create).batches.retrieve(batch.id);
    expect(await batchRecords(batch.id)).toHaveLength(2);
    expect(await charged('create')).toBe(billed);
  });

  it('settles once when two retrieves see it completed at the same time', async () => {
    const lines = [chatLine(1, 'gpt-4o-mini', 800)];
    const file = await upload(keys.race, lines);
    const batch = await createBatch(keys.race, file.id);
    finish(batch.id, 'completed', [{ prompt: 19, completion: 300 }]);
    const both = await Promise.all([
      client(keys.race).batches.retrieve(batch.id),
      client(keys.race).batches.retrieve(batch.id),
    ]);
    expect(both.map((seen) => seen.status)).toEqual(['completed', 'completed']);
    const billed = Math.ceil((19 * INPUT_PICO + 300 * OUTPUT_PICO) / 1000);
    await waitFor(async () => ((await charged('race')) === billed ? true : undefined), 'the settle');
    expect(await batchRecords(batch.id)).toHaveLength(1);
  });

  it('gives back its charge when cancelled, but what its output says ran', async () => {
    const lines = [chatLine(1, 'gpt-4o-mini', 700), chatLine(2, 'gpt-4o-mini', 700)];
    const file = await upload(keys.cancel, lines);
    const batch = await createBatch(keys.cancel, file.id);
    expect(await charged('cancel')).toBe(worstCaseOf(lines));
    const cancelled = await client(keys.cancel).batches.cancel(batch.id);
    expect(cancelled.status).toBe('cancelled');
    expect(await charged('cancel')).toBe(0);

    // A second job cancelled after one of its lines ran: that line is billed, the rest given back.
    const second = await createBatch(keys.cancel, file.id);
    finish(second.id, 'cancelled', [{ prompt: 20, completion: 40 }]);
    await client(keys.cancel).batches.retrieve(second.id);
    expect(await charged('cancel')).toBe(Math.ceil((20 * INPUT_PICO + 40 * OUTPUT_PICO) / 1000));
  });

  it('is given back its charge when the upstream refuses it, and the refusal reaches the client without the key', async () => {
    const file = await upload(keys.cancel, [chatLine(1, 'gpt-4o-mini', 100)]);
    const before = await charged('cancel');
    const error = (await caught(
      client(keys.cancel).batches.create({
        input_file_id: file.id,
        endpoint: '/v1/embeddings',
        completion_window: '24h',
      }),
    )) as ApiError;
    expect(error.status).toBe(400);
    expect(error.message).toContain('[redacted]');
    expect(error.message).not.toContain('sk-upstream');
    expect(await charged('cancel')).toBe(before);
  });

  it('is refused with 429 insufficient_quota when a budget cannot take its worst case, before the upstream', async () => {
    const file = await upload(keys.broke, [chatLine(1, 'gpt-4o-mini', 1000), chatLine(2, 'gpt-4o-mini', 1000)]);
    upstream.requests.length = 0;
    const error = (await caught(createBatch(keys.broke, file.id))) as ApiError;
    expect(error.status).toBe(429);
    expect(error.code).toBe('insufficient_quota');
    expect(upstream.requests).toEqual([]);
    expect(await charged('broke')).toBe(0);
  });
});

describe('a batch job nobody polls', () => {
  it('is settled by the background sweep once the upstream says it finished', async () => {
    const sweeping = await startProxy(
      {
        usageLog,
        adminKeySha256: sha256Hex(adminKey),
        upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' } },
        tenants: { acme: { tier: 'pro' } },
        tiers: { pro: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, models: ['*'] } },
        keys: [
          {
            id: 'create',
            sha256: sha256Hex(keys.create),
            tenant: 'acme',
            scopes: [],
            budget: { usd: 10, period: 'day' },
          },
        ],
      },
      { batchSweepMs: 50 },
    );
    try {
      const sweeper = new OpenAI({ apiKey: keys.create, baseURL: `${sweeping.url}/v1`, maxRetries: 0 });
      const lines = [chatLine(1, 'gpt-4o-mini', 600)];
      const batch = await createChatBatch(sweeper, (await uploadBatchFile(sweeper, lines)).id);
      const chargedHere = () => keyCharged(sweeping.url, adminKey, 'create');
      expect(await chargedHere()).toBe(worstCaseOf(lines));
      finish(batch.id, 'completed', [{ prompt: 18, completion: 77 }]);
      const billed = Math.ceil((18 * INPUT_PICO + 77 * OUTPUT_PICO) / 1000);
      await waitFor(async () => ((await chargedHere()) === billed ? true : undefined), 'the sweep to settle it');
      await sweeping.app.flushUsage();
      expect(readUsageLog(usageLog).filter((record) => record.requestId === batch.id)).toHaveLength(1);
    } finally {
      await sweeping.close();
    }
  });
});

describe('a batch input file', () => {
  it('is refused with 403 when a line names a model the tier does not allow, before the upstream', async () => {
    const error = (await caught(
      upload(keys.free, [chatLine(1, 'gpt-4o-mini', 100), chatLine(2, 'gpt-4o', 100)]),
    )) as ApiError;
    expect(error.status).toBe(403);
    expect(error.code).toBe('model_not_allowed');
    expect(upstream.requests).toEqual([]);
  });

  it('is refused with 400 naming a line that is not a batch request', async () => {
    const line = { custom_id: 'x', method: 'GET', url: '/v1/chat/completions', body: { model: 'gpt-4o-mini' } };
    const error = (await caught(upload(keys.create, [chatLine(1, 'gpt-4o-mini', 10), line]))) as ApiError;
    expect(error.status).toBe(400);
    expect(error.message).toContain('Line 2');
    expect(upstream.requests).toEqual([]);
  });

  it("is another tenant's to neither read nor run", async () => {
    const file = await upload(keys.create, [chatLine(1, 'gpt-4o-mini', 10)]);
    upstream.requests.length = 0;
    const run = (await caught(createBatch(keys.other, file.id))) as ApiError;
    expect(run.status).toBe(404);
    const read = (await caught(client(keys.other).files.retrieve(file.id))) as ApiError;
    expect(read.status).toBe(404);
    expect(upstream.requests).toEqual([]);
  });
});
