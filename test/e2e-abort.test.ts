// A client that leaves, or an upstream that cuts an answer: reservations settle at once, and the usage log charges what the provider bills (what passed of a stream; the bound of a JSON answer).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { createPricing } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import type { UsageRecord } from '@tollgate/core';
import { createMockProvider } from '@tollgate/providers/mock';
import { caught, newApiKey, readUsageLog, sha256Hex, startFakeUpstream, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-abort-'));
const usageLog = path.join(dir, 'usage.jsonl');
const key = newApiKey();
const soloKey = newApiKey();
const adminKey = newApiKey();
let proxy: RunningProxy;
// A long, slow answer: the client has time to leave in the middle of it.
const mock = createMockProvider({ replyTokens: 400, chunkDelayMs: 10 });

function records(): UsageRecord[] {
  return readUsageLog(usageLog);
}

async function budgetView(): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  return ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] }).budgets[0]!;
}

beforeAll(async () => {
  proxy = await startProxy(
    {
      usageLog,
      adminKeySha256: sha256Hex(adminKey),
      tiers: {
        pro: { requestsPerMinute: 100, tokensPerMinute: 1_000_000 },
        solo: { requestsPerMinute: 100, maxConcurrent: 1 },
      },
      tenants: { acme: { tier: 'pro', budget: { usd: 10, period: 'day' } }, solo: { tier: 'solo' } },
      keys: [
        { id: 'abort-key', sha256: sha256Hex(key), tenant: 'acme', scopes: ['chat'] },
        { id: 'solo-key', sha256: sha256Hex(soloKey), tenant: 'solo', scopes: ['chat'] },
      ],
    },
    { mock },
  );
});

afterAll(async () => {
  await proxy.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('client abort mid-stream', () => {
  it('OpenAI chat: settles the reservation and records the partial output as counted and aborted', async () => {
    const openai = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Tell me a long story' }],
      stream: true,
      max_tokens: 400,
    });
    let deltas = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas++;
      if (deltas === 10) break; // leaving the loop aborts the request
    }
    const record = await waitFor(
      () => records().find((r) => r.route.endsWith('/chat/completions')),
      'the usage record',
    );
    expect(record).toMatchObject({
      keyId: 'abort-key',
      tenantId: 'acme',
      stream: true,
      aborted: true,
      usageSource: 'counted',
      model: 'gpt-4o-mini',
    });
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
    const stream = anthropic.messages.stream({
      model: 'claude-haiku-4-5',
      max_tokens: 400,
      messages: [{ role: 'user', content: 'Tell me a long story' }],
    });
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

  it('a concurrency slot held by a stream is freed when its client leaves', async () => {
    const openai = new OpenAI({ apiKey: soloKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const first = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'long' }],
      stream: true,
    });
    const iterator = first[Symbol.asyncIterator]();
    await iterator.next();
    const busy = await caught(
      openai.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'second' }],
        max_tokens: 2,
      }),
    );
    expect((busy as { status?: number }).status).toBe(429);
    first.controller.abort();
    const after = await waitFor(async () => {
      try {
        return await openai.chat.completions.create({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'third' }],
          max_tokens: 2,
        });
      } catch {
        return undefined;
      }
    }, 'the slot to be released');
    expect(after.usage?.completion_tokens).toBe(2);
  });
});

