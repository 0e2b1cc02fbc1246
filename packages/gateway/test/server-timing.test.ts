// Server-Timing on every answer of the gateway, over real HTTP (supertest) and through the official openai SDK: JSON
// and streams, refusals and errors; the gateway's own time and the time it waited for the provider, apart.
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import OpenAI from 'openai';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGateway, createGatewayApp, validateConfig } from '@tollgate/gateway';
import { createMockProvider } from '@tollgate/providers/mock';
import type { Gateway, GatewayApp } from '../src/app.js';

const key = generateApiKey();
const limitedKey = generateApiKey();
const mock = createMockProvider();
const config = validateConfig({
  ...WITH_MOCK,
  tiers: {
    pro: { requestsPerMinute: 600, models: ['*'] },
    limited: { requestsPerMinute: 1, models: ['gpt-4o-mini'] },
  },
  tenants: { acme: { tier: 'pro' }, tight: { tier: 'limited' } },
  keys: [
    { id: 'pro', sha256: hashApiKey(key), tenant: 'acme' },
    { id: 'limited', sha256: hashApiKey(limitedKey), tenant: 'tight' },
  ],
  log: { level: 'silent' },
});
let app: GatewayApp;
let server: Server;
let baseUrl: string;

/** The header's two durations, in ms; fails when the header is missing or not of the contract's shape. */
function timing(header: string | null | undefined): { tollgate: number; upstream: number } {
  const match = /^tollgate;dur=(\d+(?:\.\d)?), upstream;dur=(\d+(?:\.\d)?)$/.exec(header ?? '');
  if (!match) throw new Error(`no Server-Timing of the contract's shape: ${String(header)}`);
  return { tollgate: Number(match[1]), upstream: Number(match[2]) };
}

const ask = { model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user' as const, content: 'Say hello' }] };
const chat = (extra: Record<string, unknown> = {}) => ({ ...ask, ...extra });

beforeAll(async () => {
  app = createGatewayApp(config, { mock, log: () => undefined });
  await app.spendReady();
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  Object.assign(mock.behavior, { latencyMs: 0, failure: 'none' });
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await app.close();
});

describe('Server-Timing over HTTP', () => {
  it('splits a JSON answer into the gateway time and the wait for the provider', async () => {
    // The provider holds its answer 50 ms: that wait is the upstream's, not the gateway's.
    mock.behavior.latencyMs = 50;
    const response = await request(server)
      .post('/v1/chat/completions')
      .set('authorization', `Bearer ${key}`)
      .send(chat())
      .expect(200);
    expect((response.body as { object: string }).object).toBe('chat.completion');
    const { tollgate, upstream } = timing(response.headers['server-timing'] as string);
    expect(upstream).toBeGreaterThanOrEqual(49);
    expect(tollgate).toBeGreaterThanOrEqual(0);
  });

  it('is on every refusal, with no upstream time: 401, 403, 429, 400 (body, unknown model), 404, 405', async () => {
    const refusals = [
      await request(server).post('/v1/chat/completions').send(chat()).expect(401),
      await request(server).post('/v1/chat/completions').set('authorization', `Bearer ${key}`).send({}).expect(400),
      await request(server)
        .post('/v1/chat/completions')
        .set('authorization', `Bearer ${key}`)
        .send(chat({ model: 'no-such-model' }))
        .expect(400),
      await request(server)
        .post('/v1/chat/completions')
        .set('authorization', `Bearer ${limitedKey}`)
        .send(chat({ model: 'gpt-4o' }))
        .expect(403),
      await request(server).post('/v1/no-such-route').send({}).expect(404),
      await request(server).get('/v1/chat/completions').expect(405),
    ];
    await request(server).post('/v1/chat/completions').set('authorization', `Bearer ${limitedKey}`).send(chat());
    refusals.push(
      await request(server)
        .post('/v1/chat/completions')
        .set('authorization', `Bearer ${limitedKey}`)
        .send(chat())
        .expect(429),
    );
    for (const response of refusals) {
      expect(response.headers['content-type']).toMatch(/^application\/json/);
      expect(timing(response.headers['server-timing'] as string).upstream).toBe(0);
    }
  });

  it("is on the provider's error passed on, and on the operator routes", async () => {
    mock.behavior.failure = 'error500';
    const failed = await request(server)
      .post('/v1/chat/completions')
      .set('authorization', `Bearer ${key}`)
      .send(chat())
      .expect(500);
    timing(failed.headers['server-timing'] as string);
    timing((await request(server).get('/healthz')).headers['server-timing'] as string);
    timing((await request(server).get('/v1/models').set('authorization', `Bearer ${key}`)).headers['server-timing']);
  });

  it("goes out with a stream's head: the stream is still open when the header arrives", async () => {
    // The provider sends its head and first event, then nothing: only a header sent with the head can be read.
    mock.behavior.failure = 'hangMidStream';
    const stop = new AbortController();
    const response = await fetch(`${baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(chat({ stream: true })),
      signal: stop.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    timing(response.headers.get('server-timing'));
    const reader = response.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toMatch(/^data: /);
    stop.abort();
    await reader.cancel().catch(() => undefined);
  });
});

describe('Server-Timing through the official openai SDK', () => {
  const client = () => new OpenAI({ apiKey: key, baseURL: `${baseUrl}/v1`, maxRetries: 0 });

  it('leaves JSON answers and streams as the SDK parses them', async () => {
    const { data: completion, response } = await client().chat.completions.create(ask).withResponse();
    expect(completion.choices[0]!.message.content).toEqual(expect.any(String));
    expect(completion.usage?.completion_tokens).toBe(8);
    timing(response.headers.get('server-timing'));

    const { data: stream, response: streamed } = await client()
      .chat.completions.create({ ...ask, stream: true })
      .withResponse();
    timing(streamed.headers.get('server-timing'));
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe(completion.choices[0]!.message.content);
  });

  it("reaches the SDK's errors too", async () => {
    const error = await client()
      .chat.completions.create({ ...ask, model: 'no-such-model' })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    timing((error as InstanceType<typeof OpenAI.BadRequestError>).headers?.get('server-timing'));
  });
});

describe('createGateway in an app whose middleware wraps writeHead first', () => {
  let gateway: Gateway;
  let host: Server;

  beforeAll(async () => {
    gateway = createGateway(config, { mock: createMockProvider(), log: () => undefined });
    const hostApp = express();
    // What on-headers style middleware does: its own writeHead, set before the gateway's.
    hostApp.use(function hostHeader(_req: Request, res: Response, next: NextFunction) {
      const writeHead = res.writeHead;
      res.writeHead = function hostWriteHead(this: Response, ...args: unknown[]) {
        this.setHeader('x-host', 'seen');
        return (writeHead as (...a: unknown[]) => Response).apply(this, args);
      } as Response['writeHead'];
      next();
    });
    hostApp.use(gateway);
    host = hostApp.listen(0, '127.0.0.1');
    await once(host, 'listening');
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => host.close(() => resolve()));
    await gateway.close();
  });

  it("keeps the host's writeHead and adds the header", async () => {
    const response = await request(host)
      .post('/v1/chat/completions')
      .set('authorization', `Bearer ${key}`)
      .send(chat())
      .expect(200);
    expect(response.headers['x-host']).toBe('seen');
    timing(response.headers['server-timing'] as string);
  });
});
