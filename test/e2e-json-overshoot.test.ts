// JSON calls in flight against a small budget, from an upstream that ignores the output cap: the budget ends at or under
// its limit (a JSON call is served from the upstream's stream and held to its grant as a stream is), on memory, on Redis
// and on Redis with blocks; every answer is a valid JSON answer of its API, cut where it was; an honest upstream's JSON
// answer is the one it sent, billed its reported usage.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createMemoryStores, createPricing } from '@tollgate/core';
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { everyProviderKind, startCapIgnoringUpstream } from './helpers/cap-ignoring-upstream.js';
import type { FakeApi, FakeUpstream } from './helpers/cap-ignoring-upstream.js';
import { createRedisStores } from '@tollgate/redis';
import {
  deleteRedisPrefix,
  newApiKey,
  readUsageLog,
  REDIS_URL,
  sha256Hex,
  startProxy,
  waitFor,
} from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const CAP = 20;
/** The case: $0.01 a day, which ten cap-ignoring JSON answers of 2,000 tokens passed 20 times over. */
const LIMIT_USD = 0.01;
const LIMIT_NANO = Math.round(LIMIT_USD * 1e9);
const PROMPT = 'Tell me a long story about a cat.';
const PRICES = { inputPerMTok: 2.5, outputPerMTok: 10 };

type Json = Record<string, unknown>;

/** One way a client meets a model: the API it calls and the model it names (see `everyProviderKind`). */
interface JsonCase {
  label: string;
  api: FakeApi;
  model: string;
  /** The gateway's path for it, when not its API's own (Mistral's chat route). */
  route?: string;
}

const CASES: JsonCase[] = [
  { label: 'OpenAI chat', api: 'openai.chat', model: 'gpt-4o' },
  { label: 'OpenAI Responses', api: 'openai.responses', model: 'gpt-4o' },
  { label: 'Anthropic Messages', api: 'anthropic.messages', model: 'claude-haiku-4-5' },
  { label: 'Gemini', api: 'gemini.generate', model: 'gemini-2.5-flash' },
  { label: 'Mistral', api: 'openai.chat', model: 'mistral-large-latest', route: '/mistral/v1/chat/completions' },
  { label: 'OpenAI-compatible (self-hosted)', api: 'openai.chat', model: 'llama-3.1-8b' },
  { label: 'Claude through a translating model group', api: 'openai.chat', model: 'claude-via-chat' },
];
const CONCURRENCY = [10, 100];
/** An upstream that honours the cap, one of each kind, and the config model each serves. */
const HONEST: { api: FakeApi; model: string; upstream: string; kind: string; base: string }[] = [
  { api: 'openai.chat', model: 'honest-gpt', upstream: 'honest-openai', kind: 'openai', base: '/v1' },
  { api: 'openai.responses', model: 'honest-gpt', upstream: 'honest-openai', kind: 'openai', base: '/v1' },
  { api: 'anthropic.messages', model: 'honest-claude', upstream: 'honest-anthropic', kind: 'anthropic', base: '' },
  { api: 'gemini.generate', model: 'honest-gemini', upstream: 'honest-google', kind: 'gemini', base: '/v1beta' },
];
const tenantOf = (c: JsonCase, n: number) => `${c.label.replace(/[^a-z]+/gi, '-').toLowerCase()}-${n}`;
const TENANTS = [...CASES.flatMap((c) => CONCURRENCY.map((n) => tenantOf(c, n))), 'honest'];

/** The request a client of `api` sends for a JSON answer of at most `cap` tokens. */
function requestOf(api: FakeApi, model: string, cap: number): { path: string; body: Json } {
  const messages = [{ role: 'user', content: PROMPT }];
  if (api === 'openai.chat') return { path: '/v1/chat/completions', body: { model, messages, max_tokens: cap } };
  if (api === 'openai.responses')
    return { path: '/v1/responses', body: { model, input: PROMPT, max_output_tokens: cap } };
  if (api === 'anthropic.messages') return { path: '/v1/messages', body: { model, messages, max_tokens: cap } };
  return {
    path: `/v1beta/models/${model}:generateContent`,
    body: { contents: [{ role: 'user', parts: [{ text: PROMPT }] }], generationConfig: { maxOutputTokens: cap } },
  };
}

