// A Claude answer cut by its budget is billed its upstream's own count (count_tokens) of what its client received,
// asked before the call settles; where the count fails or is late, the upper count, flagged, within the time box.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import type { UsageRecord } from '@tollgate/core';
import { startCapIgnoringUpstream } from './helpers/cap-ignoring-upstream.js';
import type { FakeUpstream } from './helpers/cap-ignoring-upstream.js';
import { providerTokenizer, SAMPLE_TEXTS, textOfTokens } from './helpers/provider-tokenizers.js';
import type { ProviderTokenizer } from './helpers/provider-tokenizers.js';
import { newApiKey, readUsageLog, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const MODEL = 'claude-haiku-4-5';
const CAP = 64;
/** Room for a few hundred output tokens: the hold is extended past the cap, then refused, and the answer cut there. */
const LIMIT_USD = 0.002;
const LIMIT_NANO = LIMIT_USD * 1e9;
/** The count's time box on the upstream's entry (`countTimeoutMs`). */
const COUNT_TIMEOUT_MS = 1000;
/** What the fake's count adds for the message around the text. */
const OVERHEAD = 7;

const tenants = ['stream', 'json', 'failing', 'hanging'] as const;
type Tenant = (typeof tenants)[number];

let claude: ProviderTokenizer;
let fake: FakeUpstream;
let proxy: RunningProxy;
let dir: string;
let usageLog: string;
const adminKey = newApiKey();
const keys = new Map(tenants.map((tenant) => [tenant, newApiKey()]));
/** What was billed against what was received, printed once at the end. */
const measured: string[] = [];

beforeAll(async () => {
  claude = await providerTokenizer('claude');
  dir = mkdtempSync(path.join(tmpdir(), 'tollgate-claude-cut-count-'));
  usageLog = path.join(dir, 'usage.jsonl');
  fake = await startCapIgnoringUpstream({
    honourCap: false,
    outputTokens: 2000,
    tokens: { tokenizer: claude, text: textOfTokens(claude, SAMPLE_TEXTS.prose, 2000) },
  });
  proxy = await startProxy({
    usageLog,
    adminKeySha256: sha256Hex(adminKey),
    upstreams: { anthropic: { baseUrl: fake.url, countTimeoutMs: COUNT_TIMEOUT_MS } },
    tiers: { pro: { models: ['*'] } },
    tenants: Object.fromEntries(
      tenants.map((tenant) => [tenant, { tier: 'pro', budget: { usd: LIMIT_USD, period: 'day' as const } }]),
    ),
    keys: tenants.map((tenant) => ({ id: `${tenant}-key`, sha256: sha256Hex(keys.get(tenant)!), tenant })),
  });
}, 120_000);

afterAll(async () => {
  if (measured.length > 0) console.log(measured.join('\n'));
  await proxy?.close();
  await fake?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  await fake.settled();
  await proxy.app.flushUsage();
});

/** One call through the official SDK: the text its client received and how the answer said it ended. */
async function callClaude(tenant: Tenant, stream: boolean): Promise<{ text: string; ending: string | null }> {
  const client = new Anthropic({ apiKey: keys.get(tenant)!, baseURL: proxy.url, maxRetries: 0 });
  const params = { model: MODEL, max_tokens: CAP, messages: [{ role: 'user' as const, content: 'Tell me a story' }] };
  const message = stream ? await client.messages.stream(params).finalMessage() : await client.messages.create(params);
  const text = message.content.map((block) => (block.type === 'text' ? block.text : '')).join('');
  return { text, ending: message.stop_reason };
}

/** The tenant's one record, once written. */
async function recordOf(tenant: Tenant): Promise<UsageRecord> {
  await proxy.app.flushUsage();
  const records = readUsageLog(usageLog).filter((record) => record.tenantId === tenant);
  expect(records).toHaveLength(1);
  return records[0]!;
}

/** The tenant's budget spent exactly what its record cost, within its limit. */
async function expectBudgetBalanced(tenant: Tenant, record: UsageRecord): Promise<void> {
  await fake.settled();
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/${tenant}`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  const budget = ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] })
    .budgets[0]!;
  expect(budget).toMatchObject({ spentNanoUsd: record.costNanoUsd, reservedNanoUsd: 0 });
  expect(budget.spentNanoUsd).toBeLessThanOrEqual(LIMIT_NANO);
}

describe('a Claude answer cut by its budget', () => {
  it.each([
    ['stream', true],
    ['json', false],
  ] as const)(
    'as a %s, is billed the upstream count of what its client received, not the upper count',
    async (tenant, stream) => {
      fake.options.countTokens = { tokenizer: claude, overhead: OVERHEAD };
      const asked = fake.counts.length;
      const answer = await callClaude(tenant, stream);
      expect(answer.ending).toBe('max_tokens');
      const received = claude.encode(answer.text).length;
      // Cut well past its cap (the hold followed it until the budget refused more), short of the upstream's 2000.
      expect(received).toBeGreaterThan(CAP);
      expect(received).toBeLessThan(2000);
      const record = await recordOf(tenant);
      expect(record).toMatchObject({
        model: MODEL,
        usageSource: 'provider-counted',
        outputTokens: received,
        outputOverCap: true,
        stream,
      });
      expect(record.outputUpperBound).toBeUndefined();
      measured.push(`${tenant}: received ${received} tokens (Claude 2 oracle), billed ${record.outputTokens}`);
      // The text counted is what the client got, asked with the one-token probe of the fixed part (once per model).
      const texts = fake.counts.slice(asked).map((body) => (body.messages as { content: string }[])[0]!.content);
      expect(texts).toContain(answer.text);
      await expectBudgetBalanced(tenant, record);
    },
    30_000,
  );

  it.each([
    ['failing', 'fail'],
    ['hanging', 'hang'],
  ] as const)(
    'whose count is %s, is billed its upper count, flagged, the record written within the time box',
    async (tenant, counting) => {
      fake.options.countTokens = counting;
      const answer = await callClaude(tenant, true);
      const ended = performance.now();
      expect(answer.ending).toBe('max_tokens');
      const record = await recordOf(tenant);
      const writtenAfterMs = performance.now() - ended;
      const received = claude.encode(answer.text).length;
      expect(record).toMatchObject({ usageSource: 'counted', outputUpperBound: true, outputOverCap: true });
      expect(record.outputTokens).toBeGreaterThanOrEqual(received);
      measured.push(
        `${tenant} count: received ${received} tokens, billed the upper ${record.outputTokens} ` +
          `(${(record.outputTokens / received).toFixed(2)}x), written ${Math.round(writtenAfterMs)} ms after the answer`,
      );
      expect(writtenAfterMs).toBeLessThan(COUNT_TIMEOUT_MS + 1000);
      await expectBudgetBalanced(tenant, record);
    },
    30_000,
  );
});

describe('a gateway closing while a cut answer waits for its count', () => {
  it('writes its record (the upper count, flagged) before it is closed', async () => {
    const closingLog = path.join(dir, 'closing.jsonl');
    const key = newApiKey();
    // A count that would wait far longer than closing gives the upstream calls.
    const closing = await startProxy({
      usageLog: closingLog,
      upstreams: { anthropic: { baseUrl: fake.url, countTimeoutMs: 60_000 } },
      tiers: { pro: { models: ['*'] } },
      tenants: { late: { tier: 'pro', budget: { usd: LIMIT_USD, period: 'day' } } },
      keys: [{ id: 'late-key', sha256: sha256Hex(key), tenant: 'late' }],
    });
    fake.options.countTokens = 'hang';
    const client = new Anthropic({ apiKey: key, baseURL: closing.url, maxRetries: 0 });
    const params = { model: MODEL, max_tokens: CAP, messages: [{ role: 'user' as const, content: 'Tell me a story' }] };
    const message = await client.messages.stream(params).finalMessage();
    expect(message.stop_reason).toBe('max_tokens');
    const started = performance.now();
    await closing.close();
    const closedMs = performance.now() - started;
    const records = readUsageLog(closingLog);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ tenantId: 'late', usageSource: 'counted', outputUpperBound: true });
    measured.push(`closing: the record waiting for a count written, closed in ${Math.round(closedMs)} ms`);
  }, 30_000);
});
