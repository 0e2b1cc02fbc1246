// OpenAI's Realtime API on /v1/realtime through the gateway, over real sockets, against a mock upstream that speaks the
// Realtime protocol: each response held before it goes upstream and billed from its `response.done` to the nano-USD
// (text, audio and cached tokens priced apart), a spent budget or a revoked key cutting the session with 1008, a
// response the upstream starts on its own metered too, and the tenant's spend equal to its records.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { IncomingMessage, Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import WebSocket, { WebSocketServer } from 'ws';
import type { UsageRecord } from '@tollgate/core';
import {
  caught,
  memoryAndRedisStores,
  newApiKey,
  readUsageLog,
  sha256Hex,
  startProxy,
  waitFor,
} from './helpers/proxy.js';
import type { OwnedStores, RunningProxy } from './helpers/proxy.js';

const MODEL = 'gpt-realtime';
type Frame = { type: string; [field: string]: unknown };

/**
 * What the mock bills each response: 120 text tokens in (20 of them cached), 300 audio tokens in (100 cached), 40 text
 * tokens and 200 audio tokens out.
 */
const USAGE = {
  total_tokens: 660,
  input_tokens: 420,
  output_tokens: 240,
  input_token_details: {
    text_tokens: 120,
    audio_tokens: 300,
    image_tokens: 0,
    cached_tokens: 120,
    cached_tokens_details: { text_tokens: 20, audio_tokens: 100, image_tokens: 0 },
  },
  output_token_details: { text_tokens: 40, audio_tokens: 200 },
};
/**
 * gpt-realtime's row (@pydantic/genai-prices 0.1.8), USD per 1M tokens: text in 4, cached text 0.4, audio in 32,
 * cached audio 0.4, text out 16, audio out 64. In nano-USD per token: x1000.
 */
const RESPONSE_COST_NANO =
  (120 - 20) * 4_000 + 20 * 400 + (300 - 100) * 32_000 + 100 * 400 + 40 * 16_000 + 200 * 64_000;

