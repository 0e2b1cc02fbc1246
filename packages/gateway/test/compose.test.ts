// tollgate(parts): the chain in code answers as the gateway does: a route's other methods are 405 in the API's shape,
// a caller without a key is 401, a cached answer is served again, a count passes the request limits only, and an MCP
// tool call passes the same guard, auth, limits and budget.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from '@jest/globals';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import express from 'express';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createMemoryStores } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { tollgate } from '../src/compose.js';
import { partsFromConfig } from '../src/config-parts.js';
import { validateConfig } from '../src/config/index.js';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { startMcpServer } from '../../../test/helpers/mcp-server.js';
import { closeServer } from '../../../test/helpers/proxy.js';

const stores = createMemoryStores();
const key = generateApiKey();
await stores.keys.put({
  id: 'composed',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'free',
  scopes: [],
  createdAt: new Date().toISOString(),
});
const gateway = tollgate({
  stores,
  limits: { requests: { layers: [{ name: 'tenant', by: 'tenant', limit: 3, window: '1m' }] } },
  cache: {},
});
const app = express().use(gateway);
afterAll(async () => {
  await gateway.close();
  await stores.close();
});

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] };

describe('tollgate(parts)', () => {
  it('answers another method on a provider route with 405 and Allow: POST, in the API error shape', async () => {
    const answer = await request(app).get('/v1/chat/completions');
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe('POST');
    expect((answer.body as { error: { code: string } }).error.code).toBe('method_not_allowed');
  });

  it('refuses a caller without a key, and serves the same request from the cache the second time', async () => {
    expect((await request(app).post('/v1/chat/completions').send(chat)).status).toBe(401);
    const first = await request(app).post('/v1/chat/completions').set('authorization', `Bearer ${key}`).send(chat);
    const second = await request(app).post('/v1/chat/completions').set('authorization', `Bearer ${key}`).send(chat);
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.headers['x-tollgate-cache']).toBe('hit');
    type Chat = { choices: unknown[]; usage: { cost_usd: number } };
    expect((second.body as Chat).choices).toEqual((first.body as Chat).choices);
    // The meter runs on the composed route: the call is priced, the hit is not charged.
    expect((first.body as Chat).usage.cost_usd).toBeGreaterThan(0);
    expect((second.body as Chat).usage.cost_usd).toBe(0);
  });

  it('counts a token count against the request limits it shares with the calls', async () => {
    const count = await request(app)
      .post('/v1/messages/count_tokens')
      .set('authorization', `Bearer ${key}`)
      .send({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hello' }] });
    expect(count.status).toBe(200);
    expect((count.body as { input_tokens: number }).input_tokens).toBeGreaterThan(0);
    // Two calls and this count: the tenant's fourth request in the minute is refused.
    const refused = await request(app).post('/v1/chat/completions').set('authorization', `Bearer ${key}`).send(chat);
    expect(refused.status).toBe(429);
  });
});

/** A memory store with one key of tenant `tenant` in it; its bearer token. */
async function storeWithKey(tenant: string) {
  const own = createMemoryStores();
  const token = generateApiKey();
  await own.keys.put({
    id: `${tenant}-key`,
    sha256: hashApiKey(token),
    tenantId: tenant,
    tier: 'free',
    scopes: [],
    createdAt: new Date().toISOString(),
  });
  return { own, token };
}

describe('tollgate(parts) with the guard and shadow mode', () => {
  it('shadows the limits for the tenants named: over its limit, a shadowed tenant is served and its refusal recorded', async () => {
    const { own, token } = await storeWithKey('trial');
    const records: { shadowRefusal?: string }[] = [];
    const layers = [{ name: 'tenant', by: 'tenant' as const, limit: 1, window: '1m' }];
    const shadowed = tollgate({
      stores: own,
      limits: { requests: { layers } },
      shadow: { tenants: ['trial'] },
      meter: {
        sinks: [{ write: (record) => void records.push(record), flush: async () => {}, close: async () => {} }],
      },
    });
    const plain = tollgate({ stores: own, limits: { requests: { layers } } });
    try {
      const shadowApp = express().use(shadowed);
      const send = (app: express.Express) =>
        request(app).post('/v1/chat/completions').set('authorization', `Bearer ${token}`).send(chat);
      expect((await send(shadowApp)).status).toBe(200);
      expect((await send(shadowApp)).status).toBe(200);
      expect(records.map((record) => record.shadowRefusal)).toEqual([undefined, 'rate_limit_exceeded']);
      // The same stores and limit without shadow mode: its own counter, refused once past it.
      const plainApp = express().use(plain);
      expect((await send(plainApp)).status).toBe(200);
      expect((await send(plainApp)).status).toBe(429);
    } finally {
      await shadowed.close();
      await plain.close();
      await own.close();
    }
  });

  it("runs the guard's checks at their stages: an address past its failed authentications is blocked, a repeat refused", async () => {
    const { own, token } = await storeWithKey('acme');
    const lines: string[] = [];
    const guarded = tollgate({
      stores: own,
      guard: {
        authFailures: { max: 2, windowSeconds: 60, block: '1m' },
        repeatedRequests: { max: 2, windowSeconds: 60 },
        log: (line) => lines.push(line),
      },
    });
    try {
      const app = express().use(guarded);
      const call = (bearer: string, body: object = chat) =>
        request(app).post('/v1/chat/completions').set('authorization', `Bearer ${bearer}`).send(body);
      // The same prompt twice is allowed, a third time within the window is a repeat.
      expect((await call(token)).status).toBe(200);
      expect((await call(token)).status).toBe(200);
      const repeated = await call(token);
      expect(repeated.status).toBe(429);
      expect((repeated.body as { error: { code: string } }).error.code).toBe('repeated_request');
      // Two wrong keys from this address, then the address is refused before auth, its own key too.
      expect((await call('tg_wrong_1', { ...chat, user: 'a' })).status).toBe(401);
      expect((await call('tg_wrong_2', { ...chat, user: 'b' })).status).toBe(401);
      const blocked = await call(token, { ...chat, user: 'c' });
      expect(blocked.status).toBe(429);
      expect((blocked.body as { error: { code: string } }).error.code).toBe('auth_failures_exceeded');
      expect(lines.some((line) => line.includes('tollgate alert'))).toBe(true);
    } finally {
      await guarded.close();
      await own.close();
    }
  });
});

describe('tollgate(partsFromConfig(config))', () => {
  it("serves a config's chain as createGateway does, without the operator's routes", async () => {
    const token = generateApiKey();
    const composed = tollgate(
      partsFromConfig(
        validateConfig({
          ...WITH_MOCK,
          keys: [{ id: 'k', sha256: hashApiKey(token), tier: 'free' }],
          tiers: { free: { requestsPerMinute: 1 } },
          log: { level: 'silent' },
        }),
        { metrics: false, log: () => undefined },
      ),
    );
    try {
      const app = express().use(composed);
      const call = () => request(app).post('/v1/chat/completions').set('authorization', `Bearer ${token}`).send(chat);
      expect((await call()).status).toBe(200);
      // The config's tier: one request a minute.
      expect((await call()).status).toBe(429);
      expect((await request(app).get('/healthz')).status).toBe(404);
    } finally {
      await composed.close();
    }
  });
});

describe('tollgate(parts) with MCP servers', () => {
  it('serves /mcp/<server> behind the same guard, auth, limits and budget: a tool call priced, limited, recorded', async () => {
    const upstream = await startMcpServer();
    const { own, token } = await storeWithKey('acme');
    const records: UsageRecord[] = [];
    const composed = tollgate({
      stores: own,
      guard: { authFailures: { max: 5, windowSeconds: 60, block: '1m' }, log: () => undefined },
      meter: {
        sinks: [{ write: (record) => void records.push(record), flush: async () => {}, close: async () => {} }],
      },
      budget: { global: { usd: 0.01, period: 'day' } },
      mcp: {
        servers: { search: { url: upstream.url, nanoUsdPerCall: { web_search: 2_000_000, calculator: 9_000_000 } } },
        tools: { tiers: { free: ['search/web_search', 'search/calculator'] } },
        toolCalls: { layers: [{ name: 'tenant', by: 'tenant', limit: 2, window: '1m' }] },
      },
    });
    const app = express().use(composed);
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp/search`);
    const connect = async (bearer: string) => {
      const client = new Client({ name: 'compose', version: '1.0.0' });
      await client.connect(
        new StreamableHTTPClientTransport(url, { requestInit: { headers: { authorization: `Bearer ${bearer}` } } }),
      );
      return client;
    };
    const refusal = async (call: Promise<unknown>) => {
      const error = await call.then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(McpError);
      return (error as McpError).data as { code: string; status: number };
    };
    try {
      // Auth: a wrong key never reaches the server.
      await expect(connect('tg_wrong')).rejects.toThrow();
      const client = await connect(token);
      expect((await client.listTools()).tools.map((tool) => tool.name).sort()).toEqual(['calculator', 'web_search']);
      const found = await client.callTool({ name: 'web_search', arguments: { query: 'composed' } });
      expect(found.content).toEqual([{ type: 'text', text: 'results for composed' }]);
      // The budget: $0.002 spent of $0.01, a $0.009 call is refused and never forwarded.
      expect(await refusal(client.callTool({ name: 'calculator', arguments: { a: 1, b: 2 } }))).toMatchObject({
        code: 'insufficient_quota',
        status: 429,
      });
      // The tool-call limit: two a minute (the refused call gave its count back).
      await client.callTool({ name: 'web_search', arguments: { query: 'again' } });
      expect(await refusal(client.callTool({ name: 'web_search', arguments: { query: 'third' } }))).toMatchObject({
        code: 'rate_limit_exceeded',
        status: 429,
      });
      expect(upstream.calls.map((call) => call.args.query ?? call.tool)).toEqual(['composed', 'again']);
      const tools = records.filter((record) => record.kind === 'tool' && record.status === 200);
      expect(tools.map((record) => [record.tool, record.costNanoUsd])).toEqual([
        ['search/web_search', 2_000_000],
        ['search/web_search', 2_000_000],
      ]);
      await client.close();
    } finally {
      await composed.close();
      await closeServer(server);
      await upstream.close();
      await own.close();
    }
  });
});
