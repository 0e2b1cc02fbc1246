// A gateway stopped with SIGTERM drains as a rollout needs: /readyz 503 at once, new requests served for drainDelay,
// then no new connections; a stream in flight finishes, one longer than the timeout is ended in its API's own way and
// billed; every record lands; exit 0.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  newApiKey,
  readUsageLog,
  sha256Hex,
  spawnProxy,
  startFakeUpstream,
  startMockUpstream,
} from './helpers/proxy.js';
import type { FakeUpstream, RunningMock, SpawnedProxy } from './helpers/proxy.js';

const DRAIN_DELAY_MS = 2_000;
const TIMEOUT_MS = 15_000;
const key = newApiKey();
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-drain-'));
let upstream: FakeUpstream;
/** An Anthropic upstream whose streams take minutes: an event every 500 ms. */
let anthropic: RunningMock;

const chunk = (model: string, choices: unknown[], usage?: unknown) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-drain', object: 'chat.completion.chunk', created: 1, model, choices, ...(usage ? { usage } : {}) })}\n\n`;

beforeAll(async () => {
  // A provider whose stream lasts as long as the caller's `user` says (`stream-12000`): a word every 500 ms, then
  // its finish, its usage and [DONE]; JSON calls answer at once.
  upstream = await startFakeUpstream((request, res) => {
    const body = request.body as { model: string; user: string; stream?: boolean };
    res.on('error', () => undefined);
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'chatcmpl-drain',
          object: 'chat.completion',
          created: 1,
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'Hello' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 9, completion_tokens: 1, total_tokens: 10 },
        }),
      );
      return;
    }
    const lastsMs = Number(/^stream-(\d+)$/.exec(body.user)?.[1] ?? 1000);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let words = 0;
    const started = Date.now();
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      if (Date.now() - started < lastsMs) {
        words++;
        res.write(chunk(body.model, [{ index: 0, delta: { content: 'word ' }, finish_reason: null }]));
        return;
      }
      clearInterval(timer);
      res.write(chunk(body.model, [{ index: 0, delta: {}, finish_reason: 'stop' }]));
      res.write(chunk(body.model, [], { prompt_tokens: 9, completion_tokens: words, total_tokens: 9 + words }));
      res.end('data: [DONE]\n\n');
    }, 500);
    res.on('close', () => clearInterval(timer));
  });
  anthropic = await startMockUpstream({ chunkDelayMs: 500, replyTokens: 400 });
});

afterAll(async () => {
  await upstream.close();
  await anthropic.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Streamed {
  text: string;
  /** ms after SIGTERM when the stream ended (NaN when it failed). */
  endedAt: number;
  failed?: string;
}

function send(url: string, marker: string, stream: boolean): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': marker },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      max_tokens: 1000,
      stream,
      user: marker,
      messages: [{ role: 'user', content: 'Talk for a while' }],
    }),
  });
}

/** A stream read to its end; `since()` says when, relative to the signal. */
async function readStream(url: string, marker: string, since: () => number): Promise<Streamed> {
  try {
    const response = await send(url, marker, true);
    const text = await response.text();
    return { text, endedAt: since() };
  } catch (error) {
    return { text: '', endedAt: Number.NaN, failed: (error as Error).message };
  }
}

