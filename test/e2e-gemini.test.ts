// Gemini's native API through the proxy (mock and real upstream), and an openai-compatible upstream: one adapter, one route.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { UsageRecord } from '@tollgate/core';
import { createMockProvider } from '@tollgate/providers/mock';
import type { MockProvider } from '@tollgate/providers/mock';
import { newApiKey, sha256Hex, startFakeUpstream, startMockUpstream, startProxy, waitFor } from './helpers/proxy.js';
import type { FakeUpstream, RunningProxy } from './helpers/proxy.js';

/** gemini-2.5-flash in the catalogue: $0.30 in, $2.50 out per 1M tokens, in nano-USD per token. */
const FLASH_IN = 300;
const FLASH_OUT = 2500;
/** What the mock counts for one user content "Hello, world!": 4 tokens + 3 per content + 3. */
const HELLO_INPUT_TOKENS = 10;
const hello = { contents: [{ role: 'user', parts: [{ text: 'Hello, world!' }] }] };

interface GeminiAnswer {
  candidates: { content: { parts: { text: string }[] }; finishReason?: string }[];
  usageMetadata: { promptTokenCount: number; candidatesTokenCount: number };
  modelVersion: string;
}

interface ErrorAnswer {
  error: { code: string; param: string | null };
}

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-gemini-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function post(url: string, body: unknown, headers: Record<string, string>): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

/** The JSON of each `data:` line of an SSE body. */
function sseData(text: string): GeminiAnswer[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => JSON.parse(line.slice(6)) as GeminiAnswer);
}

/** The usage log's last record that `matches`, once written (records are written when the response closes). */
async function findRecord(
  proxy: RunningProxy,
  usageLog: string,
  matches: (record: UsageRecord) => boolean,
): Promise<UsageRecord> {
  return waitFor(async () => {
    await proxy.app.flushUsage();
    let text = '';
    try {
      text = readFileSync(usageLog, 'utf8');
    } catch {
      return undefined;
    }
    return text
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as UsageRecord)
      .filter(matches)
      .at(-1);
  }, 'a usage record');
}

