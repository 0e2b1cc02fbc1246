// Automatic Anthropic prompt caching through the proxy: breakpoints sent upstream, cache writes (1 h) and reads billed at their own prices.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DEFAULT_PRICES, type UsageRecord } from '@tollgate/core';
import { newApiKey, readUsageLog, sha256Hex, startFakeUpstream, startProxy, waitFor } from './helpers/proxy.js';
import type { FakeUpstream, RunningProxy } from './helpers/proxy.js';

const key = newApiKey();
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-prompt-cache-'));
const usageLog = path.join(dir, 'usage.jsonl');
const PRICE = DEFAULT_PRICES['claude-sonnet-4-5']!;
const PREFIX_TOKENS = 2000;
let upstream: FakeUpstream;
let proxy: RunningProxy;
let anthropic: Anthropic;

/** A system prompt well past Anthropic's 1024-token minimum for Sonnet. */
const SYSTEM = Array.from({ length: 1500 }, (_, i) => `rule${i}`).join(' ');

/** USD per 1M tokens x tokens = nano-USD x 1e-3. */
const nano = (tokens: number, perMTok: number) => tokens * perMTok * 1000;

beforeAll(async () => {
  upstream = await startFakeUpstream((request, res) => {
    if (request.url.startsWith('/v1/chat/completions')) {
      // OpenAI counts cached tokens inside prompt_tokens.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'chatcmpl-1',
          object: 'chat.completion',
          created: 1,
          model: 'gpt-4o-mini',
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: 'ok', refusal: null },
              logprobs: null,
              finish_reason: 'stop',
            },
          ],
          usage: {
            prompt_tokens: 3000,
            completion_tokens: 5,
            total_tokens: 3005,
            prompt_tokens_details: { cached_tokens: 2048 },
          },
        }),
      );
      return;
    }
    // The first call writes the prefix to the provider's cache (1 h), every later one reads it.
    const first = upstream.requests.filter((seen) => seen.url.startsWith('/v1/messages')).length === 1;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-5',
        content: [{ type: 'text', text: 'ok' }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: {
          input_tokens: 10,
          output_tokens: 5,
          cache_creation_input_tokens: first ? PREFIX_TOKENS : 0,
          cache_read_input_tokens: first ? 0 : PREFIX_TOKENS,
          cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: first ? PREFIX_TOKENS : 0 },
        },
      }),
    );
  });
  proxy = await startProxy({
    usageLog,
    upstreams: {
      anthropic: { baseUrl: upstream.url, apiKey: 'sk-ant-upstream' },
      openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' },
    },
    tenants: { acme: {} },
    keys: [{ id: 'prompt-key', sha256: sha256Hex(key), tenant: 'acme', scopes: ['chat'] }],
    cache: { store: 'memory', promptCaching: { ttl: '1h' } },
  });
  anthropic = new Anthropic({ apiKey: key, baseURL: proxy.url, maxRetries: 0 });
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

async function recordsOf(count: number): Promise<UsageRecord[]> {
  return waitFor(async () => {
    await proxy.app.flushUsage();
    const records = readUsageLog(usageLog);
    return records.length >= count ? records : undefined;
  }, `${count} usage records`);
}

describe('automatic prompt caching (Anthropic)', () => {
  it('marks the long system prompt upstream and bills the 1 h write, then the read, at their prices', async () => {
    const ask = (question: string) =>
      anthropic.messages.create({
        model: 'claude-sonnet-4-5',
        max_tokens: 50,
        system: SYSTEM,
        messages: [{ role: 'user', content: question }],
      });
    await ask('First question?');
    await ask('Second question?');
    const sent = upstream.requests.map((request) => request.body as { system: unknown });
    expect(sent[0]!.system).toEqual([{ type: 'text', text: SYSTEM, cache_control: { type: 'ephemeral', ttl: '1h' } }]);
    expect(sent[1]!.system).toEqual(sent[0]!.system);

    const [write, read] = await recordsOf(2);
    expect(write).toMatchObject({
      inputTokens: 10 + PREFIX_TOKENS,
      cacheWriteTokens: PREFIX_TOKENS,
      cacheWrite1hTokens: PREFIX_TOKENS,
      cachedInputTokens: 0,
    });
    expect(write!.costNanoUsd).toBe(
      nano(10, PRICE.inputPerMTok) + nano(PREFIX_TOKENS, PRICE.cacheWrite1hPerMTok!) + nano(5, PRICE.outputPerMTok),
    );
    expect(write!.savedNanoUsd).toBeUndefined();
    expect(read).toMatchObject({
      inputTokens: 10 + PREFIX_TOKENS,
      cachedInputTokens: PREFIX_TOKENS,
      cacheWriteTokens: 0,
    });
    expect(read!.costNanoUsd).toBe(
      nano(10, PRICE.inputPerMTok) + nano(PREFIX_TOKENS, PRICE.cachedInputPerMTok!) + nano(5, PRICE.outputPerMTok),
    );
    expect(read!.savedNanoUsd).toBe(nano(PREFIX_TOKENS, PRICE.inputPerMTok - PRICE.cachedInputPerMTok!));
  });

  it('leaves a short prompt unmarked', async () => {
    await anthropic.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 50,
      system: 'Be brief.',
      messages: [{ role: 'user', content: 'Hi?' }],
    });
    expect((upstream.requests.at(-1)!.body as { system: unknown }).system).toBe('Be brief.');
  });

  it('reports the cached share OpenAI returns, and the money it saved', async () => {
    const openai = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Hi?' }],
    });
    const records = await recordsOf(4);
    const chat = records.find((record) => record.model === 'gpt-4o-mini')!;
    const price = DEFAULT_PRICES['gpt-4o-mini']!;
    expect(chat).toMatchObject({ inputTokens: 3000, cachedInputTokens: 2048 });
    expect(chat.savedNanoUsd).toBe(nano(2048, price.inputPerMTok - price.cachedInputPerMTok!));
  });
});
