// A client that leaves mid-stream: the reservation settles at once, and the usage log records the partial output as counted.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import type { UsageRecord } from '@tollgate/core';
import { createMockProvider } from '../examples/proxy/src/mock-provider.js';
import { newApiKey, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-abort-'));
const usageLog = path.join(dir, 'usage.jsonl');
const key = newApiKey();
const adminKey = newApiKey();
let proxy: RunningProxy;

function records(): UsageRecord[] {
  let text = '';
  try {
    text = readFileSync(usageLog, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as UsageRecord);
}

async function budgetView(): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, { headers: { authorization: `Bearer ${adminKey}` } });
  return ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] }).budgets[0]!;
}

beforeAll(async () => {
  proxy = await startProxy(
    {
      usageLog,
      adminKeySha256: sha256Hex(adminKey),
      tiers: { pro: { requestsPerMinute: 100, tokensPerMinute: 1_000_000 } },
      tenants: { acme: { tier: 'pro', budget: { usd: 10, period: 'day' } } },
      keys: [{ id: 'abort-key', sha256: sha256Hex(key), tenant: 'acme', scopes: ['chat'] }],
    },
    // A long, slow answer: the client has time to leave in the middle of it.
    { mock: createMockProvider({ replyTokens: 400, chunkDelayMs: 10 }) },
  );
});

afterAll(async () => {
  await proxy.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('client abort mid-stream', () => {
  it('OpenAI chat: settles the reservation and records the partial output as counted and aborted', async () => {
    const openai = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Tell me a long story' }], stream: true, max_tokens: 400 });
    let deltas = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas++;
      if (deltas === 10) break; // leaving the loop aborts the request
    }
    const record = await waitFor(() => records().find((r) => r.route.endsWith('/chat/completions')), 'the usage record');
    expect(record).toMatchObject({ keyId: 'abort-key', tenantId: 'acme', stream: true, aborted: true, usageSource: 'counted', model: 'gpt-4o-mini' });
    expect(record.outputTokens).toBeGreaterThanOrEqual(10);
    expect(record.outputTokens).toBeLessThan(400);
    expect(record.costNanoUsd).toBeGreaterThan(0);
    expect(record.costNanoUsd).toBeLessThan(record.estimatedCostNanoUsd);

    const view = await waitFor(async () => {
      const current = await budgetView();
      return current.reservedNanoUsd === 0 ? current : undefined;
    }, 'the reservation to settle');
    expect(view.spentNanoUsd).toBe(record.costNanoUsd);
  });

  it('Anthropic messages: the same with message_start usage already seen', async () => {
    const before = (await budgetView()).spentNanoUsd;
    const anthropic = new Anthropic({ apiKey: key, baseURL: proxy.url, maxRetries: 0 });
    const stream = anthropic.messages.stream({ model: 'claude-haiku-4-5', max_tokens: 400, messages: [{ role: 'user', content: 'Tell me a long story' }] });
    let deltas = 0;
    await new Promise<void>((resolve) => {
      stream.on('text', () => {
        if (++deltas === 10) {
          stream.abort();
          resolve();
        }
      });
      stream.on('error', () => resolve());
      stream.on('abort', () => resolve());
    });
    stream.finalMessage().catch(() => undefined);
    const record = await waitFor(() => records().find((r) => r.route.endsWith('/messages')), 'the usage record');
    expect(record).toMatchObject({ keyId: 'abort-key', stream: true, aborted: true, model: 'claude-haiku-4-5' });
    expect(record.inputTokens).toBeGreaterThan(0);
    expect(record.outputTokens).toBeGreaterThanOrEqual(10);
    expect(record.outputTokens).toBeLessThan(400);
    const view = await waitFor(async () => {
      const current = await budgetView();
      return current.reservedNanoUsd === 0 ? current : undefined;
    }, 'the reservation to settle');
    expect(view.spentNanoUsd - before).toBe(record.costNanoUsd);
  });
});
