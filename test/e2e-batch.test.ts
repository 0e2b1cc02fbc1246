// The Batch API through the gateway with the official OpenAI SDK, against an upstream answering files and batches as
// OpenAI's does: a job is charged its input file's worst case at batch prices when it is created, refused when a
// budget cannot take it, and settled from its output file's usage to the nano-USD when it ends (docs/batch.md).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import OpenAI, { toFile } from 'openai';
import { caught, newApiKey, readUsageLog, sha256Hex, startFakeUpstream, startProxy, waitFor } from './helpers/proxy.js';
import type { FakeUpstream, FakeUpstreamRequest, RunningProxy } from './helpers/proxy.js';

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

/** gpt-4o-mini at batch prices (half of $0.15 and $0.60 per 1M), micro-USD per 1M tokens = pico-USD per token. */
const INPUT_PICO = 75_000;
const OUTPUT_PICO = 300_000;

interface UpstreamBatch {
  id: string;
  object: 'batch';
  endpoint: string;
  input_file_id: string;
  completion_window: string;
  status: string;
  output_file_id: string | null;
  created_at: number;
}

/** The fake upstream's files (input and output) and batches. */
const files = new Map<string, { purpose: string; content: string }>();
const batches = new Map<string, UpstreamBatch>();
let lastId = 0;

function sendJson(res: ServerResponse, body: unknown, status = 200): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function fileObject(id: string) {
  const file = files.get(id)!;
  const bytes = Buffer.byteLength(file.content);
  return { id, object: 'file', bytes, created_at: 1, filename: 'input.jsonl', purpose: file.purpose };
}

/** The `file` part of a multipart upload as the upstream received it. */
function uploadedFile(request: FakeUpstreamRequest): string {
  const text = request.raw.toString('utf8');
  const match = /name="file"; filename="[^"]*"\r\nContent-Type: [^\r]*\r\n\r\n([\s\S]*?)\r\n--/.exec(text);
  return match![1]!;
}

/** Answers as OpenAI's files and batches API does. */
function answerAsOpenAi(request: FakeUpstreamRequest, res: ServerResponse): void {
  const { method, url } = request;
  if (method === 'POST' && url === '/v1/files') {
    const id = `file-${++lastId}`;
    files.set(id, { purpose: 'batch', content: uploadedFile(request) });
    sendJson(res, fileObject(id));
    return;
  }
  const file = /^\/v1\/files\/([^/]+)(\/content)?$/.exec(url);
  if (method === 'GET' && file && files.has(file[1]!)) {
    if (file[2]) res.writeHead(200, { 'content-type': 'application/jsonl' }).end(files.get(file[1]!)!.content);
    else sendJson(res, fileObject(file[1]!));
    return;
  }
  if (method === 'POST' && url === '/v1/batches') {
    const body = request.body as Record<string, string>;
    const batch: UpstreamBatch = {
      id: `batch_${++lastId}`,
      object: 'batch',
      endpoint: body.endpoint!,
      input_file_id: body.input_file_id!,
      completion_window: body.completion_window!,
      status: 'validating',
      output_file_id: null,
      created_at: 1,
    };
    batches.set(batch.id, batch);
    sendJson(res, batch);
    return;
  }
  const batch = /^\/v1\/batches\/([^/]+)(\/cancel)?$/.exec(url);
  if (batch && batches.has(batch[1]!)) {
    const found = batches.get(batch[1]!)!;
    if (method === 'POST' && batch[2]) found.status = 'cancelled';
    sendJson(res, found);
    return;
  }
  sendJson(res, { error: { message: `no ${method} ${url}`, type: 'invalid_request_error' } }, 404);
}

/** Ends a batch as the upstream does: an output file with each answered line's usage, the given status. */
function finish(batchId: string, status: string, usages: { prompt: number; completion: number }[]): void {
  const batch = batches.get(batchId)!;
  const lines = usages.map((usage, index) =>
    JSON.stringify({
      id: `batch_req_${index}`,
      custom_id: `request-${index + 1}`,
      response: {
        status_code: 200,
        request_id: `req_${index}`,
        body: {
          id: `chatcmpl-${index}`,
          object: 'chat.completion',
          model: 'gpt-4o-mini-2024-07-18',
          choices: [{ index: 0, message: { role: 'assistant', content: 'Done.' }, finish_reason: 'stop' }],
          usage: {
            prompt_tokens: usage.prompt,
            completion_tokens: usage.completion,
            total_tokens: usage.prompt + usage.completion,
          },
        },
      },
      error: null,
    }),
  );
  const outputId = `file-${++lastId}`;
  files.set(outputId, { purpose: 'batch_output', content: `${lines.join('\n')}\n` });
  batch.status = status;
  batch.output_file_id = outputId;
}

