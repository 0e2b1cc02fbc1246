// The response cache through the official SDKs: hits in either form for all three APIs, scopes, bypass, failures, accounting.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { UsageRecord } from '@tollgate/core';
import { caught, newApiKey, readUsageLog, sha256Hex, startMockUpstream, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningMock, RunningProxy } from './helpers/proxy.js';

const acmeKey = newApiKey();
const globexKey = newApiKey();
const plainKey = newApiKey();
const smallKey = newApiKey();
const adminKey = newApiKey();
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-cache-'));
const usageLog = path.join(dir, 'usage.jsonl');
let upstream: RunningMock;
let proxy: RunningProxy;
let acme: OpenAI;
let acmeAnthropic: Anthropic;
let globex: OpenAI;
let plain: OpenAI;
let small: OpenAI;

/** Above the mock's 24-token reply (counted higher by the meter's tokenizer): no answer is cut at its cap. */
const MAX_TOKENS = 100;
/** A prompt no other test sends, so each test starts with an empty cache. */
const freshPrompt = () => `Name a colour. (${randomUUID()})`;
const upstreamCalls = () => upstream.mock.requests.length;

async function budgetView(): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  return ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] }).budgets[0]!;
}

/** Waits until nothing is reserved any more: every request before has settled. */
async function settled(): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
  return waitFor(async () => {
    const view = await budgetView();
    return view.reservedNanoUsd === 0 ? view : undefined;
  }, 'the reservations to settle');
}

/** A chat answer stored: the settle (which stores it) ran when the budget shows nothing reserved. */
async function chat(
  client: OpenAI,
  prompt: string,
  stream: false,
  headers?: Record<string, string>,
): Promise<{ text: string; cache: string | null }>;
async function chat(
  client: OpenAI,
  prompt: string,
  stream: true,
  headers?: Record<string, string>,
): Promise<{ text: string; cache: string | null }>;
async function chat(
  client: OpenAI,
  prompt: string,
  stream: boolean,
  headers: Record<string, string> = {},
): Promise<{ text: string; cache: string | null }> {
  const body = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: prompt }], max_tokens: MAX_TOKENS };
  if (stream) {
    const { data, response } = await client.chat.completions
      .create({ ...body, stream: true }, { headers })
      .withResponse();
    let text = '';
    let finish: string | null = null;
    for await (const chunk of data) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).not.toBeNull();
    return { text, cache: response.headers.get('x-tollgate-cache') };
  }
  const { data, response } = await client.chat.completions.create(body, { headers }).withResponse();
  expect(data.choices[0]!.finish_reason).not.toBeNull();
  return { text: data.choices[0]!.message.content ?? '', cache: response.headers.get('x-tollgate-cache') };
}

async function records(): Promise<UsageRecord[]> {
  await proxy.app.flushUsage();
  return readUsageLog(usageLog);
}

