// The hard stop end to end: an upstream that ignores the output cap is cut where its grant is certainly passed (the cap
// for OpenAI models) or where its budget refuses to hold more (Claude, whose count is not ours), never past its limit;
// a JSON call too, asked upstream as a stream.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import { SseDecoder } from '@tollgate/providers/sse';
import { startCapIgnoringUpstream } from './helpers/cap-ignoring-upstream.js';
import type { FakeApi, FakeCall, FakeUpstream } from './helpers/cap-ignoring-upstream.js';
import { newApiKey, readUsageLog, redisTestStores, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const CAP = 100;
const LIMIT_USD = 0.01;
const LIMIT_NANO = LIMIT_USD * 1e9;
type CappedApi = Exclude<FakeApi, 'gemini.generate'>;
const MODEL: Record<CappedApi, string> = {
  'openai.chat': 'gpt-4o',
  'openai.responses': 'gpt-4o',
  'anthropic.messages': 'claude-haiku-4-5',
};
const APIS: readonly CappedApi[] = ['openai.chat', 'openai.responses', 'anthropic.messages'];
const PROMPT = 'Tell me a long story';

/** The provider's own tokenizer: cut at the grant. Claude's count is not ours: its hold follows it until refused. */
const own = (api: CappedApi) => api !== 'anthropic.messages';

/** What the measured overshoots were, printed once at the end. */
const measured: string[] = [];

/** What a client got from one call: the answer text and how it said it ended, or a budget refusal. */
type Outcome =
  { refused: true } | { refused: false; text: string; ending: string | null | undefined; outputTokens?: number };

const tenants = [
  ...APIS.flatMap((api) => [`${api}-stream`, `${api}-json`, `${api}-concurrent`]),
  'openai.chat-stream-usage',
  'compliant',
  'split',
] as const;
type Tenant = (typeof tenants)[number];

interface Harness {
  proxy: RunningProxy;
  fake: FakeUpstream;
  openai(tenant: Tenant): OpenAI;
  anthropic(tenant: Tenant): Anthropic;
  /** POSTs `body` to the proxy as is; the answer's text. */
  post(tenant: Tenant, api: FakeApi, body: Record<string, unknown>): Promise<string>;
  /** The records of the calls that ran (budget refusals leave a record of their own, at no cost). */
  records(tenant: Tenant): Promise<UsageRecord[]>;
  /** The tenant's budget once nothing is reserved any more. */
  settledBudget(tenant: Tenant): Promise<{ spentNanoUsd: number; limitNanoUsd: number }>;
  close(): Promise<void>;
}

async function startHarness(stores: TollgateStores | undefined): Promise<Harness> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-hard-stop-'));
  const usageLog = path.join(dir, 'usage.jsonl');
  const adminKey = newApiKey();
  const keys = new Map(tenants.map((tenant) => [tenant, newApiKey()]));
  const fake = await startCapIgnoringUpstream();
  const proxy = await startProxy(
    {
      usageLog,
      adminKeySha256: sha256Hex(adminKey),
      upstreams: { openai: { baseUrl: `${fake.url}/v1` }, anthropic: { baseUrl: fake.url } },
      tiers: { pro: { requestsPerMinute: 10_000, tokensPerMinute: 100_000_000, models: ['*'] } },
      tenants: Object.fromEntries(
        tenants.map((tenant) => {
          const usd = tenant === 'compliant' || tenant === 'split' ? 10 : LIMIT_USD;
          return [tenant, { tier: 'pro', budget: { usd, period: 'day' as const } }];
        }),
      ),
      keys: tenants.map((tenant) => ({
        id: `${tenant}-key`,
        sha256: sha256Hex(keys.get(tenant)!),
        tenant,
        scopes: ['chat'],
      })),
    },
    stores ? { stores } : {},
  );
  const budgetOf = async (tenant: Tenant) => {
    const response = await fetch(`${proxy.url}/admin/budgets/tenant/${encodeURIComponent(tenant)}`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    return (
      (await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number; limitNanoUsd: number }[] }
    ).budgets[0]!;
  };
  return {
    proxy,
    fake,
    openai: (tenant) => new OpenAI({ apiKey: keys.get(tenant)!, baseURL: `${proxy.url}/v1`, maxRetries: 0 }),
    anthropic: (tenant) => new Anthropic({ apiKey: keys.get(tenant)!, baseURL: proxy.url, maxRetries: 0 }),
    async post(tenant, api, body) {
      const route =
        api === 'openai.chat' ? '/v1/chat/completions' : api === 'openai.responses' ? '/v1/responses' : '/v1/messages';
      const headers = { authorization: `Bearer ${keys.get(tenant)!}`, 'content-type': 'application/json' };
      const response = await fetch(`${proxy.url}${route}`, { method: 'POST', headers, body: JSON.stringify(body) });
      expect(response.status).toBe(200);
      return response.text();
    },
    async records(tenant) {
      await proxy.app.flushUsage();
      return readUsageLog(usageLog).filter((record) => record.tenantId === tenant && record.status !== 429);
    },
    async settledBudget(tenant) {
      await fake.settled();
      return waitFor(async () => {
        const budget = await budgetOf(tenant);
        return budget.reservedNanoUsd === 0 ? budget : undefined;
      }, `the reservations of ${tenant} to settle`);
    },
    async close() {
      await proxy.close();
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs `call`; a budget refusal (429 insufficient_quota) is an outcome, any other failure fails the test.
 * A refusal by money only held by calls in flight says to retry: the call is retried, as a client would.
 */
async function refusedOr(call: () => Promise<Outcome>): Promise<Outcome> {
  for (;;) {
    try {
      return await call();
    } catch (error) {
      const status = (error as { status?: unknown }).status;
      const message = String((error as Error).message);
      if (status === 429 && message.includes('Budget exhausted')) return { refused: true };
      if (status !== 429 || !message.includes('held by requests in flight')) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** One call through the official SDK of its API; streams alternate between the SDKs' iterator and their stream helper. */
function callThroughSdk(
  harness: Harness,
  tenant: Tenant,
  api: CappedApi,
  stream: boolean,
  round: number,
  includeUsage = false,
): Promise<Outcome> {
  const model = MODEL[api];
  return refusedOr(async () => {
    if (api === 'openai.chat') {
      const client = harness.openai(tenant);
      const messages = [{ role: 'user' as const, content: PROMPT }];
      if (!stream) {
        const completion = await client.chat.completions.create({ model, messages, max_tokens: CAP });
        const choice = completion.choices[0]!;
        return {
          refused: false,
          text: choice.message.content ?? '',
          ending: choice.finish_reason,
          outputTokens: completion.usage?.completion_tokens,
        };
      }
      const streamOptions = includeUsage ? { stream_options: { include_usage: true } } : {};
      if (round % 2 === 1) {
        const final = await client.chat.completions
          .stream({ model, messages, max_tokens: CAP, ...streamOptions })
          .finalChatCompletion();
        const choice = final.choices[0]!;
        return {
          refused: false,
          text: choice.message.content ?? '',
          ending: choice.finish_reason,
          outputTokens: final.usage?.completion_tokens,
        };
      }
      const chunks = await client.chat.completions.create({
        model,
        messages,
        max_tokens: CAP,
        stream: true,
        ...streamOptions,
      });
      let text = '';
      let ending: string | null | undefined;
      let outputTokens: number | undefined;
      for await (const chunk of chunks) {
        for (const choice of chunk.choices) {
          text += choice.delta.content ?? '';
          if (choice.finish_reason) ending = choice.finish_reason;
        }
        if (chunk.usage) outputTokens = chunk.usage.completion_tokens;
      }
      return { refused: false, text, ending, outputTokens };
    }
    if (api === 'openai.responses') {
      const client = harness.openai(tenant);
      const response = stream
        ? await client.responses.stream({ model, input: PROMPT, max_output_tokens: CAP }).finalResponse()
        : await client.responses.create({ model, input: PROMPT, max_output_tokens: CAP });
      const ending =
        response.status === 'incomplete' ? `incomplete:${response.incomplete_details?.reason}` : response.status;
      return { refused: false, text: response.output_text, ending, outputTokens: response.usage?.output_tokens };
    }
    const client = harness.anthropic(tenant);
    const params = { model, max_tokens: CAP, messages: [{ role: 'user' as const, content: PROMPT }] };
    const message = stream ? await client.messages.stream(params).finalMessage() : await client.messages.create(params);
    const text = message.content.map((block) => (block.type === 'text' ? block.text : '')).join('');
    return { refused: false, text, ending: message.stop_reason, outputTokens: message.usage.output_tokens };
  });
}

const STREAM_ENDING: Record<CappedApi, string> = {
  'openai.chat': 'length',
  'openai.responses': 'incomplete:max_output_tokens',
  'anthropic.messages': 'max_tokens',
};
const words = (text: string) => (text === '' ? 0 : text.split(' ').length);

/** Calls until the budget refuses (a few rounds of `parallel` calls); returns the answers and the upstream calls made. */
async function runUntilRefused(
  harness: Harness,
  tenant: Tenant,
  api: CappedApi,
  stream: boolean,
  parallel: number,
  includeUsage = false,
  settleEachRound = false,
) {
  const firstCall = harness.fake.calls.length;
  const answers: Extract<Outcome, { refused: false }>[] = [];
  for (let round = 0; round < 40; round++) {
    const calls = Array.from({ length: parallel }, (_, i) =>
      callThroughSdk(harness, tenant, api, stream, round * parallel + i, includeUsage),
    );
    const outcomes = await Promise.all(calls);
    for (const outcome of outcomes) if (!outcome.refused) answers.push(outcome);
    if (outcomes.some((outcome) => outcome.refused)) {
      await harness.fake.settled();
      return { answers, calls: harness.fake.calls.slice(firstCall) };
    }
    // A call whose settle has not landed is still in flight for the ledger (Redis settles go out in batches a few ms
    // after the answer): waiting for it makes the calls one after another for the budget too, not only for the client.
    if (settleEachRound) await harness.settledBudget(tenant);
  }
  throw new Error(`the budget of ${tenant} never refused`);
}

/** The budget spent exactly what the records cost, and at most `overshoot` past its limit. */
async function expectBudgetHeld(
  harness: Harness,
  tenant: Tenant,
  records: UsageRecord[],
  overshoot: number,
  label: string,
): Promise<void> {
  const budget = await harness.settledBudget(tenant);
  expect(budget.limitNanoUsd).toBe(LIMIT_NANO);
  expect(budget.spentNanoUsd).toBe(records.reduce((sum, record) => sum + record.costNanoUsd, 0));
  expect(budget.spentNanoUsd - LIMIT_NANO).toBeLessThanOrEqual(overshoot);
  measured.push(
    `${label}: ${records.length} calls, spent ${budget.spentNanoUsd - LIMIT_NANO} nano-USD past the limit (bound ${overshoot})`,
  );
}

/**
 * Every record of a cut stream: flagged, billed what was held for it. With the provider's own tokenizer that is what
 * went out, within an event of `perEvent` tokens of the grant (the event that passed it neither went out nor is
 * billed); otherwise the stream ran on under extensions of its hold.
 */
function expectCutRecords(
  api: CappedApi,
  records: UsageRecord[],
  calls: FakeCall[],
  label: string,
  perEvent = 1,
): void {
  let worst = 0;
  // Concurrent streams end in any order: each record's grant is one of the calls' caps (the last ones clamped).
  const caps = calls.map((call) => call.cap!);
  for (const record of records) {
    expect(record).toMatchObject({
      status: 200,
      stream: true,
      aborted: false,
      outputOverCap: true,
      usageSource: 'counted',
      model: MODEL[api],
    });
    const billed = record.outputTokens;
    if (own(api)) expect(caps.some((cap) => billed <= cap && billed > cap - perEvent)).toBe(true);
    else expect(record.outputTokens).toBeGreaterThan(Math.min(...caps));
    worst = Math.max(worst, record.outputTokens - CAP);
  }
  measured.push(`${label}: ${records.length} streams cut, billed at most ${worst} tokens past the cap of ${CAP}`);
}

function describeHardStop(kind: string, makeStores: () => { stores?: TollgateStores; release(): Promise<void> }) {
  describe(`hard stop on ${kind} stores`, () => {
    let harness: Harness;
    let release: () => Promise<void>;

    beforeAll(async () => {
      const made = makeStores();
      release = made.release;
      harness = await startHarness(made.stores);
    });

    afterAll(async () => {
      await harness.close();
      await release();
    });

    describe.each(APIS)('%s', (api) => {
      it("cuts every stream where its grant is certainly passed or its hold is refused, with the API's own ending, aborts the upstream, keeps the budget within its limit", async () => {
        harness.fake.options.tokensPerEvent = 1;
        harness.fake.options.outputTokens = 2000;
        const tenant = `${api}-stream` as Tenant;
        const { answers, calls } = await runUntilRefused(harness, tenant, api, true, 1);
        // A Claude stream runs on past its cap while the budget holds more: the first may take all of it.
        expect(answers.length).toBeGreaterThanOrEqual(own(api) ? 3 : 1);
        expect(calls).toHaveLength(answers.length);
        for (const [i, answer] of answers.entries()) {
          expect(answer.ending).toBe(STREAM_ENDING[api]);
          expect(words(answer.text)).toBeGreaterThan(0);
          if (own(api)) expect(words(answer.text)).toBeLessThanOrEqual(calls[i]!.cap!);
          expect(calls[i]).toMatchObject({ stream: true, aborted: true, finished: false });
          expect(calls[i]!.eventsWritten).toBeLessThan(2000);
        }
        const records = await harness.records(tenant);
        expect(records).toHaveLength(answers.length);
        for (const [i, record] of records.entries()) {
          if (answers[i]!.outputTokens !== undefined) expect(answers[i]!.outputTokens).toBe(record.outputTokens);
        }
        expectCutRecords(api, records, calls, `${kind} ${api} stream`);
        measured.push(
          `${kind} ${api} stream: the upstream wrote at most ${Math.max(...calls.map((call) => call.eventsWritten))} of 2000 events`,
        );
        await expectBudgetHeld(harness, tenant, records, 0, `${kind} ${api} stream`);
      });

      it('holds a JSON answer over its cap as a stream is (asked upstream as one), within the budget until it refuses', async () => {
        harness.fake.options.tokensPerEvent = 1;
        harness.fake.options.outputTokens = 300;
        const tenant = `${api}-json` as Tenant;
        const { answers, calls } = await runUntilRefused(harness, tenant, api, false, 1, false, true);
        const records = await harness.records(tenant);
        expect(records).toHaveLength(answers.length);
        const caps = calls.map((call) => call.cap!);
        for (const [i, record] of records.entries()) {
          const answer = answers[i]!;
          // The upstream was asked for a stream; the client got its JSON answer, through its SDK.
          expect(calls[i]!.stream).toBe(true);
          expect(record).toMatchObject({ status: 200, stream: false, outputOverCap: true, model: MODEL[api] });
          expect(answer.outputTokens).toBe(record.outputTokens);
          if (own(api)) {
            // Cut at its grant, with the API's own ending, billed the grant; the upstream stopped.
            expect(answer.ending).toBe(STREAM_ENDING[api]);
            expect(record.usageSource).toBe('counted');
            expect(caps).toContain(record.outputTokens);
            expect(words(answer.text)).toBeLessThanOrEqual(calls[i]!.cap!);
            expect(calls[i]).toMatchObject({ aborted: true, finished: false });
          } else {
            // Claude's count is not ours: the hold follows the answer, whole while the budget holds it, else cut.
            expect([STREAM_ENDING[api], 'end_turn']).toContain(answer.ending);
            if (answer.ending === 'end_turn')
              expect(record).toMatchObject({ usageSource: 'provider', outputTokens: 300 });
          }
        }
        await expectBudgetHeld(harness, tenant, records, 0, `${kind} ${api} JSON`);
      });

      it('holds the budget within its limit when streams run concurrently', async () => {
        const parallel = 4;
        const perEvent = 3;
        harness.fake.options.tokensPerEvent = perEvent;
        harness.fake.options.outputTokens = 2000;
        const tenant = `${api}-concurrent` as Tenant;
        const { answers, calls } = await runUntilRefused(harness, tenant, api, true, parallel);
        for (const answer of answers) {
          expect(answer.ending).toBe(STREAM_ENDING[api]);
          if (own(api)) expect(words(answer.text)).toBeLessThanOrEqual(CAP);
        }
        expect(calls.every((call) => call.aborted)).toBe(true);
        const records = await harness.records(tenant);
        expect(records).toHaveLength(answers.length);
        expectCutRecords(api, records, calls, `${kind} ${api} concurrent`, perEvent);
        await expectBudgetHeld(harness, tenant, records, 0, `${kind} ${api} concurrent x${parallel}`);
      });
    });

    it('openai.chat with stream_options.include_usage: the ending carries the usage chunk with the counted output', async () => {
      const perEvent = 7;
      harness.fake.options.tokensPerEvent = perEvent;
      harness.fake.options.outputTokens = 2000;
      const tenant: Tenant = 'openai.chat-stream-usage';
      const { answers, calls } = await runUntilRefused(harness, tenant, 'openai.chat', true, 1, true);
      const records = await harness.records(tenant);
      for (const [i, answer] of answers.entries()) {
        expect(answer.ending).toBe('length');
        expect(answer.outputTokens).toBe(records[i]!.outputTokens);
        // Billed what went out: the event that passed the grant (of `perEvent` words) neither went out nor is billed.
        expect(words(answer.text)).toBeLessThanOrEqual(records[i]!.outputTokens);
        expect(words(answer.text)).toBeGreaterThan(records[i]!.outputTokens - perEvent);
      }
      expectCutRecords('openai.chat', records, calls, `${kind} openai.chat stream with usage`, perEvent);
      await expectBudgetHeld(harness, tenant, records, 0, `${kind} openai.chat stream with usage`);
    });

    it("an event split across reads is sent once: what passes is the upstream's bytes up to the cut, then the ending", async () => {
      Object.assign(harness.fake.options, { splitEvents: true, tokensPerEvent: 1, outputTokens: 2000 });
      try {
        const messages = [{ role: 'user', content: PROMPT }];
        for (const [api, body, ending] of [
          [
            'openai.chat',
            { model: 'gpt-4o', messages, max_tokens: CAP, stream: true, stream_options: { include_usage: true } },
            ['', '', ''],
          ],
          ['openai.chat', { model: 'gpt-4o', messages, max_tokens: CAP, stream: true }, ['', '']],
          [
            'openai.responses',
            { model: 'gpt-4o', input: PROMPT, max_output_tokens: CAP, stream: true },
            ['response.incomplete'],
          ],
          // Claude's count is not ours: with room in its budget its hold follows it to the upstream's own end (its usage
          // event then carries the cost).
          [
            'anthropic.messages',
            { model: MODEL['anthropic.messages'], messages, max_tokens: CAP, stream: true },
            ['message_delta', 'message_stop'],
          ],
        ] as const) {
          const received = await harness.post('split', api, body);
          const call = harness.fake.calls.at(-1)!;
          await harness.fake.settled();
          expect(call.aborted).toBe(api !== 'anthropic.messages');
          const decoder = new SseDecoder();
          const blocks = decoder.push(Buffer.from(received));
          expect(decoder.end()).toBeUndefined();
          // The upstream's own events, each whole and once, then only the ending.
          let offset = 0;
          let passed = 0;
          while (passed < blocks.length && call.written.startsWith(blocks[passed]!.raw.toString(), offset))
            offset += blocks[passed++]!.raw.length;
          expect(blocks.slice(passed).map((block) => block.event)).toEqual(ending);
          for (const block of blocks)
            if (block.data !== '[DONE]') expect(() => JSON.parse(block.data) as unknown).not.toThrow();
          expect(passed).toBeGreaterThan(CAP * 0.8);
        }
      } finally {
        harness.fake.options.splitEvents = false;
      }
    });

    describe('a compliant upstream (it honours the cap) is never cut, for OpenAI models', () => {
      it.each([1, 7, 100, 513])("the provider's own ending reaches the client unchanged (cap %i)", async (cap) => {
        harness.fake.options.honourCap = true;
        harness.fake.options.outputTokens = 2000;
        try {
          for (const perEvent of [1, 3]) {
            harness.fake.options.tokensPerEvent = perEvent;
            const messages = [{ role: 'user', content: PROMPT }];
            for (const [api, body] of [
              [
                'openai.chat',
                { model: 'gpt-4o', messages, max_tokens: cap, stream: true, stream_options: { include_usage: true } },
              ],
              ['openai.chat', { model: 'gpt-4o-mini', messages, max_completion_tokens: cap, stream: true }],
              ['openai.responses', { model: 'gpt-4o', input: PROMPT, max_output_tokens: cap, stream: true }],
            ] as const) {
              const received = await harness.post('compliant', api, body);
              const call = harness.fake.calls.at(-1)!;
              await harness.fake.settled();
              expect(call).toMatchObject({ cap, aborted: false, finished: true });
              // Without include_usage the meter asked for the usage chunk itself and took it out again.
              const sent =
                'stream_options' in body
                  ? call.written
                  : call.written.replace(/data: \{[^\n]*"choices":\[\],"usage":\{[^\n]*\n\n/, '');
              // As the provider sent it, but for the call's cost, written into the usage event the client gets.
              const costs = received.match(/,"cost_usd":[\d.]+/g) ?? [];
              expect(received.replace(/,"cost_usd":[\d.]+/g, '')).toBe(sent);
              expect(costs).toHaveLength(api === 'openai.responses' || 'stream_options' in body ? 1 : 0);
            }
          }
          const records = await harness.records('compliant');
          for (const record of records.slice(-6)) {
            expect(record).toMatchObject({ status: 200, stream: true, usageSource: 'provider', outputTokens: cap });
            expect(record.outputOverCap).toBeUndefined();
          }
        } finally {
          harness.fake.options.honourCap = false;
        }
      });
    });
  });
}

describeHardStop('memory', () => ({ release: async () => undefined }));

describeHardStop('redis', () => redisTestStores('hard-stop'));

afterAll(() => {
  // The measured overshoots, for the record of this change.
  if (process.env.TOLLGATE_PRINT_MEASURED) console.log(measured.join('\n'));
});
