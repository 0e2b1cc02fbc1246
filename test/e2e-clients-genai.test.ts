// Google's @google/genai with its default API version (it calls `/v1/models/...`, as Google serves beside `/v1beta`)
// pointed at the gateway: answered, streamed, metered from usageMetadata, refused as its ApiError.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ApiError, GoogleGenAI } from '@google/genai';
import { caught } from './helpers/proxy.js';
import { clientStoreKinds, startClientGateway } from './helpers/client-gateway.js';
import type { ClientGateway } from './helpers/client-gateway.js';

describe.each(clientStoreKinds('genai'))('@google/genai through the gateway on %s stores', (_kind, storesFor) => {
  let gateway: ClientGateway;
  /** The client as its users configure it: the gateway's base URL (no version: the SDK adds its own) and a key. */
  const genai = (key: string, apiVersion?: string) =>
    new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: gateway.url, ...(apiVersion ? { apiVersion } : {}) } });
  const hello = { model: 'gemini-2.5-flash', contents: 'Hello there' };

  beforeAll(async () => {
    gateway = await startClientGateway(storesFor());
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('generateContent at its default /v1: answered and metered from usageMetadata; /v1beta still served', async () => {
    for (const apiVersion of [undefined, 'v1beta']) {
      const answer = await genai(gateway.keys.answered, apiVersion).models.generateContent(hello);
      expect(answer.text).toMatch(/^This is the gateway mock provider/);
      const [record] = await gateway.newRecords('answered');
      expect(record).toMatchObject({
        route: `/${apiVersion ?? 'v1'}/models/gemini-2.5-flash:generateContent`,
        provider: 'google',
        inputTokens: answer.usageMetadata?.promptTokenCount,
        outputTokens: answer.usageMetadata?.candidatesTokenCount,
        usageSource: 'provider',
        stream: false,
      });
      expect(record!.costNanoUsd).toBeGreaterThan(0);
    }
    // The upstream is called at its configured base URL whatever version the client named (a JSON call as its stream).
    expect(gateway.mock.mock.requests.at(-1)?.path).toBe('/v1beta/models/gemini-2.5-flash:streamGenerateContent');
  });

  it('generateContentStream at /v1: SSE chunks, metered from the last usageMetadata', async () => {
    let text = '';
    let usage: { promptTokenCount?: number; candidatesTokenCount?: number } | undefined;
    for await (const chunk of await genai(gateway.keys.answered).models.generateContentStream(hello)) {
      text += chunk.text ?? '';
      usage = chunk.usageMetadata ?? usage;
    }
    expect(text.split(' ')).toHaveLength(24);
    const [record] = await gateway.newRecords('answered');
    expect(record).toMatchObject({
      route: '/v1/models/gemini-2.5-flash:streamGenerateContent',
      inputTokens: usage?.promptTokenCount,
      outputTokens: 24,
      usageSource: 'provider',
      stream: true,
    });
  });

  it('refused by a budget and by a request limit: the SDK ApiError with status 429 and the gateway code', async () => {
    const budget = await caught(genai(gateway.keys.broke).models.generateContent(hello));
    expect(budget).toBeInstanceOf(ApiError);
    expect((budget as ApiError).status).toBe(429);
    expect((budget as ApiError).message).toContain('insufficient_quota');

    await genai(gateway.keys.limited).models.generateContent(hello);
    const limited = await caught(genai(gateway.keys.limited).models.generateContent(hello));
    expect(limited).toBeInstanceOf(ApiError);
    expect((limited as ApiError).status).toBe(429);
    expect((limited as ApiError).message).toContain('rate_limit_exceeded');
  });
});
