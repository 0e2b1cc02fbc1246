// Audio and images through the gateway with the official OpenAI SDK, against an upstream answering as OpenAI's API
// does: transcriptions (a multipart upload forwarded byte for byte), speech (audio bytes, or SSE) and image generation,
// each billed in its model's unit on the ledger to the nano-USD, refused up front by a budget near its end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import OpenAI, { toFile } from 'openai';
import type { UsageRecord } from '@tollgate/core';
import { caught, newApiKey, readUsageLog, sha256Hex, startFakeUpstream, startProxy, waitFor } from './helpers/proxy.js';
import type { FakeUpstream, FakeUpstreamRequest, RunningProxy } from './helpers/proxy.js';

type ApiError = InstanceType<typeof OpenAI.APIError>;

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-media-'));
const usageLog = path.join(dir, 'usage.jsonl');
const adminKey = newApiKey();
const keys = { rich: newApiKey(), broke: newApiKey(), tight: newApiKey() };
let upstream: FakeUpstream;
let proxy: RunningProxy;

/** The audio bytes the upstream speaks: what the client must get back, unchanged. */
const SPOKEN = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256));

/** A PCM WAV file of `seconds` of silence: 16 kHz, 16-bit mono (32,000 bytes a second). */
function wav(seconds: number): Buffer {
  const data = 32_000 * seconds;
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(36 + data, 4);
  header.write('WAVEfmt ', 8, 'latin1');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(16_000, 24);
  header.writeUInt32LE(32_000, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'latin1');
  header.writeUInt32LE(data, 40);
  return Buffer.concat([header, Buffer.alloc(data)]);
}

/** A form field's value in an upload as it reached the upstream. */
function formField(request: FakeUpstreamRequest, name: string): string | undefined {
  const text = request.raw.toString('latin1');
  const match = new RegExp(`name="${name}"\\r\\n\\r\\n([^\\r]*)\\r\\n`).exec(text);
  return match?.[1];
}