/** A JSON answer as its API shapes it: its text, how it says it ended, its output tokens and the cost on it. */
interface ReadAnswer {
  text: string;
  ending: string;
  outputTokens: number;
  costUsd: number;
}

/** Reads a JSON answer of `api`, checking the shape its SDKs rely on; throws when it is not one. */
function readAnswer(api: FakeApi, answer: Json): ReadAnswer {
  const usage = (answer.usage ?? answer.usageMetadata) as Json;
  if (api === 'openai.chat') {
    expect(answer).toMatchObject({ object: 'chat.completion', id: expect.any(String), model: expect.any(String) });
    const choice = (answer.choices as Json[])[0]!;
    const message = choice.message as Json;
    expect(message.role).toBe('assistant');
    return {
      text: message.content as string,
      ending: choice.finish_reason as string,
      outputTokens: usage.completion_tokens as number,
      costUsd: usage.cost_usd as number,
    };
  }
  if (api === 'openai.responses') {
    expect(answer).toMatchObject({ object: 'response', id: expect.any(String) });
    const item = (answer.output as Json[])[0]!;
    expect(item).toMatchObject({ type: 'message', role: 'assistant' });
    const part = (item.content as Json[])[0]!;
    expect(part.type).toBe('output_text');
    const details = answer.incomplete_details as Json | null;
    return {
      text: part.text as string,
      ending: answer.status === 'incomplete' ? `incomplete:${String(details?.reason)}` : String(answer.status),
      outputTokens: usage.output_tokens as number,
      costUsd: usage.cost_usd as number,
    };
  }
  if (api === 'anthropic.messages') {
    expect(answer).toMatchObject({ type: 'message', role: 'assistant', id: expect.any(String) });
    const block = (answer.content as Json[])[0]!;
    expect(block.type).toBe('text');
    return {
      text: block.text as string,
      ending: answer.stop_reason as string,
      outputTokens: usage.output_tokens as number,
      costUsd: usage.cost_usd as number,
    };
  }
  const candidate = (answer.candidates as Json[])[0]!;
  const parts = (candidate.content as Json).parts as Json[];
  return {
    text: parts.map((part) => part.text as string).join(''),
    ending: candidate.finishReason as string,
    outputTokens: usage.candidatesTokenCount as number,
    costUsd: usage.cost_usd as number,
  };
}

/** How each API says an answer stopped at its output cap. */
const CAP_ENDING: Record<FakeApi, string> = {
  'openai.chat': 'length',
  'openai.responses': 'incomplete:max_output_tokens',
  'anthropic.messages': 'max_tokens',
  'gemini.generate': 'MAX_TOKENS',
};

/** What one client got: a JSON answer (read), or a budget refusal. */
type Outcome = { answer: Json; cost: string | null } | 'refused';

interface Backend {
  name: string;
  open(): { stores: TollgateStores; release(): Promise<void> };
  layers: Pick<GatewayConfig, 'redis'>;
}

/** Redis stores on a prefix of the test's own, with a deadline a busy machine keeps (as the conformance suites'). */
function redisStores(name: string) {
  const prefix = `tg-test:${name}:${randomUUID()}:`;
  const stores = createRedisStores({ url: REDIS_URL, prefix, timeoutMs: 5_000 });
  return {
    stores,
    async release() {
      await stores.close();
      await deleteRedisPrefix(prefix);
    },
  };
}

const BACKENDS: Backend[] = [
  {
    name: 'memory',
    open() {
      const stores = createMemoryStores();
      return { stores, release: () => stores.close() };
    },
    layers: {},
  },
  { name: 'Redis without blocks', open: () => redisStores('json-overshoot'), layers: { redis: { blocks: false } } },
  // Blocks at their defaults, held a second so budgets can be read (startProxy's default).
  { name: 'Redis with blocks', open: () => redisStores('json-overshoot-blocks'), layers: {} },
];

