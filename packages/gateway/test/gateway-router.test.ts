// createGateway mounted in a fresh Express app, as a library user mounts it, driven by the official SDKs: it gives
// what the proxy gives (upstream errors mapped, bodies validated, upstream credentials redacted, usage recorded)
// and leaves the app's own routes alone.
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import express from 'express';
import OpenAI from 'openai';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGateway, validateConfig } from '@tollgate/gateway';
import type { Gateway } from '../src/app.js';

const clientKey = generateApiKey();
const upstreamKey = 'sk-upstream-secret-0123456789abcdefghij';
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-gateway-router-'));
const usageLog = path.join(dir, 'usage.jsonl');
let upstream: Server;
let server: Server;
let gateway: Gateway;
let baseUrl: string;

/** A provider: answers chats and messages with usage; "FAIL" gets a 500, "ECHO" a 400 that names the key it got. */
async function provider(req: IncomingMessage, res: ServerResponse): Promise<void> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  const json = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (text.includes('FAIL')) return json(500, { error: { message: 'the model is overloaded', type: 'server_error' } });
  if (text.includes('ECHO'))
    return json(400, {
      error: { message: `bad request from ${String(req.headers.authorization)}`, type: 'invalid_request_error' },
    });
  if (req.url === '/v1/messages')
    return json(200, {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-haiku-4-5',
      content: [{ type: 'text', text: 'hello' }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 12, output_tokens: 3 },
    });
  return json(200, {
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 11, completion_tokens: 2, total_tokens: 13 },
  });
}

beforeAll(async () => {
  upstream = createServer((req, res) => void provider(req, res));
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const config = validateConfig({
    upstreams: {
      openai: { baseUrl: `${upstreamUrl}/v1`, apiKey: upstreamKey },
      anthropic: { baseUrl: upstreamUrl, apiKey: upstreamKey },
    },
    tiers: { pro: { requestsPerMinute: 600, tokensPerMinute: 1_000_000, models: ['*'] } },
    tenants: { acme: { tier: 'pro' } },
    keys: [{ id: 'app-key', sha256: hashApiKey(clientKey), tenant: 'acme', scopes: [] }],
    usageLog,
    log: { level: 'silent' },
  });
  gateway = createGateway(config);
  const app = express();
  app.get('/mine', (_req, res) => void res.json({ mine: true }));
  app.use(gateway);
  app.get('/after', (_req, res) => void res.json({ after: true }));
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await gateway.close();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

const openai = () => new OpenAI({ apiKey: clientKey, baseURL: `${baseUrl}/v1`, maxRetries: 0 });

describe('createGateway in a fresh Express app', () => {
  it('serves a chat completion and a message through the official SDKs, and records their usage', async () => {
    const chat = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(chat.usage?.total_tokens).toBe(13);
    const anthropic = new Anthropic({ apiKey: clientKey, baseURL: baseUrl, maxRetries: 0 });
    const message = await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 32,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(message.usage.output_tokens).toBe(3);
    await gateway.flushUsage();
    const records = readFileSync(usageLog, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.map((r) => [r.model, r.tenantId, r.keyId, r.inputTokens, r.outputTokens, r.usageSource])).toEqual([
      ['gpt-4o-mini', 'acme', 'app-key', 11, 2, 'provider'],
      ['claude-haiku-4-5', 'acme', 'app-key', 12, 3, 'provider'],
    ]);
    expect(records.every((r) => typeof r.costNanoUsd === 'number' && (r.costNanoUsd as number) > 0)).toBe(true);
  });

  it('refuses a body of the wrong shape with 400 before the upstream sees it', async () => {
    const error = await openai()
      .chat.completions.create({ model: 'gpt-4o-mini', messages: 'oops' as never })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).status).toBe(400);
    expect((error as { code?: string }).code).toBe('invalid_request');
  });

  it('maps an upstream failure to 502 upstream_error, not 500', async () => {
    const error = await openai()
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'FAIL' }] })
      .catch((caught: unknown) => caught);
    expect((error as { status?: number }).status).toBe(502);
    expect((error as { code?: string }).code).toBe('upstream_error');
  });

  it('never shows a client the upstream credential an upstream error echoes', async () => {
    const response = await fetch(`${baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'ECHO' }] }),
    });
    const text = await response.text();
    expect(response.status).toBe(400);
    expect(text).not.toContain(upstreamKey);
    expect(text).toContain('bad request from');
  });

  it("leaves the app's own routes, before and after it, to the app", async () => {
    expect(await (await fetch(`${baseUrl}/mine`)).json()).toEqual({ mine: true });
    expect(await (await fetch(`${baseUrl}/after`)).json()).toEqual({ after: true });
    const anonymous = await fetch(`${baseUrl}/v1/chat/completions`, { method: 'POST' });
    expect(anonymous.status).toBe(401);
  });
});