/** An Anthropic Messages stream read to its end. */
async function readAnthropicStream(url: string, since: () => number): Promise<Streamed> {
  try {
    const response = await fetch(`${url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json', 'x-request-id': 'anthropic-stream' },
      body: JSON.stringify({
        model: 'claude-sonnet-4-5',
        max_tokens: 1000,
        stream: true,
        messages: [{ role: 'user', content: 'Talk for a while' }],
      }),
    });
    return { text: await response.text(), endedAt: since() };
  } catch (error) {
    return { text: '', endedAt: Number.NaN, failed: (error as Error).message };
  }
}

describe('a gateway stopped with SIGTERM', () => {
  let proxy: SpawnedProxy;
  const usageLog = path.join(dir, 'usage.jsonl');

  beforeAll(async () => {
    const configPath = path.join(dir, 'drain.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        usageLog,
        upstreams: {
          openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' },
          anthropic: { baseUrl: anthropic.url, apiKey: 'sk-ant-upstream' },
        },
        tiers: { roomy: { requestsPerMinute: 100_000, tokensPerMinute: 100_000_000 } },
        defaultTier: 'roomy',
        keys: [{ id: 'drain-key', sha256: sha256Hex(key), tenant: 'acme' }],
        tenants: { acme: { tier: 'roomy', budget: { usd: 100, period: 'day' } } },
        shutdown: { drainDelay: `${DRAIN_DELAY_MS}ms`, timeout: `${TIMEOUT_MS / 1000}s` },
      }),
    );
    proxy = await spawnProxy({ TOLLGATE_CONFIG: configPath });
  }, 90_000);

  afterAll(async () => {
    if (proxy.child.exitCode === null) proxy.child.kill('SIGKILL');
  });

  it('serves through the drain delay, finishes a 12 s stream, ends a longer one its API way, records all, exits 0', async () => {
    let signalledAt = Number.POSITIVE_INFINITY;
    const since = () => Date.now() - signalledAt;
    const twelve = readStream(proxy.url, 'stream-12000', since);
    const endless = readStream(proxy.url, 'stream-120000', since);
    const messages = readAnthropicStream(proxy.url, since);
    await sleep(1_000);
    const exited = once(proxy.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    signalledAt = Date.now();
    proxy.child.kill('SIGTERM');

    // At once: out of the load balancer's rotation, still serving.
    await sleep(100);
    const readyz = await fetch(`${proxy.url}/readyz`);
    expect({ status: readyz.status, body: await readyz.json() }).toEqual({ status: 503, body: { status: 'draining' } });
    await sleep(200);
    // 300 ms after the signal, a new connection and a new request: served, asked to close its connection.
    const late = await send(proxy.url, 'json-after-signal', false);
    expect(late.status).toBe(200);
    expect(late.headers.get('connection')).toBe('close');
    await late.arrayBuffer();

    // Once the delay is over, the listener is closed: a new connection is refused while the streams go on.
    await sleep(DRAIN_DELAY_MS + 500 - since());
    const refused = await send(proxy.url, 'json-after-delay', false).then(
      () => 'answered',
      (error: Error & { cause?: { code?: string } }) => error.cause?.code ?? error.message,
    );
    expect(refused).toBe('ECONNREFUSED');

    const [code] = await exited;
    const exitedAfter = since();
    const [finished, cut, message] = await Promise.all([twelve, endless, messages]);
    expect(code).toBe(0);

    // The 12 s stream went to its end: the provider's own finish, its usage, [DONE].
    expect(finished.failed).toBeUndefined();
    expect(finished.text).toContain('"finish_reason":"stop"');
    expect(finished.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(finished.endedAt).toBeGreaterThan(9_000);

    // The longer one was ended at drainDelay + timeout, as the API ends an answer that stops short: a finish reason,
    // then [DONE], never a cut connection.
    expect(cut.failed).toBeUndefined();
    expect(cut.endedAt).toBeGreaterThanOrEqual(DRAIN_DELAY_MS + TIMEOUT_MS - 500);
    expect(cut.endedAt).toBeLessThan(DRAIN_DELAY_MS + TIMEOUT_MS + 3_000);
    expect(cut.text).toContain('"finish_reason":"length"');
    expect(cut.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    // Anthropic's stream, ended its own way: the open block stopped, max_tokens, message_stop.
    expect(message.failed).toBeUndefined();
    expect(message.endedAt).toBeGreaterThanOrEqual(DRAIN_DELAY_MS + TIMEOUT_MS - 500);
    expect(message.text).toMatch(
      /event: content_block_stop[\s\S]*"stop_reason":"max_tokens"[\s\S]*event: message_stop/,
    );
    expect(exitedAfter).toBeLessThan(DRAIN_DELAY_MS + TIMEOUT_MS + 10_000);

    // Every request answered has its record, once: the two streams and the request sent after the signal.
    const records = readUsageLog(usageLog);
    expect(records.map((record) => record.requestId).sort()).toEqual(
      ['anthropic-stream', 'json-after-signal', 'stream-120000', 'stream-12000'].sort(),
    );
    const byId = new Map(records.map((record) => [record.requestId, record]));
    expect(byId.get('stream-12000')).toMatchObject({ status: 200, usageSource: 'provider', aborted: false });
    // Billed what went out: the words delivered (about two a second for drainDelay + timeout), at a price.
    const billed = byId.get('stream-120000')!;
    const words = cut.text.split('"content":"word "').length - 1;
    expect(billed).toMatchObject({ status: 200, usageSource: 'counted', aborted: false });
    expect(billed.outputOverCap).toBeUndefined();
    expect(billed.outputTokens).toBeGreaterThanOrEqual(words);
    expect(billed.outputTokens).toBeLessThanOrEqual(words * 2);
    expect(billed.costNanoUsd).toBeGreaterThan(0);
    expect(byId.get('anthropic-stream')).toMatchObject({ status: 200, aborted: false });
    expect(byId.get('anthropic-stream')!.outputTokens).toBeGreaterThan(0);
    expect(byId.get('anthropic-stream')!.costNanoUsd).toBeGreaterThan(0);
  }, 60_000);
});
