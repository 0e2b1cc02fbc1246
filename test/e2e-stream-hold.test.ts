// The hold follows the stream: a budget ends within its limit whatever the upstream streams, and an honest answer is never cut.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startCapIgnoringUpstream } from './helpers/cap-ignoring-upstream.js';
import type { FakeUpstream } from './helpers/cap-ignoring-upstream.js';
import { providerTokenizer } from './helpers/provider-tokenizers.js';
import { memoryAndRedisStores, newApiKey, readUsageLog, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { OwnedStores, RunningProxy } from './helpers/proxy.js';

const LIMIT_USD = 0.003;
const LIMIT_NANO = LIMIT_USD * 1e9;
const CAP = 20;

interface Harness {
  proxy: RunningProxy;
  fake: FakeUpstream;
  usageLog: string;
  openai(tenant: string): OpenAI;
  anthropic(tenant: string): Anthropic;
  budget(tenant: string): Promise<{ spentNanoUsd: number; reservedNanoUsd: number; limitNanoUsd: number }>;
  close(): Promise<void>;
}

async function startHarness(owned: OwnedStores, honourCap: boolean): Promise<Harness> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-stream-hold-'));
  const usageLog = path.join(dir, 'usage.jsonl');
  const adminKey = newApiKey();
  const keys = new Map(['tight', 'roomy'].map((tenant) => [tenant, newApiKey()]));
  const fake = await startCapIgnoringUpstream({ honourCap, outputTokens: honourCap ? 5000 : CAP * 10 });
  const proxy = await startProxy(
    {
      usageLog,
      adminKeySha256: sha256Hex(adminKey),
      upstreams: { openai: { baseUrl: `${fake.url}/v1` }, anthropic: { baseUrl: fake.url } },
      // A model served by an upstream named openai, with no tokenizer: its counts are not the provider's own.
      models: { 'house-model': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 10, maxOutputTokens: 4096 } },
      tiers: { pro: { requestsPerMinute: 10_000, tokensPerMinute: 100_000_000, models: ['*'] } },
      tenants: {
        tight: { tier: 'pro', budget: { usd: LIMIT_USD, period: 'day' } },
        roomy: { tier: 'pro', budget: { usd: 100, period: 'day' } },
      },
      keys: [...keys].map(([tenant, key]) => ({ id: `${tenant}-key`, sha256: sha256Hex(key), tenant, scopes: [] })),
    },
    { stores: owned.stores },
  );
  return {
    proxy,
    fake,
    usageLog,
    openai: (tenant) => new OpenAI({ apiKey: keys.get(tenant)!, baseURL: `${proxy.url}/v1`, maxRetries: 0 }),
    anthropic: (tenant) => new Anthropic({ apiKey: keys.get(tenant)!, baseURL: proxy.url, maxRetries: 0 }),
    async budget(tenant) {
      const response = await fetch(`${proxy.url}/admin/budgets/tenant/${tenant}`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      return ((await response.json()) as { budgets: Awaited<ReturnType<Harness['budget']>>[] }).budgets[0]!;
    },
    async close() {
      await proxy.close();
      await fake.close();
      await owned.release();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Kind = 'house-model chat' | 'gpt-4o Responses' | 'Claude Messages';
const KINDS: Kind[] = ['house-model chat', 'gpt-4o Responses', 'Claude Messages'];

/** One stream through the official SDK of its API; false when the budget refused it for good. */
async function streamOnce(harness: Harness, tenant: string, kind: Kind, maxTokens: number): Promise<boolean> {
  for (;;) {
    try {
      if (kind === 'house-model chat') {
        const stream = await harness.openai(tenant).chat.completions.create({
          model: 'house-model',
          messages: [{ role: 'user', content: 'Tell me a long story' }],
          max_tokens: maxTokens,
          stream: true,
        });
        for await (const chunk of stream) void chunk;
      } else if (kind === 'gpt-4o Responses') {
        const stream = harness.openai(tenant).responses.stream({
          model: 'gpt-4o',
          input: 'Tell me a long story',
          max_output_tokens: maxTokens,
        });
        await stream.finalResponse();
      } else {
        const stream = harness.anthropic(tenant).messages.stream({
          model: 'claude-haiku-4-5',
          max_tokens: maxTokens,
          messages: [{ role: 'user', content: 'Tell me a long story' }],
        });
        await stream.finalMessage();
      }
      return true;
    } catch (error) {
      const { status } = error as { status?: number };
      const message = String((error as Error).message);
      if (status === 429 && message.includes('Budget exhausted')) return false;
      // Held by calls in flight: a client retries.
      if (status !== 429) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

describe.each(memoryAndRedisStores('stream-hold'))('the hold follows the stream, on %s stores', (_kind, storesFor) => {
  describe('an upstream that sends 10x the cap', () => {
    let harness: Harness;
    beforeAll(async () => {
      harness = await startHarness(storesFor(), false);
    }, 60_000);
    afterAll(() => harness?.close());

    it('leaves a $0.003/day budget at or under its limit: streams of a config model, the Responses API and Claude', async () => {
      let answered = 0;
      for (let round = 0; round < 60; round++) {
        if (!(await streamOnce(harness, 'tight', KINDS[round % KINDS.length]!, CAP))) break;
        answered++;
      }
      await harness.fake.settled();
      const budget = await waitFor(async () => {
        const view = await harness.budget('tight');
        return view.reservedNanoUsd === 0 ? view : undefined;
      }, 'the reservations to settle');
      // The budget ran out (the test reached its limit), and its spend never passed it.
      expect(answered).toBeGreaterThan(2);
      expect(budget.limitNanoUsd).toBe(LIMIT_NANO);
      expect(budget.spentNanoUsd).toBeLessThanOrEqual(LIMIT_NANO);
      expect(budget.spentNanoUsd).toBeGreaterThan(LIMIT_NANO * 0.9);
      await harness.proxy.app.flushUsage();
      const records = readUsageLog(harness.usageLog).filter(
        (record) => record.tenantId === 'tight' && record.status === 200,
      );
      // Every stream ran past its cap: flagged, and none billed past what was held for it.
      expect(records.length).toBe(answered);
      for (const record of records) expect(record.outputOverCap).toBe(true);
    }, 120_000);
  });

  describe('an upstream that honours its cap, streaming a long run of zeros as Claude counts it', () => {
    let harness: Harness;
    beforeAll(async () => {
      harness = await startHarness(storesFor(), true);
      const claude = await providerTokenizer('claude');
      harness.fake.options.tokens = { tokenizer: claude, text: '0'.repeat(40_000) };
    }, 60_000);
    afterAll(() => harness?.close());

    it.each([300, 1000])(
      'is never cut at max_tokens %i, and bills what the upstream reports',
      async (cap) => {
        const message = await harness
          .anthropic('roomy')
          .messages.stream({
            model: 'claude-haiku-4-5',
            max_tokens: cap,
            messages: [{ role: 'user', content: 'zeros' }],
          })
          .finalMessage();
        expect({ stop: message.stop_reason, output: message.usage.output_tokens }).toEqual({
          stop: 'max_tokens',
          output: cap,
        });
        await harness.fake.settled();
        expect(harness.fake.calls.at(-1)).toMatchObject({ aborted: false, finished: true, cap });
        await harness.proxy.app.flushUsage();
        const record = await waitFor(
          () =>
            readUsageLog(harness.usageLog).find((found) => found.tenantId === 'roomy' && found.outputTokens === cap),
          'the record',
        );
        expect(record).toMatchObject({ usageSource: 'provider', outputTokens: cap, aborted: false });
        expect(record.outputOverCap).toBeUndefined();
      },
      60_000,
    );
  });
});