/** A batch input line: a chat completion capped at `maxTokens`. */
function chatLine(index: number, model: string, maxTokens: number) {
  const body = { model, messages: [{ role: 'user', content: `Say hello number ${index}.` }], max_tokens: maxTokens };
  return { custom_id: `request-${index}`, method: 'POST', url: '/v1/chat/completions', body };
}

/** The most a line may cost: each byte of its body an input token, its whole cap output, at batch prices. */
function worstCaseOf(lines: ReturnType<typeof chatLine>[]): number {
  return lines.reduce((sum, line) => {
    const bytes = Buffer.byteLength(JSON.stringify(line.body));
    return sum + Math.ceil((bytes * INPUT_PICO + line.body.max_tokens * OUTPUT_PICO) / 1000);
  }, 0);
}

const jsonl = (lines: unknown[]) => `${lines.map((line) => JSON.stringify(line)).join('\n')}\n`;

const client = (key: string) => new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });

async function upload(key: string, lines: unknown[]) {
  return client(key).files.create({ file: await toFile(Buffer.from(jsonl(lines)), 'input.jsonl'), purpose: 'batch' });
}

async function createBatch(key: string, fileId: string) {
  return client(key).batches.create({
    input_file_id: fileId,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
}

/** What a key's budget holds now: spent and reserved. */
async function keyCharged(id: string): Promise<number> {
  const response = await fetch(`${proxy.url}/admin/budgets/key/${id}`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  const { budgets } = (await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] };
  return budgets[0]!.spentNanoUsd + budgets[0]!.reservedNanoUsd;
}

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

    const batch = await createBatch(keys.create, file.id);
    expect(batch.status).toBe('validating');
    const worstCase = worstCaseOf(lines);
    expect(await keyCharged('create')).toBe(worstCase);

    finish(batch.id, 'completed', [
      { prompt: 21, completion: 180 },
      { prompt: 22, completion: 95 },
    ]);
    const done = await client(keys.create).batches.retrieve(batch.id);
    expect(done.status).toBe('completed');
    const billed =
      Math.ceil((21 * INPUT_PICO + 180 * OUTPUT_PICO) / 1000) + Math.ceil((22 * INPUT_PICO + 95 * OUTPUT_PICO) / 1000);
    expect(await keyCharged('create')).toBe(billed);
    const records = await batchRecords(batch.id);
    expect(records.map((record) => record.costNanoUsd)).toEqual([
      Math.ceil((21 * INPUT_PICO + 180 * OUTPUT_PICO) / 1000),
      Math.ceil((22 * INPUT_PICO + 95 * OUTPUT_PICO) / 1000),
    ]);
    expect(records[0]).toMatchObject({ keyId: 'create', tenantId: 'acme', route: '/v1/batches', inputTokens: 21 });

    // Polled again: nothing more is written or charged.
    await client(keys.create).batches.retrieve(batch.id);
    expect(await batchRecords(batch.id)).toHaveLength(2);
    expect(await keyCharged('create')).toBe(billed);
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
    await waitFor(async () => ((await keyCharged('race')) === billed ? true : undefined), 'the settle');
    expect(await batchRecords(batch.id)).toHaveLength(1);
  });

  it('gives back its charge when cancelled, but what its output says ran', async () => {
    const lines = [chatLine(1, 'gpt-4o-mini', 700), chatLine(2, 'gpt-4o-mini', 700)];
    const file = await upload(keys.cancel, lines);
    const batch = await createBatch(keys.cancel, file.id);
    expect(await keyCharged('cancel')).toBe(worstCaseOf(lines));
    const cancelled = await client(keys.cancel).batches.cancel(batch.id);
    expect(cancelled.status).toBe('cancelled');
    expect(await keyCharged('cancel')).toBe(0);

    // A second job cancelled after one of its lines ran: that line is billed, the rest given back.
    const second = await createBatch(keys.cancel, file.id);
    finish(second.id, 'cancelled', [{ prompt: 20, completion: 40 }]);
    await client(keys.cancel).batches.retrieve(second.id);
    expect(await keyCharged('cancel')).toBe(Math.ceil((20 * INPUT_PICO + 40 * OUTPUT_PICO) / 1000));
  });

  it('is refused with 429 insufficient_quota when a budget cannot take its worst case, before the upstream', async () => {
    const file = await upload(keys.broke, [chatLine(1, 'gpt-4o-mini', 1000), chatLine(2, 'gpt-4o-mini', 1000)]);
    upstream.requests.length = 0;
    const error = (await caught(createBatch(keys.broke, file.id))) as ApiError;
    expect(error.status).toBe(429);
    expect(error.code).toBe('insufficient_quota');
    expect(upstream.requests).toEqual([]);
    expect(await keyCharged('broke')).toBe(0);
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