describe.each(BACKENDS)('JSON calls in flight on $name', (backend) => {
  let upstream: FakeUpstream;
  let honest: FakeUpstream;
  let proxy: RunningProxy;
  let release: () => Promise<void>;
  let dir: string;
  let usageLog: string;
  const adminKey = newApiKey();
  const keys = new Map(TENANTS.map((tenant) => [tenant, newApiKey()]));

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-json-overshoot-'));
    usageLog = path.join(dir, 'usage.jsonl');
    // Every answer 2,000 tokens, whatever cap it was sent.
    upstream = await startCapIgnoringUpstream({ outputTokens: 2000, tokensPerEvent: 10 });
    honest = await startCapIgnoringUpstream({ outputTokens: 2000, tokensPerEvent: 4, honourCap: true });
    const owned = backend.open();
    release = owned.release;
    const kinds = everyProviderKind(upstream.url, PRICES);
    const config: GatewayConfig = {
      ...kinds,
      ...backend.layers,
      upstreams: {
        ...kinds.upstreams,
        mistral: { baseUrl: `${upstream.url}/v1`, api: 'mistral' },
        ...Object.fromEntries(HONEST.map((h) => [h.upstream, { baseUrl: `${honest.url}${h.base}`, api: h.kind }])),
      },
      models: {
        ...kinds.models,
        ...Object.fromEntries(HONEST.map((h) => [h.model, { provider: h.upstream, maxOutputTokens: 4096, ...PRICES }])),
      },
      usageLog,
      adminKeySha256: sha256Hex(adminKey),
      tiers: { pro: { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, models: ['*'] } },
      tenants: Object.fromEntries(
        TENANTS.map((tenant) => [
          tenant,
          { tier: 'pro', budget: { usd: tenant === 'honest' ? 10 : LIMIT_USD, period: 'day' as const } },
        ]),
      ),
      keys: TENANTS.map((tenant) => ({
        id: `${tenant}-key`,
        sha256: sha256Hex(keys.get(tenant)!),
        tenant,
        scopes: [],
      })),
    };
    proxy = await startProxy(config, { stores: owned.stores });
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await upstream?.close();
    await honest?.close();
    await release?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** One JSON call; a refusal by money held in flight is retried twice as the SDKs retry it (a 503 more); a spent budget ends it. */
  async function call(tenant: string, api: FakeApi, model: string, cap = CAP, path?: string): Promise<Outcome> {
    const { path: apiPath, body } = requestOf(api, model, cap);
    const route = path ?? apiPath;
    const headers = { authorization: `Bearer ${keys.get(tenant)!}`, 'content-type': 'application/json' };
    for (let attempt = 1; ; attempt++) {
      const response = await fetch(`${proxy.url}${route}`, { method: 'POST', headers, body: JSON.stringify(body) });
      const text = await response.text();
      if (response.status === 200) {
        expect(response.headers.get('content-type')).toMatch(/^application\/json/);
        return { answer: JSON.parse(text) as Json, cost: response.headers.get('x-tollgate-cost-usd') };
      }
      // A store deadline passed on a busy machine: the SDKs retry a 503, so does this client.
      if (response.status === 503 && attempt < 10) {
        await sleep(200);
        continue;
      }
      expect({ status: response.status, text }).toMatchObject({ status: 429, text: expect.stringContaining('quota') });
      if (response.headers.get('x-should-retry') !== 'true' || attempt >= 3) return 'refused';
      await sleep(50);
    }
  }

  async function recordsOf(tenant: string): Promise<UsageRecord[]> {
    await proxy.app.flushUsage();
    return readUsageLog(usageLog).filter((record) => record.tenantId === tenant && record.status === 200);
  }

  async function settledBudget(tenant: string): Promise<{ spentNanoUsd: number; limitNanoUsd: number }> {
    await upstream.settled();
    return waitFor(async () => {
      const response = await fetch(`${proxy.url}/admin/budgets/tenant/${tenant}`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      const view = (
        (await response.json()) as {
          budgets: { spentNanoUsd: number; reservedNanoUsd: number; limitNanoUsd: number }[];
        }
      ).budgets[0]!;
      return view.reservedNanoUsd === 0 ? view : undefined;
    }, `the budget of ${tenant} to settle`);
  }

  const runs = CASES.flatMap((c) => CONCURRENCY.map((n) => ({ ...c, n })));

  it.each(runs)(
    '$label: $n concurrent JSON calls end at or under a $0.01 budget, each a valid answer cut at its grant',
    async ({ label, api, model, route, n }) => {
      const tenant = tenantOf({ label, api, model }, n);
      const outcomes = await Promise.all(Array.from({ length: n }, () => call(tenant, api, model, CAP, route)));
      const answered = outcomes.filter((outcome) => outcome !== 'refused');
      expect(answered.length).toBeGreaterThan(0);
      const view = await settledBudget(tenant);
      const records = await recordsOf(tenant);
      expect(records).toHaveLength(answered.length);
      // The books balance to the nano-USD: what the budget spent is what the records billed.
      expect(view.limitNanoUsd).toBe(LIMIT_NANO);
      expect(view.spentNanoUsd).toBe(records.reduce((sum, record) => sum + record.costNanoUsd, 0));
      // The bound: at or under the limit, however many JSON calls were in flight.
      expect({ spent: view.spentNanoUsd, within: view.spentNanoUsd <= LIMIT_NANO }).toEqual({
        spent: view.spentNanoUsd,
        within: true,
      });
      for (const record of records) {
        expect(record).toMatchObject({ stream: false, outputOverCap: true, usageSource: 'counted' });
        expect(record.outputTokens).toBeLessThan(2000);
      }
      // Each answer is its API's JSON answer, stopped at its cap, and says what it was billed.
      const billed = new Set(records.map((record) => record.costNanoUsd));
      for (const outcome of answered) {
        const read = readAnswer(api, outcome.answer);
        expect(read.ending).toBe(CAP_ENDING[api]);
        expect(read.text.length).toBeGreaterThan(0);
        expect(Number(outcome.cost)).toBe(read.costUsd);
        expect(billed.has(Math.round(read.costUsd * 1e9))).toBe(true);
      }
      // The upstream was stopped, not read to its end.
      expect(upstream.calls.filter((c) => c.finished && c.model === model && !c.stream)).toEqual([]);
    },
    120_000,
  );

  it.each(HONEST)(
    'an honest $api upstream: the JSON answer is the one it sends, not cut, billed its reported usage',
    async ({ api, model }) => {
      const price = createPricing({ models: { [model]: { provider: 'openai', ...PRICES } } }).get(model);
      // Stopped at its cap by the upstream itself, and ended by itself well within it.
      for (const [cap, outputTokens] of [
        [CAP, 2000],
        [500, 37],
      ] as const) {
        honest.options.outputTokens = outputTokens;
        const outcome = await call('honest', api, model, cap);
        expect(outcome).not.toBe('refused');
        const { answer } = outcome as { answer: Json };
        const sent = honest.calls.at(-1)!;
        await honest.settled();
        expect(sent).toMatchObject({
          finished: true,
          aborted: false,
          usage: { outputTokens: Math.min(cap, outputTokens) },
        });
        // What the upstream answers as JSON to the same request, asked directly.
        const { path: direct, body } = requestOf(api, model, cap);
        const json = (await (
          await fetch(`${honest.url}${direct}`, { method: 'POST', body: JSON.stringify(body) })
        ).json()) as Json;
        const { costUsd, ...got } = readAnswer(api, answer);
        const { costUsd: none, ...expected } = readAnswer(api, json);
        expect(none).toBeUndefined();
        expect(got).toEqual(expected);
        const record = (await recordsOf('honest')).at(-1)!;
        expect(record).toMatchObject({
          usageSource: 'provider',
          stream: false,
          outputTokens: Math.min(cap, outputTokens),
        });
        expect(record.outputOverCap).toBeUndefined();
        const tokens = { ...sent.usage, cachedInputTokens: 0, cacheWriteTokens: 0, reasoningTokens: 0 };
        expect(record.costNanoUsd).toBe(costNanoUsd(tokens, price));
        expect(Math.round(costUsd * 1e9)).toBe(record.costNanoUsd);
      }
    },
    60_000,
  );
});