describe('a JSON answer that never came whole', () => {
  it('is charged the reservation bound when its client leaves and it cannot be read on (the built-in mock stops; the provider would bill it whole)', async () => {
    mock.behavior.latencyMs = 400;
    try {
      const leave = new AbortController();
      const pending = fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': 'json-abort' },
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          max_tokens: 300,
          messages: [{ role: 'user', content: 'A long answer, please' }],
        }),
        signal: leave.signal,
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      leave.abort();
      await caught(pending);
      const record = await waitFor(() => records().find((r) => r.requestId === 'json-abort'), 'the usage record');
      // Before: charged its input only, so repeated aborts spent several times what the budget saw.
      expect(record).toMatchObject({ stream: false, aborted: true, usageSource: 'estimated', outputTokens: 300 });
      expect(record.upstreamAborted).toBeUndefined();
      expect(record.costNanoUsd).toBe(record.estimatedCostNanoUsd);
    } finally {
      mock.behavior.latencyMs = 0;
    }
  });

  it('is read to its end after its client leaves, and charged the usage the provider reports (JSON, Anthropic and OpenAI)', async () => {
    // Answers after 300 ms, long after the client has gone, with its own usage.
    const slow = await startFakeUpstream((request, res) => {
      const anthropic = request.url.endsWith('/messages');
      const status = (request.body as { metadata?: { user_id?: string } }).metadata?.user_id === 'fail' ? 500 : 200;
      setTimeout(() => {
        res.writeHead(status, { 'content-type': 'application/json' });
        if (status !== 200) return res.end('{"error":{"message":"overloaded"}}');
        res.end(
          JSON.stringify(
            anthropic
              ? {
                  id: 'msg_1',
                  type: 'message',
                  role: 'assistant',
                  model: 'claude-haiku-4-5',
                  content: [{ type: 'text', text: 'Once upon a time' }],
                  stop_reason: 'end_turn',
                  usage: { input_tokens: 31, output_tokens: 77 },
                }
              : {
                  id: 'chatcmpl-1',
                  object: 'chat.completion',
                  model: 'gpt-4o-mini',
                  choices: [
                    { index: 0, message: { role: 'assistant', content: 'Once upon a time' }, finish_reason: 'stop' },
                  ],
                  usage: { prompt_tokens: 29, completion_tokens: 83, total_tokens: 112 },
                },
          ),
        );
      }, 300);
    });
    const log = path.join(dir, 'orphans.jsonl');
    const orphanProxy = await startProxy({
      usageLog: log,
      adminKeySha256: sha256Hex(adminKey),
      // An upstream that cannot stream: its JSON calls go as JSON (a streamed one stops when its client leaves).
      upstreams: {
        openai: { baseUrl: `${slow.url}/v1`, apiKey: 'sk-upstream', jsonAsStream: false },
        anthropic: { baseUrl: slow.url, apiKey: 'sk-ant-upstream', jsonAsStream: false },
      },
      tenants: { acme: { budget: { usd: 10, period: 'day' } } },
      keys: [{ id: 'orphan-key', sha256: sha256Hex(key), tenant: 'acme', scopes: [] }],
    });
    const leaveAfter = async (route: string, body: object, requestId: string) => {
      const leave = new AbortController();
      const pending = fetch(`${orphanProxy.url}${route}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': requestId },
        body: JSON.stringify(body),
        signal: leave.signal,
      });
      await new Promise((resolve) => setTimeout(resolve, 80));
      leave.abort();
      await caught(pending);
    };
    try {
      await leaveAfter(
        '/v1/chat/completions',
        { model: 'gpt-4o-mini', max_tokens: 500, messages: [{ role: 'user', content: 'A story' }] },
        'orphan-openai',
      );
      await leaveAfter(
        '/v1/messages',
        { model: 'claude-haiku-4-5', max_tokens: 500, messages: [{ role: 'user', content: 'A story' }] },
        'orphan-anthropic',
      );
      await leaveAfter(
        '/v1/messages',
        {
          model: 'claude-haiku-4-5',
          max_tokens: 500,
          metadata: { user_id: 'fail' },
          messages: [{ role: 'user', content: 'A story' }],
        },
        'orphan-failed',
      );
      const settled = async () => {
        await orphanProxy.app.flushUsage();
        const found = readUsageLog(log);
        return found.length === 3 ? found : undefined;
      };
      const found = await waitFor(settled, 'three usage records');
      const byId = new Map(found.map((record) => [record.requestId, record]));
      expect(byId.get('orphan-openai')).toMatchObject({
        aborted: true,
        usageSource: 'provider',
        inputTokens: 29,
        outputTokens: 83,
        model: 'gpt-4o-mini',
      });
      expect(byId.get('orphan-anthropic')).toMatchObject({
        aborted: true,
        usageSource: 'provider',
        inputTokens: 31,
        outputTokens: 77,
        model: 'claude-haiku-4-5',
      });
      // The upstream failed after the client left: an error bills nothing.
      expect(byId.get('orphan-failed')).toMatchObject({ aborted: true, status: 500, outputTokens: 0, costNanoUsd: 0 });
      for (const record of found) expect(record.costNanoUsd).toBeLessThan(record.estimatedCostNanoUsd);
      // The budget was charged what the provider billed, not the reservation's bound.
      const response = await fetch(`${orphanProxy.url}/admin/budgets/tenant/acme`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      const view = ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] })
        .budgets[0]!;
      expect(view).toMatchObject({
        reservedNanoUsd: 0,
        spentNanoUsd: found.reduce((sum, record) => sum + record.costNanoUsd, 0),
      });
    } finally {
      await orphanProxy.close();
      await slow.close();
    }
  });

  it.each([
    {
      api: 'openai.chat',
      route: '/v1/chat/completions',
      upstream: 'openai',
      base: '/v1',
      body: { model: 'gpt-4o-mini', max_tokens: 200, messages: [{ role: 'user', content: 'hi' }] },
      partial:
        '{"id":"chatcmpl-cut","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Once upon',
    },
    {
      api: 'openai.responses',
      route: '/v1/responses',
      upstream: 'openai',
      base: '/v1',
      body: { model: 'gpt-4o-mini', max_output_tokens: 200, input: 'hi' },
      partial:
        '{"id":"resp_cut","object":"response","status":"completed","model":"gpt-4o-mini","output":[{"type":"message","content":[{"type":"output_text","text":"Once upon',
    },
    {
      api: 'anthropic.messages',
      route: '/v1/messages',
      upstream: 'anthropic',
      base: '',
      body: { model: 'claude-haiku-4-5', max_tokens: 200, messages: [{ role: 'user', content: 'hi' }] },
      partial:
        '{"id":"msg_cut","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"Once upon',
    },
    {
      api: 'gemini.generate',
      route: '/v1beta/models/gemini-2.5-flash:generateContent',
      upstream: 'google',
      base: '/v1beta',
      body: { contents: [{ role: 'user', parts: [{ text: 'hi' }] }], generationConfig: { maxOutputTokens: 200 } },
      partial: '{"candidates":[{"content":{"role":"model","parts":[{"text":"Once upon',
    },
  ])(
    '$api: a JSON answer reset after its headers is a 502 charged the reservation bound, the record says the upstream did',
    async ({ api, route, upstream, base, body, partial }) => {
      const cutting = await startFakeUpstream((_request, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(partial);
        setTimeout(() => res.destroy(), 20);
      });
      const cutLog = path.join(dir, `cut-${api}.jsonl`);
      const cutProxy = await startProxy({
        usageLog: cutLog,
        upstreams: { [upstream]: { baseUrl: `${cutting.url}${base}`, apiKey: 'sk-upstream' } },
        keys: [{ id: 'cut-key', sha256: sha256Hex(key), scopes: [] }],
      });
      try {
        const response = await fetch(`${cutProxy.url}${route}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        expect(response.status).toBe(502);
        await cutProxy.app.flushUsage();
        const record = await waitFor(() => readUsageLog(cutLog)[0], 'the usage record');
        // Before: charged 0, and the record blamed nobody (or the client).
        expect(record).toMatchObject({
          status: 502,
          aborted: false,
          upstreamAborted: true,
          usageSource: 'estimated',
          outputTokens: 200,
        });
        // The input the estimate reserved and the whole grant, at the model's price (the reservation bounds it: it also
        // covers input billed as a cache write, which a request without cache_control cannot be).
        expect(record.inputTokens).toBeGreaterThan(0);
        expect(record.costNanoUsd).toBe(costNanoUsd(record, createPricing().get(record.model!)));
        expect(record.costNanoUsd).toBeGreaterThan(0);
        expect(record.costNanoUsd).toBeLessThanOrEqual(record.estimatedCostNanoUsd);
      } finally {
        await cutProxy.close();
        await cutting.close();
      }
    },
  );
});