beforeAll(async () => {
  upstream = await startMockUpstream({ requireApiKey: undefined });
  proxy = await startProxy({
    usageLog,
    adminKeySha256: sha256Hex(adminKey),
    upstreams: {
      // A silent upstream is cut after 500 ms (the mock sends its events at once otherwise).
      openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream-openai', idleTimeoutMs: 500 },
      anthropic: { baseUrl: upstream.url, apiKey: 'sk-ant-upstream' },
    },
    tiers: {
      pro: { requestsPerMinute: 1000 },
      plain: { requestsPerMinute: 1000, cache: false },
      small: { requestsPerMinute: 3 },
    },
    tenants: {
      acme: { tier: 'pro', budget: { usd: 10, period: 'day' } },
      globex: { tier: 'pro' },
      plain: { tier: 'plain' },
      small: { tier: 'small' },
    },
    keys: [
      { id: 'acme-key', sha256: sha256Hex(acmeKey), tenant: 'acme', scopes: ['chat'] },
      { id: 'globex-key', sha256: sha256Hex(globexKey), tenant: 'globex', scopes: ['chat'] },
      { id: 'plain-key', sha256: sha256Hex(plainKey), tenant: 'plain', scopes: ['chat'] },
      { id: 'small-key', sha256: sha256Hex(smallKey), tenant: 'small', scopes: ['chat'] },
    ],
    cache: { store: 'memory', ttl: '10m', scope: 'tenant' },
  });
  acme = new OpenAI({ apiKey: acmeKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  acmeAnthropic = new Anthropic({ apiKey: acmeKey, baseURL: proxy.url, maxRetries: 0 });
  globex = new OpenAI({ apiKey: globexKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  plain = new OpenAI({ apiKey: plainKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  small = new OpenAI({ apiKey: smallKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
});

afterEach(async () => {
  upstream.mock.behavior.failure = 'none';
  upstream.mock.behavior.chunkDelayMs = 0;
  await settled();
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('OpenAI Chat Completions', () => {
  it('serves a repeated request from the cache: the upstream sees one call', async () => {
    const prompt = freshPrompt();
    const before = upstreamCalls();
    const first = await chat(acme, prompt, false);
    await settled();
    const second = await chat(acme, prompt, false);
    const third = await chat(acme, prompt, false);
    expect([first.cache, second.cache, third.cache]).toEqual(['miss', 'hit', 'hit']);
    expect(second.text).toBe(first.text);
    expect(third.text).toBe(first.text);
    expect(upstreamCalls() - before).toBe(1);
  });

  it('replays a JSON answer as a stream, and a streamed answer as JSON', async () => {
    const jsonFirst = freshPrompt();
    const before = upstreamCalls();
    const json = await chat(acme, jsonFirst, false);
    await settled();
    const streamed = await chat(acme, jsonFirst, true);
    expect(streamed).toEqual({ text: json.text, cache: 'hit' });

    const streamFirst = freshPrompt();
    const original = await chat(acme, streamFirst, true);
    expect(original.cache).toBe('miss');
    await settled();
    const asJson = await chat(acme, streamFirst, false);
    expect(asJson).toEqual({ text: original.text, cache: 'hit' });
    // A stream replayed as a stream, with the usage the client asked for.
    const { data } = await acme.chat.completions
      .create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: streamFirst }],
        max_tokens: MAX_TOKENS,
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of data) usage = chunk.usage ?? usage;
    expect(usage?.completion_tokens).toBeGreaterThan(0);
    expect(upstreamCalls() - before).toBe(2);
  });

  it('keeps tenants apart: another tenant misses', async () => {
    const prompt = freshPrompt();
    const before = upstreamCalls();
    await chat(acme, prompt, false);
    await settled();
    expect((await chat(globex, prompt, false)).cache).toBe('miss');
    expect(upstreamCalls() - before).toBe(2);
  });

  it('lets the client bypass it: no-store neither serves nor stores, no-cache refreshes', async () => {
    const prompt = freshPrompt();
    const before = upstreamCalls();
    expect((await chat(acme, prompt, false, { 'cache-control': 'no-store' })).cache).toBe('bypass');
    await settled();
    expect((await chat(acme, prompt, false)).cache).toBe('miss');
    await settled();
    expect((await chat(acme, prompt, false, { 'cache-control': 'no-cache' })).cache).toBe('bypass');
    await settled();
    expect((await chat(acme, prompt, false)).cache).toBe('hit');
    expect(upstreamCalls() - before).toBe(3);
  });

  it('leaves a tier with "cache": false alone', async () => {
    const prompt = freshPrompt();
    const before = upstreamCalls();
    const first = await chat(plain, prompt, false);
    const second = await chat(plain, prompt, false);
    expect([first.cache, second.cache]).toEqual([null, null]);
    expect(upstreamCalls() - before).toBe(2);
  });

  it('never stores a failed answer', async () => {
    const prompt = freshPrompt();
    upstream.mock.behavior.failure = 'error500';
    const error = await caught(chat(acme, prompt, false));
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBeGreaterThanOrEqual(500);
    upstream.mock.behavior.failure = 'none';
    await settled();
    const before = upstreamCalls();
    expect((await chat(acme, prompt, false)).cache).toBe('miss');
    expect(upstreamCalls() - before).toBe(1);
  });

  it('never stores a stream the client left', async () => {
    const prompt = freshPrompt();
    upstream.mock.behavior.chunkDelayMs = 30;
    const controller = new AbortController();
    const stream = await acme.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }], max_tokens: MAX_TOKENS, stream: true },
      { signal: controller.signal },
    );
    let finished = false;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.finish_reason) finished = true;
        if (chunk.choices[0]?.delta.content) controller.abort();
      }
    } catch {
      // The abort ends the iteration with an error (or quietly): either way the answer was cut.
    }
    expect(finished).toBe(false);
    upstream.mock.behavior.chunkDelayMs = 0;
    await settled();
    const before = upstreamCalls();
    expect((await chat(acme, prompt, true)).cache).toBe('miss');
    expect(upstreamCalls() - before).toBe(1);
  });

  it('never stores a stream the upstream cut', async () => {
    const prompt = freshPrompt();
    upstream.mock.behavior.failure = 'hangMidStream';
    let finished = false;
    try {
      const stream = await acme.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: prompt }],
        max_tokens: MAX_TOKENS,
        stream: true,
      });
      for await (const chunk of stream) if (chunk.choices[0]?.finish_reason) finished = true;
    } catch {
      // The proxy gave up on the silent upstream (its idle timeout) and cut the stream.
    }
    expect(finished).toBe(false);
    upstream.mock.behavior.failure = 'none';
    await settled();
    const before = upstreamCalls();
    expect((await chat(acme, prompt, true)).cache).toBe('miss');
    expect(upstreamCalls() - before).toBe(1);
  });
});

