// Every provider kind and API through its official SDK, on every text of issue 42 as its provider counts it: an upstream
// that honours its cap streams exactly max_tokens and is never cut (billed what it reports); one that ignores its cap
// never takes a budget past its limit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createPricing } from '@tollgate/core';
import { everyProviderKind, PROVIDER_KINDS, startCapIgnoringUpstream } from './helpers/cap-ignoring-upstream.js';
import type { FakeApi, FakeUpstream } from './helpers/cap-ignoring-upstream.js';
import { providerTokenizer, textOfTokens } from './helpers/provider-tokenizers.js';
import type { ProviderCase, ProviderTokenizer } from './helpers/provider-tokenizers.js';
import { newApiKey, readUsageLog, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';
import { CAP_ENDINGS, streamThroughSdk, streamUntilRefused } from './helpers/sdk-streams.js';
import type { StreamApi } from './helpers/sdk-streams.js';
import { STREAM_TEXTS } from './helpers/stream-texts.js';

interface Case extends ProviderCase<StreamApi> {
  /** The model the record bills (a model group's target). */
  billed: string;
}

/** The SDK of each API the fake speaks. */
const SDK_OF: Record<FakeApi, StreamApi> = {
  'openai.chat': 'chat',
  'openai.responses': 'responses',
  'anthropic.messages': 'messages',
  'gemini.generate': 'gemini',
};
const KINDS: ProviderCase<FakeApi>[] = [
  ...PROVIDER_KINDS,
  // The Responses API to a model of an upstream named openai, no tokenizer: its hold follows it.
  { label: 'Llama behind openai, Responses', api: 'openai.responses', model: 'llama-on-openai', tokenizer: 'llama3' },
];
const CASES: Case[] = KINDS.map((kind) => ({
  ...kind,
  api: SDK_OF[kind.api],
  billed: kind.model === 'claude-via-chat' ? 'claude-haiku-4-5' : kind.model,
}));

const TEXTS = Object.keys(STREAM_TEXTS);
const HONEST_CAP = 300;
const IGNORED_CAP = 20;
/** Streams of 10x the cap a tight budget holds (each case's, at its model's output price): cut ones take less. */
const FULL_STREAMS = 4;
/** A config model's prices: a stream of 10x a cap of 20 costs about what Claude's does. */
const PRICES = { inputPerMTok: 1, outputPerMTok: 10 };

let fake: FakeUpstream;
let proxy: RunningProxy;
let dir: string;
let usageLog: string;
const pricing = createPricing();
/** A case's tight budget, nano-USD: `FULL_STREAMS` answers of 10x the cap at its model's output price. */
const limitOf = ({ billed }: Case) =>
  (FULL_STREAMS *
    IGNORED_CAP *
    10 *
    (billed.startsWith('llama') ? PRICES.outputPerMTok * 1e6 : pricing.get(billed).outputMicro)) /
  1000;
const adminKey = newApiKey();
const tenants = ['honest', ...CASES.map((_, i) => `tight-${i}`)];
const keys = new Map(tenants.map((tenant) => [tenant, newApiKey()]));
const tokenizers = new Map<ProviderTokenizer['name'], ProviderTokenizer>();
/** Each text repeated until it holds the honest cap's tokens in each tokenizer. */
const textsOf = new Map<string, string>();

beforeAll(async () => {
  for (const name of ['o200k', 'claude', 'gemini', 'llama3'] as const)
    tokenizers.set(name, await providerTokenizer(name));
  for (const [name, tokenizer] of tokenizers)
    for (const text of TEXTS) textsOf.set(`${name}:${text}`, textOfTokens(tokenizer, STREAM_TEXTS[text]!, HONEST_CAP));
  dir = mkdtempSync(path.join(tmpdir(), 'tollgate-stream-kinds-'));
  usageLog = path.join(dir, 'usage.jsonl');
  fake = await startCapIgnoringUpstream();
  proxy = await startProxy({
    usageLog,
    adminKeySha256: sha256Hex(adminKey),
    ...everyProviderKind(fake.url, PRICES),
    tiers: { pro: { models: ['*'] } },
    tenants: Object.fromEntries(
      tenants.map((tenant, i) => [
        tenant,
        { tier: 'pro', budget: { usd: i === 0 ? 1000 : limitOf(CASES[i - 1]!) / 1e9, period: 'day' as const } },
      ]),
    ),
    keys: tenants.map((tenant) => ({ id: `${tenant}-key`, sha256: sha256Hex(keys.get(tenant)!), tenant })),
  });
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await fake?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function recordsOf(tenant: string) {
  await fake.settled();
  await proxy.app.flushUsage();
  return readUsageLog(usageLog).filter((record) => record.tenantId === tenant && record.status === 200);
}

describe.each(CASES.map((testCase, index) => ({ ...testCase, index })))('$label', (testCase) => {
  const tokenizer = () => tokenizers.get(testCase.tokenizer)!;
  const call = (tenant: string, maxTokens: number) => ({
    url: proxy.url,
    key: keys.get(tenant)!,
    api: testCase.api,
    model: testCase.model,
    maxTokens,
  });

  it.each(TEXTS)(
    'an answer of exactly max_tokens of %s, as its provider counts it, is never cut: billed what the upstream reports',
    async (text) => {
      Object.assign(fake.options, { honourCap: true, outputTokens: 5000, tokensPerEvent: 1 });
      fake.options.tokens = { tokenizer: tokenizer(), text: textsOf.get(`${testCase.tokenizer}:${text}`)! };
      const before = (await recordsOf('honest')).length;
      const outcome = await streamThroughSdk(call('honest', HONEST_CAP));
      expect({ text, outcome }).toMatchObject({ text, outcome: { ending: CAP_ENDINGS[testCase.api] } });
      // The upstream's connection closed: finished, or aborted by a cut.
      const last = fake.calls.at(-1)!;
      const upstream = await waitFor(() => (last.finished || last.aborted ? last : undefined), 'the upstream call');
      expect({ text, aborted: upstream.aborted, finished: upstream.finished, cap: upstream.cap }).toEqual({
        text,
        aborted: false,
        finished: true,
        cap: HONEST_CAP,
      });
      const record = await waitFor(async () => (await recordsOf('honest'))[before], 'the record');
      expect({ text, ...record }).toMatchObject({
        text,
        model: testCase.billed,
        usageSource: 'provider',
        outputTokens: HONEST_CAP,
        aborted: false,
      });
      expect({ text, outputOverCap: record.outputOverCap }).toEqual({ text, outputOverCap: undefined });
    },
    60_000,
  );

  it('an upstream that ignores its cap, answering every text in turn, leaves a budget at or under its limit', async () => {
    Object.assign(fake.options, { honourCap: false, outputTokens: IGNORED_CAP * 10, tokensPerEvent: 1 });
    const tenant = `tight-${testCase.index}`;
    const streams = await streamUntilRefused((n) => {
      const text = TEXTS[n % TEXTS.length]!;
      fake.options.tokens = { tokenizer: tokenizer(), text: textsOf.get(`${testCase.tokenizer}:${text}`)! };
      return call(tenant, IGNORED_CAP);
    });
    await fake.settled();
    const view = await waitFor(async () => {
      const response = await fetch(`${proxy.url}/admin/budgets/tenant/${tenant}`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      const { budgets } = (await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] };
      return budgets[0]!.reservedNanoUsd === 0 ? budgets[0]! : undefined;
    }, 'the budget to settle');
    expect(streams.length).toBeGreaterThan(1);
    expect(view.spentNanoUsd).toBeLessThanOrEqual(limitOf(testCase));
    expect(view.spentNanoUsd).toBeGreaterThan(limitOf(testCase) / 2);
    const records = await recordsOf(tenant);
    expect(records).toHaveLength(streams.length);
    expect(view.spentNanoUsd).toBe(records.reduce((sum, record) => sum + Math.ceil(record.costNanoUsd), 0));
  }, 120_000);
});
