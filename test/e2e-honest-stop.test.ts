// The hard stop never cuts an upstream that honours its cap: each provider's own kind of tokenizer, every API, streamed and JSON.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { UsageRecord } from '@tollgate/core';
import { everyProviderKind, PROVIDER_KINDS, startCapIgnoringUpstream } from './helpers/cap-ignoring-upstream.js';
import type { FakeApi, FakeUpstream } from './helpers/cap-ignoring-upstream.js';
import { providerTokenizer, SAMPLE_TEXTS, textOfTokens } from './helpers/provider-tokenizers.js';
import type { ProviderCase, ProviderTokenizer } from './helpers/provider-tokenizers.js';
import { newApiKey, readUsageLog, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

type Case = ProviderCase<FakeApi>;
const CASES = PROVIDER_KINDS;
const TEXTS = Object.keys(SAMPLE_TEXTS) as (keyof typeof SAMPLE_TEXTS)[];
const CAPS = [300, 1000];

/** How each API says an answer stopped at its cap, and by itself. */
const ENDINGS: Record<FakeApi, { cap: string; natural: string }> = {
  'openai.chat': { cap: 'length', natural: 'stop' },
  'openai.responses': { cap: 'incomplete', natural: 'completed' },
  'anthropic.messages': { cap: 'max_tokens', natural: 'end_turn' },
  'gemini.generate': { cap: 'MAX_TOKENS', natural: 'STOP' },
};

let fake: FakeUpstream;
let proxy: RunningProxy;
let dir: string;
let usageLog: string;
const key = newApiKey();
const tokenizers = new Map<ProviderTokenizer['name'], ProviderTokenizer>();

beforeAll(async () => {
  for (const name of ['o200k', 'claude', 'gemini', 'llama3'] as const)
    tokenizers.set(name, await providerTokenizer(name));
  dir = mkdtempSync(path.join(tmpdir(), 'tollgate-honest-'));
  usageLog = path.join(dir, 'usage.jsonl');
  fake = await startCapIgnoringUpstream({ honourCap: true, outputTokens: 5000 });
  proxy = await startProxy({
    usageLog,
    ...everyProviderKind(fake.url, { inputPerMTok: 0.1, outputPerMTok: 0.2 }),
    tiers: { pro: { models: ['*'] } },
    tenants: { acme: { tier: 'pro', budget: { usd: 1000, period: 'day' } } },
    keys: [{ id: 'acme-key', sha256: sha256Hex(key), tenant: 'acme' }],
  });
  // Four reference tokenizers (test oracles) load here: about 20 s alone, past 60 s on a loaded two-core machine.
}, 300_000);

afterAll(async () => {
  await proxy?.close();
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The request body of `api` asking `model` for at most `cap` tokens. */
function requestOf(
  api: FakeApi,
  model: string,
  cap: number,
  stream: boolean,
): { route: string; body: Record<string, unknown> } {
  const messages = [{ role: 'user', content: 'Write something long.' }];
  if (api === 'openai.chat') {
    const usage = stream ? { stream_options: { include_usage: true } } : {};
    return { route: '/v1/chat/completions', body: { model, messages, max_tokens: cap, stream, ...usage } };
  }
  if (api === 'openai.responses')
    return { route: '/v1/responses', body: { model, input: 'Write something long.', max_output_tokens: cap, stream } };
  if (api === 'anthropic.messages')
    return { route: '/v1/messages', body: { model, messages, max_tokens: cap, stream } };
  const method = stream ? 'streamGenerateContent?alt=sse' : 'generateContent';
  const contents = [{ role: 'user', parts: [{ text: 'Write something long.' }] }];
  return { route: `/v1beta/models/${model}:${method}`, body: { contents, generationConfig: { maxOutputTokens: cap } } };
}

/** A field of parsed JSON, by path; undefined where the path does not lead anywhere. */
function at(value: unknown, ...path: (string | number)[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}

/** How the answer said it ended, read from its JSON body or its stream's events (after any translation). */
function endingOf(api: FakeApi, text: string, stream: boolean): unknown {
  const objects: unknown[] = stream
    ? text
        .split('\n')
        .filter((line) => line.startsWith('data: ') && line !== 'data: [DONE]')
        .map((line) => JSON.parse(line.slice(6)) as unknown)
    : [JSON.parse(text) as unknown];
  let ending: unknown;
  for (const object of objects) {
    if (api === 'openai.chat') ending = at(object, 'choices', 0, 'finish_reason') ?? ending;
    else if (api === 'openai.responses') {
      const status = at(object, 'response', 'status') ?? at(object, 'status');
      if (status !== 'in_progress') ending = status ?? ending;
    } else if (api === 'anthropic.messages')
      ending = at(object, 'delta', 'stop_reason') ?? at(object, 'stop_reason') ?? ending;
    else ending = at(object, 'candidates', 0, 'finishReason') ?? ending;
  }
  return ending;
}

async function call(
  testCase: Case,
  cap: number,
  stream: boolean,
  requestId: string,
): Promise<{ text: string; record: UsageRecord }> {
  const { route, body } = requestOf(testCase.api, testCase.model, cap, stream);
  const response = await fetch(`${proxy.url}${route}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': requestId },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  expect({ status: response.status, text: response.status === 200 ? '' : text.slice(0, 300) }).toEqual({
    status: 200,
    text: '',
  });
  await fake.settled();
  await proxy.app.flushUsage();
  const record = await waitFor(
    () => readUsageLog(usageLog).find((found) => found.requestId === requestId),
    `the record of ${requestId}`,
  );
  return { text, record };
}

describe.each(CASES)('$label', (testCase) => {
  it.each(TEXTS)(
    'an answer of exactly max_tokens (300 and 1,000) of %s text, streamed and JSON, is never cut: billed what the upstream reports',
    async (kind) => {
      const tokenizer = tokenizers.get(testCase.tokenizer)!;
      fake.options.tokens = { tokenizer, text: textOfTokens(tokenizer, SAMPLE_TEXTS[kind], 1200) };
      fake.options.tokensPerEvent = kind === 'code' ? 3 : 1;
      for (const cap of CAPS) {
        for (const stream of [true, false]) {
          const id = `${testCase.model}-${kind}-${cap}-${stream ? 'sse' : 'json'}`;
          const { text, record } = await call(testCase, cap, stream, id);
          const upstream = fake.calls.at(-1)!;
          expect({ id, aborted: upstream.aborted, finished: upstream.finished, cap: upstream.cap }).toEqual({
            id,
            aborted: false,
            finished: true,
            cap,
          });
          expect({ id, ending: endingOf(testCase.api, text, stream) }).toEqual({
            id,
            ending: ENDINGS[testCase.api].cap,
          });
          expect(record).toMatchObject({
            requestId: id,
            status: 200,
            usageSource: 'provider',
            outputTokens: cap,
            aborted: false,
          });
          expect({ id, outputOverCap: record.outputOverCap }).toEqual({ id, outputOverCap: undefined });
        }
      }
    },
  );

  it('an answer that ends by itself below its cap arrives with its own ending, billed its own count', async () => {
    const tokenizer = tokenizers.get(testCase.tokenizer)!;
    // 35 tokens of prose under a cap of 40: the case a count scaled up by 1.25 used to cut at 32.
    const text = tokenizer.decode(tokenizer.encode(SAMPLE_TEXTS.prose).slice(0, 35));
    fake.options.tokens = { tokenizer, text };
    fake.options.tokensPerEvent = 1;
    for (const stream of [true, false]) {
      const id = `${testCase.model}-natural-${stream ? 'sse' : 'json'}`;
      const { text: answer, record } = await call(testCase, 40, stream, id);
      const tokens = tokenizer.encode(text).length;
      expect({ id, ending: endingOf(testCase.api, answer, stream) }).toEqual({
        id,
        ending: ENDINGS[testCase.api].natural,
      });
      expect(record).toMatchObject({ status: 200, usageSource: 'provider', outputTokens: tokens });
      expect(fake.calls.at(-1)).toMatchObject({ aborted: false, finished: true });
    }
  });
});