describe('accounting', () => {
  it('records a hit with usageSource "cache", no cost and its saving, and spends no budget', async () => {
    const prompt = freshPrompt();
    await chat(acme, prompt, false);
    const afterMiss = await settled();
    const hit = await chat(acme, prompt, true);
    expect(hit.cache).toBe('hit');
    const afterHit = await settled();
    expect(afterHit.spentNanoUsd).toBe(afterMiss.spentNanoUsd);
    const mine = (await records()).filter((record) => record.tenantId === 'acme').slice(-2);
    const [miss, served] = mine;
    expect(miss).toMatchObject({ usageSource: 'provider', stream: false });
    expect(miss!.costNanoUsd).toBeGreaterThan(0);
    expect(served).toMatchObject({
      usageSource: 'cache',
      costNanoUsd: 0,
      savedNanoUsd: miss!.costNanoUsd,
      stream: true,
      status: 200,
    });
    expect(served!.outputTokens).toBe(miss!.outputTokens);
  });

  it('counts hits in the metrics: requests by usage source and the USD saved', async () => {
    const response = await fetch(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } });
    const text = await response.text();
    expect(text).toMatch(/tollgate_requests_total\{[^}]*tenant="acme"[^}]*usage_source="cache"[^}]*\} [1-9]/);
    expect(text).toMatch(/tollgate_saved_usd_total\{[^}]*tenant="acme"[^}]*source="response_cache"\} [0-9.e-]+/);
  });

  it('counts hits toward request limits', async () => {
    const prompt = freshPrompt();
    const outcomes: string[] = [];
    for (let i = 0; i < 4; i++) {
      try {
        outcomes.push((await chat(small, prompt, false)).cache ?? 'none');
      } catch (error) {
        outcomes.push(String((error as InstanceType<typeof OpenAI.APIError>).status));
      }
      await settled();
    }
    expect(outcomes).toEqual(['miss', 'hit', 'hit', '429']);
  });
});

describe('OpenAI Responses', () => {
  it('replays JSON as a stream and a stream as JSON', async () => {
    const before = upstreamCalls();
    const jsonFirst = freshPrompt();
    const { data: answer, response: missResponse } = await acme.responses
      .create({ model: 'gpt-4o-mini', input: jsonFirst, max_output_tokens: MAX_TOKENS })
      .withResponse();
    expect(missResponse.headers.get('x-tollgate-cache')).toBe('miss');
    await settled();
    const { data: events, response: hitResponse } = await acme.responses
      .create({ model: 'gpt-4o-mini', input: jsonFirst, max_output_tokens: MAX_TOKENS, stream: true })
      .withResponse();
    expect(hitResponse.headers.get('x-tollgate-cache')).toBe('hit');
    let deltas = '';
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of events) {
      if (event.type === 'response.output_text.delta') deltas += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    expect(deltas).toBe(answer.output_text);
    expect(completed?.usage?.output_tokens).toBe(answer.usage?.output_tokens);

    const streamFirst = freshPrompt();
    const streamed = acme.responses.stream({ model: 'gpt-4o-mini', input: streamFirst, max_output_tokens: MAX_TOKENS });
    const final = await streamed.finalResponse();
    await settled();
    const { data: asJson, response } = await acme.responses
      .create({ model: 'gpt-4o-mini', input: streamFirst, max_output_tokens: MAX_TOKENS })
      .withResponse();
    expect(response.headers.get('x-tollgate-cache')).toBe('hit');
    expect(asJson.output_text).toBe(final.output_text);
    // The SDK's own stream helper accepts a replayed stream too.
    const again = await acme.responses
      .stream({ model: 'gpt-4o-mini', input: jsonFirst, max_output_tokens: MAX_TOKENS })
      .finalResponse();
    expect(again.output_text).toBe(answer.output_text);
    expect(upstreamCalls() - before).toBe(2);
  });
});

describe('Anthropic Messages', () => {
  it('replays JSON as a stream and a stream as JSON', async () => {
    const before = upstreamCalls();
    const jsonFirst = freshPrompt();
    const body = {
      model: 'claude-haiku-4-5',
      max_tokens: MAX_TOKENS,
      messages: [{ role: 'user' as const, content: jsonFirst }],
    };
    const { data: message, response: missResponse } = await acmeAnthropic.messages.create(body).withResponse();
    expect(missResponse.headers.get('x-tollgate-cache')).toBe('miss');
    await settled();
    const replay = acmeAnthropic.messages.stream(body);
    const { response: hitResponse } = await replay.withResponse();
    expect(hitResponse.headers.get('x-tollgate-cache')).toBe('hit');
    const replayed = await replay.finalMessage();
    expect(replayed.content).toEqual(message.content);
    expect(replayed.stop_reason).toBe(message.stop_reason);
    expect(replayed.usage.output_tokens).toBe(message.usage.output_tokens);

    const streamFirst = { ...body, messages: [{ role: 'user' as const, content: freshPrompt() }] };
    const streamed = await acmeAnthropic.messages.stream(streamFirst).finalMessage();
    await settled();
    const { data: asJson, response } = await acmeAnthropic.messages.create(streamFirst).withResponse();
    expect(response.headers.get('x-tollgate-cache')).toBe('hit');
    expect(asJson.content).toEqual(streamed.content);
    expect(asJson.usage.input_tokens).toBe(streamed.usage.input_tokens);
    expect(upstreamCalls() - before).toBe(2);
  });
});