describe('Gemini on the built-in mock', () => {
  const usageLog = path.join(dir, 'mock-usage.jsonl');
  const adminKey = newApiKey();
  const proKey = newApiKey();
  const freeKey = newApiKey();
  const thriftyKey = newApiKey();
  let mock: MockProvider;
  let proxy: RunningProxy;
  let route: string;

  async function spentNanoUsd(): Promise<number> {
    const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    return ((await response.json()) as { budgets: { spentNanoUsd: number }[] }).budgets[0]!.spentNanoUsd;
  }

  /** The budget's spending once it moved past `before` (it settles when the response closes). */
  async function spentAfter(before: number): Promise<number> {
    return waitFor(async () => {
      const spent = await spentNanoUsd();
      return spent > before ? spent - before : undefined;
    }, 'the budget to settle');
  }

  beforeAll(async () => {
    mock = createMockProvider();
    proxy = await startProxy(
      {
        usageLog,
        adminKeySha256: sha256Hex(adminKey),
        tiers: { free: { models: ['gemini-2.5-flash'], maxOutputTokens: 5 }, pro: { models: ['*'] } },
        tenants: {
          acme: { tier: 'pro', budget: { usd: 10, period: 'day' } },
          small: { tier: 'free' },
          thrifty: {
            tier: 'pro',
            budget: { usd: 1, period: 'month', softLimit: 0.0001 },
            downgrade: { 'gemini-2.5-pro': 'gemini-2.5-flash' },
          },
        },
        keys: [
          { id: 'pro-key', sha256: sha256Hex(proKey), tenant: 'acme' },
          { id: 'free-key', sha256: sha256Hex(freeKey), tenant: 'small' },
          { id: 'thrifty-key', sha256: sha256Hex(thriftyKey), tenant: 'thrifty' },
        ],
      },
      { mock },
    );
    route = `${proxy.url}/v1beta/models`;
  });

  afterAll(async () => {
    await proxy.close();
  });

  it('generateContent with x-goog-api-key: Gemini JSON, a google record priced from usageMetadata, the budget spent by its cost', async () => {
    const before = await spentNanoUsd();
    const response = await post(`${route}/gemini-2.5-flash:generateContent`, hello, { 'x-goog-api-key': proKey });
    expect(response.status).toBe(200);
    const answer = (await response.json()) as GeminiAnswer;
    expect(answer.usageMetadata).toMatchObject({ promptTokenCount: HELLO_INPUT_TOKENS, candidatesTokenCount: 24 });
    expect(answer.candidates[0]?.finishReason).toBe('STOP');
    expect(answer.modelVersion).toBe('gemini-2.5-flash');

    const record = await findRecord(proxy, usageLog, (entry) => entry.keyId === 'pro-key' && !entry.stream);
    expect(record).toMatchObject({
      keyId: 'pro-key',
      provider: 'google',
      model: 'gemini-2.5-flash',
      requestedModel: 'gemini-2.5-flash',
      inputTokens: HELLO_INPUT_TOKENS,
      outputTokens: 24,
      stream: false,
      status: 200,
      usageSource: 'provider',
      costNanoUsd: HELLO_INPUT_TOKENS * FLASH_IN + 24 * FLASH_OUT,
    });
    expect(await spentAfter(before)).toBe(record.costNanoUsd);
  });

  it('streamGenerateContent?alt=sse: SSE chunks with running usageMetadata, a streamed record and the same spend', async () => {
    const before = await spentNanoUsd();
    const response = await post(`${route}/gemini-2.5-flash:streamGenerateContent?alt=sse`, hello, {
      authorization: `Bearer ${proKey}`,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const chunks = sseData(await response.text());
    expect(chunks).toHaveLength(24);
    expect(chunks[0]?.usageMetadata.candidatesTokenCount).toBe(1);
    expect(chunks.at(-1)).toMatchObject({
      candidates: [{ finishReason: 'STOP' }],
      usageMetadata: { candidatesTokenCount: 24 },
    });

    const streamed = await findRecord(proxy, usageLog, (entry) => entry.keyId === 'pro-key' && entry.stream);
    expect(streamed).toMatchObject({
      provider: 'google',
      model: 'gemini-2.5-flash',
      inputTokens: HELLO_INPUT_TOKENS,
      outputTokens: 24,
      usageSource: 'provider',
      costNanoUsd: HELLO_INPUT_TOKENS * FLASH_IN + 24 * FLASH_OUT,
    });
    expect(await spentAfter(before)).toBe(streamed.costNanoUsd);
  });

  it('the mock on its own port serves Gemini streams cut to generationConfig.maxOutputTokens', async () => {
    const upstream = await startMockUpstream();
    try {
      const body = { ...hello, generationConfig: { maxOutputTokens: 7 } };
      const response = await post(
        `${upstream.url}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse`,
        body,
        {},
      );
      const chunks = sseData(await response.text());
      expect(chunks).toHaveLength(7);
      expect(chunks.at(-1)).toMatchObject({
        candidates: [{ finishReason: 'MAX_TOKENS' }],
        usageMetadata: { candidatesTokenCount: 7 },
        modelVersion: 'gemini-2.0-flash',
      });
      expect((await post(`${upstream.url}/v1beta/models/gemini-2.0-flash:embedContent`, hello, {})).status).toBe(404);
    } finally {
      await upstream.close();
    }
  });

  it('the tier applies: a model off the free list is refused, the free cap is written into generationConfig.maxOutputTokens', async () => {
    const refused = await post(`${route}/gemini-2.5-pro:generateContent`, hello, { 'x-goog-api-key': freeKey });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as ErrorAnswer).error.code).toBe('model_not_allowed');

    const capped = await post(
      `${route}/gemini-2.5-flash:generateContent`,
      { ...hello, generationConfig: { temperature: 0.2 } },
      { 'x-goog-api-key': freeKey },
    );
    expect(capped.status).toBe(200);
    expect(((await capped.json()) as GeminiAnswer).usageMetadata.candidatesTokenCount).toBe(5);
    expect(mock.requests.at(-1)?.body).toMatchObject({ generationConfig: { temperature: 0.2, maxOutputTokens: 5 } });
  });

  it('an unknown method is a 404, another HTTP method a 405, and a stream without alt=sse or a bad body a 400', async () => {
    const unknown = await post(`${route}/gemini-2.5-flash:embedContent`, hello, { 'x-goog-api-key': proKey });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as ErrorAnswer).error.code).toBe('not_found');
    expect((await post(`${route}/gemini-2.5-flash`, hello, { 'x-goog-api-key': proKey })).status).toBe(404);

    const get = await fetch(`${route}/gemini-2.5-flash:generateContent`, { headers: { 'x-goog-api-key': proKey } });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');

    const noSse = await post(`${route}/gemini-2.5-flash:streamGenerateContent`, hello, { 'x-goog-api-key': proKey });
    expect(noSse.status).toBe(400);
    expect(((await noSse.json()) as ErrorAnswer).error.param).toBe('alt');
    for (const [body, param] of [
      [{}, 'contents'],
      [{ contents: 'hi' }, 'contents'],
      [{ ...hello, generationConfig: { maxOutputTokens: 0 } }, 'generationConfig.maxOutputTokens'],
      [{ ...hello, generationConfig: 'long' }, 'generationConfig'],
    ] as const) {
      const bad = await post(`${route}/gemini-2.5-flash:generateContent`, body, { 'x-goog-api-key': proKey });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as ErrorAnswer).error).toMatchObject({ code: 'invalid_request', param });
    }
  });

  it('x-goog-api-key must agree with any other key sent; without a key it is a 401', async () => {
    const twoKeys = await post(`${route}/gemini-2.5-flash:generateContent`, hello, {
      'x-goog-api-key': proKey,
      authorization: `Bearer ${freeKey}`,
    });
    expect(twoKeys.status).toBe(401);
    expect((await post(`${route}/gemini-2.5-flash:generateContent?key=${proKey}`, hello, {})).status).toBe(401);
  });

  it('past the soft limit the downgrade map applies: the call runs and is billed as the cheaper model', async () => {
    const ask = async () => {
      const response = await post(`${route}/gemini-2.5-pro:generateContent`, hello, { 'x-goog-api-key': thriftyKey });
      return ((await response.json()) as GeminiAnswer).modelVersion;
    };
    // 24 gemini-2.5-pro output tokens cost $0.00024: the first request alone passes the soft limit.
    expect(await ask()).toBe('gemini-2.5-pro');
    let downgraded: string | undefined;
    for (let i = 0; i < 20 && downgraded === undefined; i++) {
      const model = await ask();
      if (model !== 'gemini-2.5-pro') downgraded = model;
    }
    expect(downgraded).toBe('gemini-2.5-flash');
    const last = await findRecord(
      proxy,
      usageLog,
      (entry) => entry.keyId === 'thrifty-key' && entry.model === 'gemini-2.5-flash',
    );
    expect(last).toMatchObject({ requestedModel: 'gemini-2.5-pro', model: 'gemini-2.5-flash', provider: 'google' });
  });

  it('/v1/models lists the catalogue gemini models, owned by google', async () => {
    const response = await fetch(`${proxy.url}/v1/models`, { headers: { authorization: `Bearer ${proKey}` } });
    const { data } = (await response.json()) as { data: { id: string; owned_by: string }[] };
    const gemini = data.filter((model) => model.id.startsWith('gemini-'));
    expect(gemini.map((model) => model.id)).toEqual(
      expect.arrayContaining(['gemini-2.5-pro', 'gemini-2.5-flash', 'gemini-2.5-flash-lite', 'gemini-2.0-flash']),
    );
    expect(gemini.every((model) => model.owned_by === 'google')).toBe(true);
  });
});