/** A Realtime upstream: a session per socket, and per `response.create` (or commit, as voice activity does) a response. */
async function startRealtimeUpstream(apiKey: string) {
  const seen = { authorizations: [] as string[], creates: 0, cancels: 0, paths: [] as string[], mints: [] as Frame[] };
  // Client secrets: minted for the gateway's key only, answered as OpenAI answers them.
  const server: Server = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/realtime/client_secrets') return void res.writeHead(404).end();
      if (req.headers.authorization !== `Bearer ${apiKey}`) return void res.writeHead(401).end();
      const body = JSON.parse(text) as Frame & { session: Record<string, unknown> };
      seen.mints.push(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ value: `ek_${seen.mints.length}`, expires_at: 1_900_000_000, session: body.session }));
    });
  });
  const sockets = new WebSocketServer({ noServer: true });
  let responses = 0;
  server.on('upgrade', (req: IncomingMessage, socket, head) => {
    seen.authorizations.push(req.headers.authorization ?? '');
    seen.paths.push(req.url ?? '');
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    sockets.handleUpgrade(req, socket, head, (ws) => {
      const send = (event: Record<string, unknown>) => ws.send(JSON.stringify(event));
      send({ type: 'session.created', event_id: 'event_1', session: { model: MODEL, max_output_tokens: 'inf' } });
      const respond = () => {
        const id = `resp_${++responses}`;
        send({ type: 'response.created', response: { id, status: 'in_progress' } });
        send({ type: 'response.output_audio.delta', response_id: id, delta: Buffer.from('audio').toString('base64') });
        send({ type: 'response.output_audio_transcript.delta', response_id: id, delta: 'Hello' });
        send({ type: 'response.done', response: { id, status: 'completed', usage: USAGE } });
      };
      ws.on('message', (data) => {
        const event = JSON.parse(data.toString()) as Frame;
        if (event.type === 'session.update') send({ type: 'session.updated', session: event.session });
        if (event.type === 'response.create') {
          seen.creates++;
          // A response that never ends: started, then nothing more.
          const instructions = (event.response as { instructions?: string } | undefined)?.instructions;
          if (instructions === 'hang')
            send({ type: 'response.created', response: { id: `resp_hung_${seen.creates}` } });
          else if (instructions === 'slow') setTimeout(respond, 300);
          else respond();
        }
        if (event.type === 'input_audio_buffer.commit') respond();
        if (event.type === 'response.cancel') seen.cancels++;
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    async close() {
      for (const client of sockets.clients) client.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * TLS in front of the gateway, as a load balancer terminates it: the SDK opens Realtime sockets over `wss:` only. The
 * certificate is made for 127.0.0.1 in `dir`; clients trust it as their CA.
 */
async function startTlsFront(dir: string, port: number) {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1'],
      ...['-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
    ],
    { stdio: 'ignore' },
  );
  const ca = readFileSync(cert);
  const front = createTlsServer({ key: readFileSync(key), cert: ca }, (secure) => {
    const plain = connect(port, '127.0.0.1');
    secure.pipe(plain).pipe(secure);
    plain.on('error', () => secure.destroy());
    secure.on('error', () => plain.destroy());
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  return {
    url: `https://127.0.0.1:${(front.address() as AddressInfo).port}`,
    ca,
    close: () => new Promise<void>((resolve) => front.close(() => resolve())),
  };
}

const opened: WebSocket[] = [];

/** A `ws` socket on the gateway's /v1/realtime with `key`, once open, and every frame it received. */
async function openSession(url: string, key: string) {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/realtime?model=${MODEL}`, {
    headers: { authorization: `Bearer ${key}` },
  });
  opened.push(socket);
  const frames: Frame[] = [];
  socket.on('message', (data) => frames.push(JSON.parse(data.toString()) as Frame));
  const closed = once(socket, 'close') as Promise<[number, Buffer]>;
  await once(socket, 'open');
  return { socket, frames, closed };
}

/** The first frame at or after `from` whose type is `type`. */
const frameOf = (frames: Frame[], type: string, from = 0) =>
  waitFor(() => frames.slice(from).find((frame) => frame.type === type), type);

describe.each(memoryAndRedisStores('realtime'))('the Realtime API on %s stores', (_kind, storesFor) => {
  let owned: OwnedStores;
  let upstream: Awaited<ReturnType<typeof startRealtimeUpstream>>;
  let proxy: RunningProxy;
  let front: Awaited<ReturnType<typeof startTlsFront>>;
  let dir: string;
  let usageLog: string;
  const adminKey = newApiKey();
  const upstreamKey = `upstream-${newApiKey()}`;
  const keys = {
    ...{ sdk: newApiKey(), tight: newApiKey(), spent: newApiKey() },
    ...{ revoked: newApiKey(), voice: newApiKey(), left: newApiKey() },
  };
  const keyConfig = (id: keyof typeof keys, tenant: string) => ({ id, sha256: sha256Hex(keys[id]), tenant });
  const allKeys = [
    keyConfig('sdk', 'acme'),
    keyConfig('tight', 'tight'),
    keyConfig('spent', 'spent'),
    keyConfig('revoked', 'acme'),
    keyConfig('voice', 'acme'),
    keyConfig('left', 'left'),
  ];

  const records = (keyId: string, count: number): Promise<UsageRecord[]> =>
    waitFor(() => {
      const mine = readUsageLog(usageLog).filter((record) => record.keyId === keyId);
      return mine.length >= count ? mine : undefined;
    }, `${count} record(s) of ${keyId}`);

  const tenantSpent = async (tenant: string): Promise<number> => {
    const answer = await fetch(`${proxy.url}/admin/budgets/tenant/${tenant}`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    const body = (await answer.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] };
    return body.budgets[0]!.spentNanoUsd;
  };

  beforeAll(async () => {
    owned = storesFor();
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-realtime-'));
    usageLog = path.join(dir, 'usage.jsonl');
    upstream = await startRealtimeUpstream(upstreamKey);
    proxy = await startProxy(
      {
        usageLog,
        adminKeySha256: sha256Hex(adminKey),
        upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: upstreamKey } },
        tiers: { pro: { models: ['*'] } },
        tenants: {
          acme: { tier: 'pro', budget: { usd: 100, period: 'day' } },
          // One response fits (its hold: 100 output tokens as audio, 6,400,000 nano-USD; its bill 20,288,000); the
          // next one's hold (its 660 tokens of context as audio input, then the cap) does not.
          tight: { tier: 'pro', budget: { usd: 0.03, period: 'day' } },
          spent: { tier: 'pro', budget: { usd: 0.000001, period: 'day' } },
          left: { tier: 'pro', budget: { usd: 10, period: 'day' } },
        },
        keys: allKeys,
      },
      { stores: owned.stores },
    );
    proxy.app.attachResponsesSocket(proxy.server);
    front = await startTlsFront(dir, Number(new URL(proxy.url).port));
  });

  afterAll(async () => {
    for (const socket of opened) socket.terminate();
    await front.close();
    await proxy.close();
    await upstream.close();
    await owned.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the SDK's Realtime client: each response billed from response.done, text, audio and cache priced apart", async () => {
    const client = new OpenAI({ apiKey: keys.sdk, baseURL: `${front.url}/v1`, maxRetries: 0 });
    const session = new OpenAIRealtimeWS({ model: MODEL, options: { ca: front.ca } }, client);
    opened.push(session.socket as unknown as WebSocket);
    const events: Frame[] = [];
    session.on('event', (event) => events.push(event as unknown as Frame));
    await once(session.socket as unknown as WebSocket, 'open');
    await frameOf(events, 'session.created');
    session.send({ type: 'session.update', session: { type: 'realtime', output_modalities: ['audio'] } });
    session.send({
      type: 'conversation.item.create',
      item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Say hello.' }] },
    });
    session.send({ type: 'response.create', response: { max_output_tokens: 500 } });
    const done = await frameOf(events, 'response.done');
    expect(events.map((event) => event.type)).toEqual(
      expect.arrayContaining(['response.created', 'response.output_audio.delta', 'response.done']),
    );
    expect((done.response as { usage: unknown }).usage).toEqual(USAGE);
    session.close();

    const [record] = await records('sdk', 1);
    expect(record).toMatchObject({
      route: '/v1/realtime',
      model: MODEL,
      provider: 'openai',
      usageSource: 'provider',
      inputTokens: 420,
      cachedInputTokens: 120,
      outputTokens: 240,
      aborted: false,
      status: 200,
    });
    expect(record!.costNanoUsd).toBe(20_288_000);
    expect(record!.costNanoUsd).toBe(RESPONSE_COST_NANO);
    // The hold: the whole cap (500) as audio output, and the context the session held so far as audio input.
    expect(record!.estimatedCostNanoUsd).toBeGreaterThanOrEqual(500 * 64_000);
    // The upstream was reached with the gateway's key, never the caller's, at its Realtime path.
    expect(upstream.seen.authorizations.every((value) => value === `Bearer ${upstreamKey}`)).toBe(true);
    expect(upstream.seen.paths).toContain(`/v1/realtime?model=${MODEL}`);
  });

  it('a budget near its end refuses the next response.create with an error event, then closes with 1008', async () => {
    const { socket, frames, closed } = await openSession(proxy.url, keys.tight);
    await frameOf(frames, 'session.created');
    const creates = upstream.seen.creates;
    socket.send(JSON.stringify({ type: 'response.create', response: { max_output_tokens: 100 } }));
    await frameOf(frames, 'response.done');
    const [record] = await records('tight', 1);
    expect(record!.costNanoUsd).toBe(RESPONSE_COST_NANO);

    const from = frames.length;
    socket.send(
      JSON.stringify({ type: 'response.create', event_id: 'evt_second', response: { max_output_tokens: 100 } }),
    );
    const refusal = await frameOf(frames, 'error', from);
    expect(refusal.error).toMatchObject({ code: 'insufficient_quota', event_id: 'evt_second' });
    const [code] = await closed;
    expect(code).toBe(1008);
    // The refused create never reached the upstream.
    expect(upstream.seen.creates).toBe(creates + 1);
    // The money balances: the tenant's spend is its records', to the nano-USD, nothing left held.
    const all = await records('tight', 1);
    expect(all.filter((one) => one.costNanoUsd > 0)).toHaveLength(1);
    await waitFor(async () => ((await tenantSpent('tight')) === RESPONSE_COST_NANO ? true : undefined), 'spend');
  });

  it('a key whose budget is spent is refused at its first response', async () => {
    const { socket, frames, closed } = await openSession(proxy.url, keys.spent);
    await frameOf(frames, 'session.created');
    const creates = upstream.seen.creates;
    socket.send(JSON.stringify({ type: 'response.create' }));
    const refusal = await frameOf(frames, 'error');
    expect(refusal.error).toMatchObject({ code: 'insufficient_quota' });
    expect((await closed)[0]).toBe(1008);
    expect(upstream.seen.creates).toBe(creates);
    expect(await tenantSpent('spent')).toBe(0);
  });

  it('a key revoked while its session is open stops at its next response', async () => {
    const { socket, frames, closed } = await openSession(proxy.url, keys.revoked);
    await frameOf(frames, 'session.created');
    socket.send(JSON.stringify({ type: 'response.create' }));
    await frameOf(frames, 'response.done');
    proxy.app.reloadKeys(allKeys.filter((key) => key.id !== 'revoked'));
    try {
      const from = frames.length;
      socket.send(JSON.stringify({ type: 'response.create' }));
      const refusal = await frameOf(frames, 'error', from);
      expect(refusal.error).toMatchObject({ code: 'invalid_api_key' });
      expect((await closed)[0]).toBe(1008);
    } finally {
      proxy.app.reloadKeys(allKeys);
    }
    const billed = await records('revoked', 1);
    expect(billed.filter((record) => record.status === 200).map((record) => record.costNanoUsd)).toEqual([
      RESPONSE_COST_NANO,
    ]);
  });

  it('a response the upstream starts on its own (voice activity) is held and billed too', async () => {
    const { socket, frames } = await openSession(proxy.url, keys.voice);
    await frameOf(frames, 'session.created');
    socket.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') }));
    socket.send(JSON.stringify({ type: 'input_audio_buffer.commit' }));
    await frameOf(frames, 'response.done');
    expect(frames.map((frame) => frame.type)).toEqual(
      expect.arrayContaining(['response.created', 'response.output_audio.delta', 'response.done']),
    );
    const [record] = await records('voice', 1);
    expect(record).toMatchObject({ route: '/v1/realtime', usageSource: 'provider', costNanoUsd: RESPONSE_COST_NANO });
    socket.close();
  });

  it('a response cut before its response.done (the client left) is billed what was held for it', async () => {
    const { socket, frames, closed } = await openSession(proxy.url, keys.left);
    await frameOf(frames, 'session.created');
    socket.send(
      JSON.stringify({ type: 'response.create', response: { instructions: 'hang', max_output_tokens: 300 } }),
    );
    await frameOf(frames, 'response.created');
    socket.close();
    await closed;
    const [record] = await records('left', 1);
    // Nothing in the session yet: the hold is the cap as audio output, 300 x 64,000 nano-USD.
    expect(record).toMatchObject({ aborted: true, usageSource: 'counted', estimatedCostNanoUsd: 300 * 64_000 });
    expect(record!.costNanoUsd).toBe(300 * 64_000);
    await waitFor(async () => ((await tenantSpent('left')) === 300 * 64_000 ? true : undefined), 'left spend');
  });

  it('an upgrade without a valid key, or without a Realtime model, is refused before any session opens', async () => {
    const base = `${proxy.url.replace(/^http/, 'ws')}/v1/realtime`;
    const refusals: [string, Record<string, string>, number, string][] = [
      [`${base}?model=${MODEL}`, {}, 401, 'invalid_api_key'],
      [`${base}?model=${MODEL}`, { authorization: `Bearer ${newApiKey()}` }, 401, 'invalid_api_key'],
      [`${base}?model=gpt-4o-mini`, { authorization: `Bearer ${keys.sdk}` }, 400, 'invalid_request'],
      [base, { authorization: `Bearer ${keys.sdk}` }, 400, 'invalid_request'],
    ];
    const sessions = upstream.seen.paths.length;
    for (const [url, headers, status, code] of refusals) {
      const socket = new WebSocket(url, { headers });
      socket.on('error', () => undefined);
      const [, res] = (await once(socket, 'unexpected-response')) as [unknown, IncomingMessage];
      let body = '';
      for await (const chunk of res) body += String(chunk);
      expect(res.statusCode).toBe(status);
      expect((JSON.parse(body) as { error: { code: string } }).error.code).toBe(code);
    }
    expect(upstream.seen.paths.length).toBe(sessions);
  });

  it('a client secret is minted only after the budget check, its life capped; a spent budget gets none', async () => {
    const session = { type: 'realtime' as const, model: MODEL };
    const client = new OpenAI({ apiKey: keys.sdk, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const minted = await client.realtime.clientSecrets.create({
      session,
      expires_after: { anchor: 'created_at', seconds: 3600 },
    });
    expect(minted.value).toMatch(/^ek_/);
    expect(upstream.seen.mints.at(-1)).toMatchObject({ expires_after: { anchor: 'created_at', seconds: 600 } });
    const mints = upstream.seen.mints.length;

    const spent = new OpenAI({ apiKey: keys.spent, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const refused = (await caught(spent.realtime.clientSecrets.create({ session }))) as {
      status: number;
      code: string;
    };
    expect([refused.status, refused.code]).toEqual([429, 'insufficient_quota']);
    expect(upstream.seen.mints.length).toBe(mints);
    // The mint is free: recorded at 0, nothing spent.
    const minting = await waitFor(() => {
      const found = readUsageLog(usageLog).filter((record) => record.route === '/v1/realtime/client_secrets');
      return found.length >= 2 ? found : undefined;
    }, 'the mint records');
    expect(minting.map((record) => [record.keyId, record.status, record.costNanoUsd])).toEqual([
      ['sdk', 200, 0],
      ['spent', 429, 0],
    ]);
    expect(minting[1]!.refusedBy).toBe('budget');
  });

  it("the tenant's spend equals its records, to the nano-USD", async () => {
    await proxy.app.flushUsage();
    const billed = readUsageLog(usageLog)
      .filter((record) => record.tenantId === 'acme')
      .reduce((sum, record) => sum + record.costNanoUsd, 0);
    expect(billed).toBe(3 * RESPONSE_COST_NANO);
    await waitFor(async () => ((await tenantSpent('acme')) === billed ? true : undefined), 'acme spend');
  });

  it('a drain closes idle sessions with 1001 at once, a busy one once its response is done; upgrades get 503', async () => {
    const idle = await openSession(proxy.url, keys.left);
    const busy = await openSession(proxy.url, keys.left);
    await frameOf(busy.frames, 'session.created');
    const creates = upstream.seen.creates;
    busy.socket.send(JSON.stringify({ type: 'response.create', response: { instructions: 'slow' } }));
    await waitFor(() => (upstream.seen.creates > creates ? true : undefined), 'the create upstream');
    const before = (await records('left', 1)).length;
    proxy.app.drain();
    expect((await idle.closed)[0]).toBe(1001);
    expect((await busy.closed)[0]).toBe(1001);
    expect(busy.frames.map((frame) => frame.type)).toContain('response.done');
    const billed = await records('left', before + 1);
    expect(billed.at(-1)).toMatchObject({ usageSource: 'provider', costNanoUsd: RESPONSE_COST_NANO });
    const refused = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=${MODEL}`, {
      headers: { authorization: `Bearer ${keys.left}` },
    });
    refused.on('error', () => undefined);
    const [, res] = (await once(refused, 'unexpected-response')) as [unknown, IncomingMessage];
    expect(res.statusCode).toBe(503);
  });
});