function sendJson(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** Answers as OpenAI's API does: each surface its own shape and usage. */
function answerAsOpenAi(request: FakeUpstreamRequest, res: ServerResponse): void {
  const body = (request.body ?? {}) as Record<string, unknown>;
  if (request.url === '/v1/audio/speech') {
    if (body.stream_format === 'sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ type: 'speech.audio.delta', audio: SPOKEN.toString('base64') })}\n\n`);
      const usage = { input_tokens: 7, output_tokens: 180, total_tokens: 187 };
      res.end(`data: ${JSON.stringify({ type: 'speech.audio.done', usage })}\n\n`);
    } else res.writeHead(200, { 'content-type': 'audio/mpeg' }).end(SPOKEN);
    return;
  }
  if (request.url === '/v1/images/generations') {
    const data = [{ b64_json: 'iVBORw0KGgo=' }];
    if (body.stream === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const partial = { type: 'image_generation.partial_image', b64_json: 'iVBO', partial_image_index: 0 };
      res.write(`event: image_generation.partial_image\ndata: ${JSON.stringify(partial)}\n\n`);
      const usage = { input_tokens: 9, input_tokens_details: { text_tokens: 9, image_tokens: 0 }, output_tokens: 372 };
      const done = {
        type: 'image_generation.completed',
        b64_json: 'iVBORw0KGgo=',
        quality: 'low',
        size: '1024x1024',
        usage,
      };
      res.end(`event: image_generation.completed\ndata: ${JSON.stringify(done)}\n\n`);
      return;
    }
    if (body.model === 'gpt-image-1') {
      const usage = {
        input_tokens: 12,
        input_tokens_details: { text_tokens: 12, image_tokens: 0 },
        output_tokens: 1056,
        total_tokens: 1068,
      };
      sendJson(res, { created: 1, data, quality: 'medium', size: '1024x1024', usage });
    } else sendJson(res, { created: 1, data: Array.from({ length: Number(body.n ?? 1) }, () => data[0]) });
    return;
  }
  if (request.url === '/v1/audio/transcriptions') {
    const model = formField(request, 'model');
    if (formField(request, 'stream') === 'true') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ type: 'transcript.text.delta', delta: 'Hello.' })}\n\n`);
      const usage = { type: 'tokens', input_tokens: 30, input_token_details: { audio_tokens: 30 }, output_tokens: 3 };
      res.end(`data: ${JSON.stringify({ type: 'transcript.text.done', text: 'Hello.', usage })}\n\n`);
      return;
    }
    const usage =
      model === 'whisper-1'
        ? { type: 'duration', seconds: 3 }
        : {
            type: 'tokens',
            input_tokens: 65,
            input_token_details: { text_tokens: 0, audio_tokens: 65 },
            output_tokens: 14,
            total_tokens: 79,
          };
    sendJson(res, { text: 'Hello from the fake upstream.', usage });
    return;
  }
  res.writeHead(404).end();
}

const client = (key: string) => new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });

async function lastRecord(): Promise<UsageRecord> {
  await proxy.app.flushUsage();
  return readUsageLog(usageLog).at(-1)!;
}

async function recordCount(): Promise<number> {
  await proxy.app.flushUsage();
  return readUsageLog(usageLog).length;
}

async function keySpent(id: string): Promise<number> {
  const response = await fetch(`${proxy.url}/admin/budgets/key/${id}`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  const { budgets } = (await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] };
  return budgets[0]!.spentNanoUsd + budgets[0]!.reservedNanoUsd;
}

beforeAll(async () => {
  upstream = await startFakeUpstream(answerAsOpenAi);
  proxy = await startProxy({
    usageLog,
    adminKeySha256: sha256Hex(adminKey),
    upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' } },
    tiers: {
      pro: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, models: ['*'] },
      tight: { requestsPerMinute: 1000, tokensPerMinute: 5000, models: ['*'] },
    },
    tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'day' } } },
    uploadLimit: '2mb',
    guardrails: { pii: 'mask' },
    keys: [
      { id: 'rich', sha256: sha256Hex(keys.rich), tenant: 'acme', scopes: [], budget: { usd: 50, period: 'day' } },
      { id: 'tight', sha256: sha256Hex(keys.tight), tier: 'tight', scopes: [] },
      // Less than one dall-e-3 image ($0.04) and more than a second of whisper ($0.0001).
      { id: 'broke', sha256: sha256Hex(keys.broke), tenant: 'acme', scopes: [], budget: { usd: 0.01, period: 'day' } },
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

describe('speech', () => {
  it('passes tts-1 audio through unchanged and bills its characters at $15 per 1M', async () => {
    const answer = await client(keys.rich).audio.speech.create({
      model: 'tts-1',
      voice: 'alloy',
      input: 'Hello, wörld',
    });
    expect(Buffer.from(await answer.arrayBuffer())).toEqual(SPOKEN);
    // Audio is passed on unread: its bill, its characters, is known before its first byte and told in its headers.
    expect(answer.headers.get('x-tollgate-cost-usd')).toBe('0.00018');
    expect(answer.headers.get('x-tollgate-budget-remaining-usd')).toBe('49.99982');
    const record = await lastRecord();
    expect(record).toMatchObject({ route: '/v1/audio/speech', model: 'tts-1', status: 200, costNanoUsd: 12 * 15_000 });
    expect(record.media).toMatchObject({ characters: 12 });
    // The key's budget is charged the same nano-USD: its first call, settled at its bill.
    await waitFor(async () => ((await keySpent('rich')) === 180_000 ? true : undefined), 'the settle at the bill');
  });

  it("bills gpt-4o-mini-tts's stream from its usage: text in at $0.60, audio out at $12 per 1M", async () => {
    const answer = await client(keys.rich).audio.speech.create({
      model: 'gpt-4o-mini-tts',
      voice: 'alloy',
      input: 'Read this aloud.',
      stream_format: 'sse',
    });
    const text = await answer.text();
    expect(text).toContain('speech.audio.done');
    // The cost is written into the stream's usage, as it is in a chat stream's.
    expect(text).toContain('"cost_usd":0.0021642');
    const record = await lastRecord();
    expect(record).toMatchObject({ model: 'gpt-4o-mini-tts', inputTokens: 7, usageSource: 'provider' });
    expect(record.media).toMatchObject({ audioOutputTokens: 180 });
    expect(record.costNanoUsd).toBe(7 * 600 + 180 * 12_000);
  });
});

describe('image generation', () => {
  it('bills dall-e-3 per image at its quality and size ($0.12 an hd landscape)', async () => {
    const answer = await client(keys.rich).images.generate({
      model: 'dall-e-3',
      prompt: 'A lighthouse at dawn',
      quality: 'hd',
      size: '1792x1024',
      response_format: 'b64_json',
    });
    expect(answer.data).toHaveLength(1);
    const record = await lastRecord();
    expect(record).toMatchObject({ route: '/v1/images/generations', model: 'dall-e-3', costNanoUsd: 120_000_000 });
    expect(record.media).toMatchObject({ images: 1, imageQuality: 'hd', imageSize: '1792x1024' });
  });

  it('bills gpt-image-1 from its usage: text in at $5, image tokens out at $40 per 1M', async () => {
    const answer = await client(keys.rich).images.generate({ model: 'gpt-image-1', prompt: 'A red fox' });
    expect(answer.usage?.output_tokens).toBe(1056);
    const record = await lastRecord();
    expect(record.costNanoUsd).toBe(12 * 5000 + 1056 * 40_000);
    expect(record.media).toMatchObject({ imageOutputTokens: 1056 });
  });
});

describe('image generation, streamed', () => {
  it('bills a gpt-image-1 stream from its completed event, partial images included', async () => {
    const lowSquare = { quality: 'low', size: '1024x1024' } as const;
    const asked = { model: 'gpt-image-1', prompt: 'A fox', ...lowSquare, stream: true, partial_images: 1 } as const;
    const stream = await client(keys.rich).images.generate(asked);
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types).toEqual(['image_generation.partial_image', 'image_generation.completed']);
    const record = await lastRecord();
    expect(record).toMatchObject({ model: 'gpt-image-1', stream: true, inputTokens: 9 });
    expect(record.media).toMatchObject({ images: 1, imageOutputTokens: 372 });
    expect(record.costNanoUsd).toBe(9 * 5000 + 372 * 40_000);
    // Reserved at the table's low square and its partial image: 272 + 100 tokens.
    expect(record.estimatedCostNanoUsd).toBeGreaterThanOrEqual(372 * 40_000);
  });
});

describe('transcriptions', () => {
  it('forwards the upload to the upstream and bills whisper-1 by the second at $0.006 a minute', async () => {
    const file = await toFile(wav(3), 'hello.wav', { type: 'audio/wav' });
    const answer = await client(keys.rich).audio.transcriptions.create({ model: 'whisper-1', file });
    expect(answer.text).toBe('Hello from the fake upstream.');
    const [sent] = upstream.requests;
    expect(sent!.headers.authorization).toBe('Bearer sk-upstream');
    expect(sent!.headers['content-type']).toMatch(/^multipart\/form-data; boundary=/);
    expect(sent!.raw.includes(wav(3))).toBe(true);
    expect(formField(sent!, 'model')).toBe('whisper-1');
    const record = await lastRecord();
    expect(record).toMatchObject({ route: '/v1/audio/transcriptions', model: 'whisper-1', costNanoUsd: 300_000 });
    expect(record.media).toMatchObject({ audioSeconds: 3 });
  });

  it('bills gpt-4o-transcribe audio tokens at $6 and its text at $10 per 1M', async () => {
    const file = await toFile(wav(2), 'hello.wav', { type: 'audio/wav' });
    await client(keys.rich).audio.transcriptions.create({ model: 'gpt-4o-transcribe', file });
    const record = await lastRecord();
    expect(record).toMatchObject({ model: 'gpt-4o-transcribe', outputTokens: 14 });
    expect(record.media).toMatchObject({ audioInputTokens: 65 });
    expect(record.costNanoUsd).toBe(65 * 6000 + 14 * 10_000);
  });

  it('bills a streamed gpt-4o-mini-transcribe from its done event ($3 audio, $5 text per 1M)', async () => {
    const file = await toFile(wav(1), 'hello.wav', { type: 'audio/wav' });
    const stream = await client(keys.rich).audio.transcriptions.create({
      model: 'gpt-4o-mini-transcribe',
      file,
      stream: true,
    });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types).toEqual(['transcript.text.delta', 'transcript.text.done']);
    const record = await lastRecord();
    expect(record).toMatchObject({ model: 'gpt-4o-mini-transcribe', stream: true, outputTokens: 3 });
    expect(record.costNanoUsd).toBe(30 * 3000 + 3 * 5000);
  });

  it("masks personal data in an upload's prompt, rewriting that field of the form alone", async () => {
    const audio = wav(1);
    const file = await toFile(audio, 'hello.wav', { type: 'audio/wav' });
    await client(keys.rich).audio.transcriptions.create({
      model: 'whisper-1',
      file,
      prompt: 'Names: ada@example.com',
    });
    const [sent] = upstream.requests;
    expect(formField(sent!, 'prompt')).toBe('Names: [EMAIL]');
    expect(sent!.raw.includes(audio)).toBe(true);
    expect(sent!.raw.includes('ada@example.com')).toBe(false);
  });

  it('forwards a form byte for byte', async () => {
    const boundary = 'tollgate-test-boundary';
    const form = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n`,
      ),
      wav(1),
      Buffer.from(
        `\r\n--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n` +
          `--${boundary}\r\nContent-Disposition: form-data; name="response_format"\r\n\r\njson\r\n--${boundary}--\r\n`,
      ),
    ]);
    const response = await fetch(`${proxy.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.rich}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
      body: form,
    });
    expect(response.status).toBe(200);
    expect(upstream.requests[0]!.raw.equals(form)).toBe(true);
  });

  it('refuses a malformed upload with 400 before anything is sent, reserved or billed', async () => {
    const before = { records: await recordCount(), spent: await keySpent('rich') };
    const response = await fetch(`${proxy.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.rich}`, 'content-type': 'multipart/form-data; boundary=x' },
      body: '--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1',
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
    const noFile = await fetch(`${proxy.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.rich}`, 'content-type': 'multipart/form-data; boundary=x' },
      body: '--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--x--\r\n',
    });
    expect(noFile.status).toBe(400);
    expect(((await noFile.json()) as { error: { param: string } }).error.param).toBe('file');
    expect(upstream.requests).toHaveLength(0);
    expect(await keySpent('rich')).toBe(before.spent);
    expect(await recordCount()).toBe(before.records);
  });
});

describe('token limits', () => {
  it("count an image's tokens: a high portrait (6,240) passes 5,000 a minute, a low square (272) does not", async () => {
    const error = (await caught(
      client(keys.tight).images.generate({ model: 'gpt-image-1', prompt: 'A fox', quality: 'high', size: '1024x1536' }),
    )) as ApiError;
    expect(error.status).toBe(429);
    expect(error.code).toBe('tokens_rate_limit_exceeded');
    expect(upstream.requests).toHaveLength(0);
    await client(keys.tight).images.generate({
      model: 'gpt-image-1',
      prompt: 'A fox',
      quality: 'low',
      size: '1024x1024',
    });
    expect(upstream.requests).toHaveLength(1);
  });
});

describe('an upload past uploadLimit', () => {
  it('is refused with 413 before anything is sent or reserved', async () => {
    const before = await keySpent('rich');
    const file = await toFile(Buffer.alloc(3 * 1024 * 1024), 'long.mp3', { type: 'audio/mpeg' });
    const error = (await caught(
      client(keys.rich).audio.transcriptions.create({ model: 'whisper-1', file }),
    )) as ApiError;
    expect(error.status).toBe(413);
    expect(error.code).toBe('request_too_large');
    expect(upstream.requests).toHaveLength(0);
    expect(await keySpent('rich')).toBe(before);
  });
});

describe('a budget near its end', () => {
  it('refuses a transcription whose audio, bounded by its size, it cannot pay for', async () => {
    // 1.5 MB of MP3 may play 2,000 s at 6 kbit/s: 50,000 audio tokens at $6 per 1M is $0.30, over the $0.01 left.
    const file = await toFile(Buffer.alloc(1_500_000), 'long.mp3', { type: 'audio/mpeg' });
    const error = (await caught(
      client(keys.broke).audio.transcriptions.create({ model: 'gpt-4o-transcribe', file }),
    )) as ApiError;
    expect(error.status).toBe(429);
    expect(error.code).toBe('insufficient_quota');
    expect(upstream.requests).toHaveLength(0);
  });

  it("refuses an image it cannot pay for up front, in the API's own error shape, and sends nothing", async () => {
    const error = (await caught(
      client(keys.broke).images.generate({ model: 'dall-e-3', prompt: 'A castle', size: '1024x1024' }),
    )) as ApiError;
    expect(error.status).toBe(429);
    expect(error.code).toBe('insufficient_quota');
    expect(upstream.requests).toHaveLength(0);
  });

  it('refuses speech whose characters pass what is left, and serves what fits', async () => {
    // 700 characters of tts-1-hd: $0.021, over the $0.01 left.
    const error = (await caught(
      client(keys.broke).audio.speech.create({ model: 'tts-1-hd', voice: 'alloy', input: 'a'.repeat(700) }),
    )) as ApiError;
    expect(error.status).toBe(429);
    expect(error.code).toBe('insufficient_quota');
    expect(upstream.requests).toHaveLength(0);
    const served = await client(keys.broke).audio.speech.create({ model: 'tts-1-hd', voice: 'alloy', input: 'hi' });
    expect(served.status).toBe(200);
    expect((await lastRecord()).costNanoUsd).toBe(2 * 30_000);
  });
});