describe('real upstreams: Gemini and openai-compatible', () => {
  const usageLog = path.join(dir, 'upstream-usage.jsonl');
  const clientKey = newApiKey();
  const thriftyKey = newApiKey();
  const googleKey = `goog-upstream-${newApiKey()}`;
  const vllmKey = `vllm-upstream-${newApiKey()}`;
  let gemini: FakeUpstream;
  let vllm: FakeUpstream;
  let proxy: RunningProxy;

  beforeAll(async () => {
    gemini = await startFakeUpstream((request, res) => {
      const usageMetadata = { promptTokenCount: 11, candidatesTokenCount: 3, totalTokenCount: 14 };
      const modelVersion = decodeURIComponent(/\/models\/([^:]+):/.exec(request.url)?.[1] ?? '');
      const chunk = {
        candidates: [
          { content: { role: 'model', parts: [{ text: 'one two three' }] }, finishReason: 'STOP', index: 0 },
        ],
        usageMetadata,
        modelVersion,
      };
      if (request.url.includes(':streamGenerateContent')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: ${JSON.stringify(chunk)}\r\n\r\n`);
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(chunk));
      }
    });
    vllm = await startFakeUpstream((request, res) => {
      const body = request.body as { model: string };
      const completion = {
        id: 'cmpl-1',
        object: 'chat.completion',
        created: 1,
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 },
      };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(completion));
    });
    proxy = await startProxy({
      usageLog,
      upstreams: {
        google: { baseUrl: `${gemini.url}/v1beta`, apiKey: googleKey },
        vllm: { baseUrl: `${vllm.url}/v1`, apiKey: vllmKey, api: 'openai-compatible' },
      },
      models: {
        'llama-3.1-8b': { provider: 'vllm', inputPerMTok: 0.1, outputPerMTok: 0.2 },
        'tuned/my model': { provider: 'google', inputPerMTok: 1, outputPerMTok: 2 },
      },
      tiers: { pro: { models: ['*'], maxOutputTokens: 50 } },
      tenants: {
        acme: { tier: 'pro' },
        thrifty: {
          tier: 'pro',
          budget: { usd: 1, period: 'month', softLimit: 0.0001 },
          downgrade: { 'gemini-2.5-pro': 'gemini-2.5-flash' },
        },
      },
      keys: [
        { id: 'client-key', sha256: sha256Hex(clientKey), tenant: 'acme' },
        { id: 'thrifty-key', sha256: sha256Hex(thriftyKey), tenant: 'thrifty' },
      ],
    });
  });

  afterAll(async () => {
    await proxy.close();
    await gemini.close();
    await vllm.close();
  });

  it('Gemini: the model and method in the path, the upstream key in x-goog-api-key, no client credential forwarded', async () => {
    const response = await post(`${proxy.url}/v1beta/models/gemini-2.5-flash:generateContent?key=${clientKey}`, hello, {
      'x-goog-api-key': clientKey,
    });
    expect(response.status).toBe(200);
    const seen = gemini.requests.at(-1)!;
    // A JSON call is asked as the stream of the same call, held to its grant (docs/architecture.md).
    expect(seen.url).toBe('/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
    expect(seen.headers['x-goog-api-key']).toBe(googleKey);
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-api-key']).toBeUndefined();
    expect(JSON.stringify(seen.headers)).not.toContain(clientKey);
    expect(seen.body).toMatchObject({ ...hello, generationConfig: { maxOutputTokens: 50 } });

    const stream = await post(`${proxy.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`, hello, {
      authorization: `Bearer ${clientKey}`,
    });
    expect(sseData(await stream.text())).toHaveLength(1);
    expect(gemini.requests.at(-1)).toMatchObject({
      url: '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
      headers: { accept: 'text/event-stream' },
    });

    for (const stream of [false, true]) {
      const record = await findRecord(
        proxy,
        usageLog,
        (entry) => entry.keyId === 'client-key' && entry.stream === stream,
      );
      expect(record).toMatchObject({
        provider: 'google',
        model: 'gemini-2.5-flash',
        inputTokens: 11,
        outputTokens: 3,
        costNanoUsd: 11 * FLASH_IN + 3 * FLASH_OUT,
      });
    }
  });

  it('Gemini: a model with reserved characters is encoded into the upstream path', async () => {
    const response = await post(
      `${proxy.url}/v1beta/models/${encodeURIComponent('tuned/my model')}:generateContent`,
      hello,
      { 'x-goog-api-key': clientKey },
    );
    expect(response.status).toBe(200);
    expect(gemini.requests.at(-1)?.url).toBe('/v1beta/models/tuned%2Fmy%20model:streamGenerateContent?alt=sse');
  });

  it('Gemini: a downgraded call goes to the path of the model it runs with', async () => {
    const ask = async () => {
      await post(`${proxy.url}/v1beta/models/gemini-2.5-pro:generateContent`, hello, { 'x-goog-api-key': thriftyKey });
      return gemini.requests.at(-1)!.url;
    };
    // 3 gemini-2.5-pro output tokens and 11 input cost $0.0000438: a few requests pass the $0.0001 soft limit.
    expect(await ask()).toBe('/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse');
    let downgraded: string | undefined;
    for (let i = 0; i < 20 && downgraded === undefined; i++) {
      const url = await ask();
      if (!url.includes('gemini-2.5-pro')) downgraded = url;
    }
    expect(downgraded).toBe('/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
  });

  it('openai-compatible: the cap goes into max_tokens, its key as Bearer, and the record names the upstream as provider', async () => {
    const response = await post(
      `${proxy.url}/v1/chat/completions`,
      { model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'hi' }] },
      { authorization: `Bearer ${clientKey}` },
    );
    expect(response.status).toBe(200);
    const seen = vllm.requests.at(-1)!;
    expect(seen.url).toBe('/v1/chat/completions');
    expect(seen.headers.authorization).toBe(`Bearer ${vllmKey}`);
    expect(seen.body).toMatchObject({ model: 'llama-3.1-8b', max_tokens: 50 });
    expect(seen.body).not.toHaveProperty('max_completion_tokens');

    const record = await findRecord(proxy, usageLog, (entry) => entry.model === 'llama-3.1-8b');
    expect(record).toMatchObject({ provider: 'vllm', inputTokens: 9, outputTokens: 2, usageSource: 'provider' });
  });

  it('a Gemini model on the chat route is refused with the route to call', async () => {
    const response = await post(
      `${proxy.url}/v1/chat/completions`,
      { model: 'gemini-2.5-flash', messages: [{ role: 'user', content: 'hi' }] },
      { authorization: `Bearer ${clientKey}` },
    );
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toContain(
      '/v1beta/models/{model}:generateContent',
    );
  });
});
