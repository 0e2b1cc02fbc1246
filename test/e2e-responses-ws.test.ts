// The Responses API's WebSocket mode on /v1/responses, over real sockets: each `response.create` metered, limited and
// budgeted as the same call over HTTP (to the nano-USD), refusals as error events on a socket that stays usable, the
// upgrade authenticated, a client that leaves billed like an aborted stream, and a drain that lets a response finish.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { ResponsesWS } from 'openai/resources/responses/ws';
import WebSocket from 'ws';
import type { UsageRecord } from '@tollgate/core';
import {
  memoryAndRedisStores,
  newApiKey,
  readUsageLog,
  sha256Hex,
  spawnProxy,
  startMockUpstream,
  startProxy,
  waitFor,
} from './helpers/proxy.js';
import type { OwnedStores, RunningMock, RunningProxy } from './helpers/proxy.js';

const MODEL = 'gpt-4o-mini';
const SLOW_MODEL = 'slow-chat';

/** A server event as the socket sends it. */
type Frame = { type: string; [field: string]: unknown };

/** Every socket a test opened: cut after its file, so a failed test leaves no server waiting on one. */
const opened: WebSocket[] = [];

/** A `ws` socket on the gateway's /v1/responses with `key`, once open, and every frame it received. */
async function openSocket(url: string, key: string): Promise<{ socket: WebSocket; frames: Frame[] }> {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/responses`, {
    headers: { authorization: `Bearer ${key}` },
  });
  opened.push(socket);
  const frames: Frame[] = [];
  socket.on('message', (data) => frames.push(JSON.parse(data.toString()) as Frame));
  await once(socket, 'open');
  return { socket, frames };
}

/** The frames after `from` until one whose type is among `last` (the response's end, or an error event). */
async function framesUntil(frames: Frame[], from: number, last: readonly string[]): Promise<Frame[]> {
  const ended = await waitFor(
    () => {
      const index = frames.findIndex((frame, at) => at >= from && last.includes(frame.type));
      return index >= 0 ? index : undefined;
    },
    `one of ${last.join(', ')}`,
  );
  return frames.slice(from, ended + 1);
}

const RESPONSE_ENDS = ['response.completed', 'response.incomplete', 'response.failed', 'error'];
/** How an answered response ends: complete, or at its output cap (`max_output_tokens`). */
const ANSWERED = ['response.completed', 'response.incomplete'];

describe.each(memoryAndRedisStores('responses-ws'))('the Responses WebSocket mode on %s stores', (_kind, storesFor) => {
  let owned: OwnedStores;
  let mock: RunningMock;
  let slow: RunningMock;
  let proxy: RunningProxy;
  let dir: string;
  let usageLog: string;
  const keys = { answered: newApiKey(), tight: newApiKey(), limited: newApiKey() };
  const seen = new Map<string, number>();

  /** The next `count` records of `keyId`, once written. */
  const newRecords = async (keyId: string, count = 1): Promise<UsageRecord[]> => {
    const from = seen.get(keyId) ?? 0;
    const records = await waitFor(() => {
      const mine = readUsageLog(usageLog).filter((record) => record.keyId === keyId);
      return mine.length >= from + count ? mine.slice(from, from + count) : undefined;
    }, `${count} record(s) of ${keyId}`);
    seen.set(keyId, from + count);
    return records;
  };

  beforeAll(async () => {
    owned = storesFor();
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-responses-ws-'));
    usageLog = path.join(dir, 'usage.jsonl');
    mock = await startMockUpstream();
    slow = await startMockUpstream({ chunkDelayMs: 200, replyTokens: 40 });
    const apiKey = `upstream-${newApiKey()}`;
    proxy = await startProxy(
      {
        usageLog,
        upstreams: {
          openai: { baseUrl: `${mock.url}/v1`, apiKey },
          slow: { baseUrl: `${slow.url}/v1`, apiKey, api: 'openai' },
        },
        models: { [SLOW_MODEL]: { provider: 'slow', inputPerMTok: 1, outputPerMTok: 2 } },
        tiers: { pro: { models: ['*'] }, single: { models: ['*'], requestsPerMinute: 1 } },
        tenants: {
          acme: { tier: 'pro', budget: { usd: 100, period: 'day' } },
          // One capped call fits (about 11,000 nano-USD), a second does not.
          tight: { tier: 'pro', budget: { usd: 0.000015, period: 'day' } },
          small: { tier: 'single' },
        },
        keys: [
          { id: 'answered', sha256: sha256Hex(keys.answered), tenant: 'acme' },
          { id: 'tight', sha256: sha256Hex(keys.tight), tenant: 'tight' },
          { id: 'limited', sha256: sha256Hex(keys.limited), tenant: 'small' },
        ],
      },
      { stores: owned.stores },
    );
    proxy.app.attachResponsesSocket(proxy.server);
  });

  afterAll(async () => {
    for (const socket of opened) socket.terminate();
    await proxy.close();
    await mock.close();
    await slow.close();
    await owned.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the SDK's WebSocket client: each response.create billed to the nano-USD as the same call over HTTP", async () => {
    const client = new OpenAI({ apiKey: keys.answered, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const socket = new ResponsesWS(client);
    opened.push(socket.socket as unknown as WebSocket);
    const events: Frame[] = [];
    socket.on('event', (event) => events.push(event as unknown as Frame));
    const body = { model: MODEL, input: 'Say hello over a socket.', max_output_tokens: 50 };
    for (let turn = 0; turn < 2; turn++) {
      const from = events.length;
      socket.send({ type: 'response.create', ...body });
      const frames = await framesUntil(events, from, RESPONSE_ENDS);
      expect(frames.map((frame) => frame.type)).toEqual(
        expect.arrayContaining(['response.created', 'response.output_text.delta', 'response.completed']),
      );
    }
    socket.close();
    const overSocket = await newRecords('answered', 2);

    const stream = await client.responses.create({ ...body, stream: true });
    for await (const _event of stream) void _event;
    const [overHttp] = await newRecords('answered');

    for (const record of overSocket) {
      expect(record).toMatchObject({ route: '/v1/responses', model: MODEL, stream: true, aborted: false });
      expect(record.usageSource).toBe('provider');
      expect(record.costNanoUsd).toBeGreaterThan(0);
      expect(record.costNanoUsd).toBe(overHttp!.costNanoUsd);
      expect([record.inputTokens, record.outputTokens]).toEqual([overHttp!.inputTokens, overHttp!.outputTokens]);
    }
    expect(new Set(overSocket.map((record) => record.requestId)).size).toBe(2);
  });

  it('a budget that runs out refuses the next response.create with an error event; the socket stays usable', async () => {
    const { socket, frames } = await openSocket(proxy.url, keys.tight);
    const create = { type: 'response.create', model: MODEL, input: 'Hi', max_output_tokens: 16 };
    socket.send(JSON.stringify(create));
    const first = await framesUntil(frames, 0, RESPONSE_ENDS);
    expect(ANSWERED).toContain(first.at(-1)?.type);
    const [record] = await newRecords('tight');
    expect(record!.costNanoUsd).toBeGreaterThan(0);

    const from = frames.length;
    socket.send(JSON.stringify(create));
    const [refusal] = await framesUntil(frames, from, RESPONSE_ENDS);
    expect(refusal).toMatchObject({ type: 'error', status: 429, error: { code: 'insufficient_quota' } });
    expect(socket.readyState).toBe(WebSocket.OPEN);

    // Still served: a bad frame gets its error event too, and the socket stays open.
    const next = frames.length;
    socket.send('not json');
    const [bad] = await framesUntil(frames, next, ['error']);
    expect(bad).toMatchObject({ status: 400, error: { code: 'invalid_request' } });
    expect(socket.readyState).toBe(WebSocket.OPEN);
    socket.close();
  });

  it('a request limit refuses with the 429 as an error event, with its Retry-After', async () => {
    const { socket, frames } = await openSocket(proxy.url, keys.limited);
    const create = JSON.stringify({ type: 'response.create', model: MODEL, input: 'Hi', max_output_tokens: 16 });
    socket.send(create);
    expect(ANSWERED).toContain((await framesUntil(frames, 0, RESPONSE_ENDS)).at(-1)?.type);
    const from = frames.length;
    socket.send(create);
    const [refusal] = await framesUntil(frames, from, RESPONSE_ENDS);
    expect(refusal).toMatchObject({ type: 'error', status: 429, error: { code: 'rate_limit_exceeded' } });
    expect((refusal!.headers as Record<string, string>)['retry-after']).toMatch(/^\d+$/);
    expect(socket.readyState).toBe(WebSocket.OPEN);
    socket.close();
    await newRecords('limited');
  });

  it('an upgrade without a valid key is refused with 401 before any socket opens', async () => {
    for (const headers of [{}, { authorization: `Bearer ${newApiKey()}` }]) {
      const socket = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/responses`, { headers });
      socket.on('error', () => undefined);
      const [, res] = (await once(socket, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage];
      expect(res.statusCode).toBe(401);
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
      let body = '';
      for await (const chunk of res) body += String(chunk);
      expect(JSON.parse(body)).toMatchObject({ error: { code: 'invalid_api_key' } });
      socket.terminate();
    }
    // A GET that is no upgrade is still the 405 of the route.
    const plain = await fetch(`${proxy.url}/v1/responses`, { headers: { authorization: `Bearer ${keys.answered}` } });
    expect(plain.status).toBe(405);
  });

  it('bad frames get error events, never a crash: unknown types, background, a second create while one runs', async () => {
    const { socket, frames } = await openSocket(proxy.url, keys.answered);
    socket.send(JSON.stringify({ type: 'response.cancel' }));
    socket.send(JSON.stringify([1, 2]));
    socket.send(JSON.stringify({ type: 'response.create', model: MODEL, input: 'x', background: true }));
    const errors = await waitFor(() => (frames.length >= 3 ? frames.slice(0, 3) : undefined), 'three error events');
    expect(errors.map((frame) => [frame.type, (frame.error as { param: unknown }).param])).toEqual([
      ['error', 'type'],
      ['error', null],
      ['error', 'background'],
    ]);
    const create = JSON.stringify({ type: 'response.create', model: MODEL, input: 'Hi', max_output_tokens: 16 });
    // Both in one tick: the second arrives while the first is in flight.
    socket.send(create);
    socket.send(create);
    const answer = await framesUntil(frames, 3, ANSWERED);
    expect(answer.filter((frame) => frame.type === 'error')).toEqual([
      expect.objectContaining({ status: 409, error: expect.objectContaining({ code: 'invalid_request' }) }),
    ]);
    expect(socket.readyState).toBe(WebSocket.OPEN);
    socket.close();
    await newRecords('answered');
  });

  it('frames are size-limited like the JSON body: over the limit a 413 event, far over it a 1009 close', async () => {
    const limit = 1024 * 1024;
    const { socket, frames } = await openSocket(proxy.url, keys.answered);
    const frame = (size: number) => {
      const head = JSON.stringify({ type: 'response.create', model: MODEL, input: '' });
      return head.replace('"input":""', `"input":"${'a'.repeat(size - head.length)}"`);
    };
    socket.send(frame(limit + 500));
    const [tooLarge] = await framesUntil(frames, 0, RESPONSE_ENDS);
    expect(tooLarge).toMatchObject({ type: 'error', status: 413, error: { code: 'request_too_large' } });
    expect(socket.readyState).toBe(WebSocket.OPEN);
    const closed = once(socket, 'close');
    socket.send(frame(limit + 4096));
    expect((await closed)[0]).toBe(1009);
  });

  it('a warm-up (generate: false) is answered without a call; a turn continuing it is sent as the whole input', async () => {
    const { socket, frames } = await openSocket(proxy.url, keys.answered);
    const sentBefore = mock.mock.requests.length;
    socket.send(JSON.stringify({ type: 'response.create', model: MODEL, input: 'First', generate: false }));
    const warm = await framesUntil(frames, 0, RESPONSE_ENDS);
    expect(warm.map((frame) => frame.type)).toEqual(['response.created', 'response.completed']);
    expect(mock.mock.requests.length).toBe(sentBefore);
    const warmId = (warm[1]!.response as { id: string }).id;

    const next = { type: 'message', role: 'user', content: 'Second' };
    socket.send(JSON.stringify({ type: 'response.create', model: MODEL, previous_response_id: warmId, input: [next] }));
    const answered = await framesUntil(frames, 2, RESPONSE_ENDS);
    expect(ANSWERED).toContain(answered.at(-1)?.type);
    const sent = mock.mock.requests.at(-1)!.body as Record<string, unknown>;
    expect(sent.previous_response_id).toBeUndefined();
    expect(sent.generate).toBeUndefined();
    expect(sent.input).toEqual([{ type: 'message', role: 'user', content: 'First' }, next]);
    const [record] = await newRecords('answered');
    expect(record!.costNanoUsd).toBeGreaterThan(0);

    // The next turn continues the answered one: its output items come back as input.
    const answerId = (answered.at(-1)!.response as { id: string }).id;
    socket.send(
      JSON.stringify({ type: 'response.create', model: MODEL, previous_response_id: answerId, input: 'Third' }),
    );
    await framesUntil(frames, frames.length, RESPONSE_ENDS);
    const third = (mock.mock.requests.at(-1)!.body as { input: { role?: string }[] }).input;
    expect(third.length).toBeGreaterThan(3);
    expect(third.at(-1)).toEqual({ type: 'message', role: 'user', content: 'Third' });
    socket.close();
    await newRecords('answered');
  });

  it('an upstream past its output cap is cut by the hard stop as over HTTP: the same last event, the same bill', async () => {
    mock.mock.behavior.ignoreOutputCap = true;
    mock.mock.behavior.replyTokens = 300;
    try {
      const body = { model: MODEL, input: 'A long answer, please', max_output_tokens: 20 };
      const { socket, frames } = await openSocket(proxy.url, keys.answered);
      socket.send(JSON.stringify({ type: 'response.create', ...body }));
      const overSocket = await framesUntil(frames, 0, RESPONSE_ENDS);
      socket.close();
      const [socketRecord] = await newRecords('answered');

      const res = await fetch(`${proxy.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${keys.answered}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, stream: true }),
      });
      const events = (await res.text())
        .split('\n')
        .filter((line) => line.startsWith('data: ') && line !== 'data: [DONE]')
        .map((line) => JSON.parse(line.slice(6)) as Frame);
      const [httpRecord] = await newRecords('answered');

      expect(overSocket.at(-1)?.type).toBe(events.at(-1)?.type);
      expect(overSocket.length).toBe(events.length);
      expect(socketRecord!.outputTokens).toBeLessThanOrEqual(20);
      expect(socketRecord).toMatchObject({
        outputTokens: httpRecord!.outputTokens,
        costNanoUsd: httpRecord!.costNanoUsd,
        usageSource: httpRecord!.usageSource,
      });
    } finally {
      mock.mock.behavior.ignoreOutputCap = false;
      delete mock.mock.behavior.replyTokens;
    }
  });

  it('a client that leaves mid-response: the response is settled and billed like an aborted HTTP stream', async () => {
    const { socket, frames } = await openSocket(proxy.url, keys.answered);
    socket.send(JSON.stringify({ type: 'response.create', model: SLOW_MODEL, input: 'Tell me a long story' }));
    await waitFor(() => frames.find((frame) => frame.type === 'response.output_text.delta'), 'a first delta');
    socket.terminate();
    const [record] = await newRecords('answered');
    expect(record).toMatchObject({ model: SLOW_MODEL, stream: true, aborted: true });
    expect(record!.outputTokens).toBeGreaterThan(0);
    expect(record!.outputTokens).toBeLessThan(40);
    expect(record!.costNanoUsd).toBeGreaterThan(0);
  });
});

describe('the Responses WebSocket mode under a drain', () => {
  let slow: RunningMock;
  let dir: string;

  beforeAll(async () => {
    slow = await startMockUpstream({ chunkDelayMs: 150, replyTokens: 20 });
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-responses-ws-drain-'));
  });

  afterAll(async () => {
    await slow.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('SIGTERM: the response in flight finishes and is billed, then every socket closes with 1001; exit 0', async () => {
    const key = newApiKey();
    const usageLog = path.join(dir, 'usage.jsonl');
    const configPath = path.join(dir, 'tollgate.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        usageLog,
        shutdown: { drainDelay: '500ms', timeout: '15s' },
        upstreams: { slow: { baseUrl: `${slow.url}/v1`, apiKey: 'upstream', api: 'openai' } },
        models: { [SLOW_MODEL]: { provider: 'slow', inputPerMTok: 1, outputPerMTok: 2 } },
        tiers: { pro: { models: ['*'] } },
        tenants: { acme: { tier: 'pro', budget: { usd: 10, period: 'day' } } },
        keys: [{ id: 'drained', sha256: sha256Hex(key), tenant: 'acme' }],
      }),
    );
    const proxy = await spawnProxy({ TOLLGATE_CONFIG: configPath });
    try {
      const busy = await openSocket(proxy.url, key);
      const idle = await openSocket(proxy.url, key);
      busy.socket.send(JSON.stringify({ type: 'response.create', model: SLOW_MODEL, input: 'A story, please' }));
      await waitFor(() => busy.frames.find((frame) => frame.type === 'response.output_text.delta'), 'a first delta');
      const idleClosed = once(idle.socket, 'close');
      const busyClosed = once(busy.socket, 'close');
      const exited = once(proxy.child, 'exit');
      proxy.child.kill('SIGTERM');
      expect((await idleClosed)[0]).toBe(1001);
      expect((await busyClosed)[0]).toBe(1001);
      expect(busy.frames.at(-1)?.type).toBe('response.completed');
      expect((await exited)[0]).toBe(0);
      expect(proxy.output()).toMatch(/2 Responses WebSocket\(s\) open, 1 with a response in flight/);
      const [record] = readUsageLog(usageLog).filter((entry) => entry.keyId === 'drained');
      expect(record).toMatchObject({ model: SLOW_MODEL, aborted: false, outputTokens: 20 });
    } finally {
      await proxy.stop();
    }
  });
});
