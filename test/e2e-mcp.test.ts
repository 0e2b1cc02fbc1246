// The MCP gateway end to end: the official MCP client through /mcp/search to a real MCP server, on memory and Redis stores.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import type { TollgateStores } from '@tollgate/core';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { TOOL_CALL_REFUSED } from '@tollgate/mcp';
import { startMcpServer } from './helpers/mcp-server.js';
import type { RunningMcpServer } from './helpers/mcp-server.js';
import { fakeOnly } from './helpers/fake-clock.js';
import { caught, newApiKey, readUsageLog, redisTestStores, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'loopy'] as const;
type Name = (typeof NAMES)[number];
const keys = Object.fromEntries(NAMES.map((name) => [name, newApiKey()])) as Record<Name, string>;
const adminKey = newApiKey();
const UPSTREAM_SECRET = 'Bearer upstream-secret';

/**
 * alice (tenant acme, tier pro): the tier grants web_search, the tenant calculator; 3 tool calls a minute.
 * frank and gina (tenant busy, tier pro): the tenant's 3 tool calls a minute, for both keys together.
 * bob (tenant thrift, tier team): every tool; erin (tenant frugal, tier team): a budget of $0.003 a day.
 * carol (no tenant, the default tier free, which grants nothing): her key grants web_search. dave: nothing.
 * loopy (tier team): for the guard's repeated-request check (the same call at most twice a minute).
 */
function gatewayConfig(upstream: RunningMcpServer, usageLog: string): GatewayConfig {
  const key = (id: Name, fields: Record<string, unknown> = {}) => ({ id, sha256: sha256Hex(keys[id]), ...fields });
  return {
    adminKeySha256: sha256Hex(adminKey),
    usageLog,
    // Budgets read right after a call: every reservation goes to Redis itself (blocks are tested on their own).
    redis: { blocks: false },
    guard: { repeatedRequests: { max: 2, windowSeconds: 60 } },
    tiers: {
      free: {},
      pro: { toolCallsPerMinute: 3, tools: ['search/web_search'] },
      team: { tools: ['search/*'] },
    },
    tenants: {
      acme: { tier: 'pro', tools: ['search/calc*'] },
      thrift: { tier: 'team' },
      frugal: { tier: 'team', budget: { usd: 0.003, period: 'day' } },
      busy: { tier: 'pro' },
    },
    keys: [
      key('alice', { tenant: 'acme' }),
      key('bob', { tenant: 'thrift' }),
      key('carol', { tools: ['search/web_search'] }),
      key('dave'),
      key('erin', { tenant: 'frugal' }),
      key('frank', { tenant: 'busy' }),
      key('gina', { tenant: 'busy' }),
      key('loopy', { tier: 'team' }),
    ],
    mcpServers: {
      search: {
        url: upstream.url,
        headers: { authorization: 'SEARCH_MCP_AUTH' },
        tools: { web_search: { usdPerCall: 0.002 }, calculator: { usdPerCall: 0 }, broken: { usdPerCall: 0.01 } },
      },
    },
  } as GatewayConfig;
}

/** The official client, connected (initialized) through the gateway with `key`, or with no key at all. */
async function connect(proxy: RunningProxy, key: string | undefined): Promise<Client> {
  const client = new Client({ name: 'e2e', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(`${proxy.url}/mcp/search`), {
    requestInit: key === undefined ? {} : { headers: { authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  return client;
}

/** An admin route's JSON answer. */
async function admin<T>(proxy: RunningProxy, path: string): Promise<T> {
  const answer = await fetch(`${proxy.url}/admin${path}`, { headers: { authorization: `Bearer ${adminKey}` } });
  return (await answer.json()) as T;
}

/** The JSON-RPC error a refused call answers with. */
async function refusal(promise: Promise<unknown>): Promise<{ code: number; data: { code: string; status: number } }> {
  const error = await caught(promise);
  expect(error).toBeInstanceOf(McpError);
  return error as McpError as { code: number; data: { code: string; status: number } };
}

type TestStores = ReturnType<typeof redisTestStores> | undefined;
const STORES: [string, () => TestStores][] = [
  ['memory', () => undefined],
  ['redis', () => redisTestStores('e2e-mcp')],
];

describe.each(STORES)('the MCP gateway on %s stores', (_kind, makeStores) => {
  let upstream: RunningMcpServer;
  let proxy: RunningProxy;
  let dir: string;
  let release: (() => Promise<void>) | undefined;
  const clients: Client[] = [];
  const open = async (name: Name) => {
    const client = await connect(proxy, keys[name]);
    clients.push(client);
    return client;
  };
  const seen = (tool: string) => upstream.calls.filter((call) => call.tool === tool);
  const records = async () => {
    await proxy.app.flushUsage();
    return readUsageLog(join(dir, 'usage.jsonl')).filter((record) => record.kind === 'tool');
  };
  const tenantBudget = async (tenant: string) =>
    (await admin<{ budgets: { spentNanoUsd: number }[] }>(proxy, `/budgets/tenant/${tenant}`)).budgets[0]!;

  beforeAll(async () => {
    upstream = await startMcpServer();
    dir = mkdtempSync(join(tmpdir(), 'tollgate-mcp-'));
    const made = makeStores();
    release = made?.release;
    const stores: TollgateStores | undefined = made?.stores;
    proxy = await startProxy(gatewayConfig(upstream, join(dir, 'usage.jsonl')), {
      env: { SEARCH_MCP_AUTH: UPSTREAM_SECRET },
      ...(stores ? { stores } : {}),
    });
  });

  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await proxy.close();
    await upstream.close();
    await release?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it('initializes, and lists each key only the tools its tier, tenant or key grants', async () => {
    const listed = async (name: Name) => (await (await open(name)).listTools()).tools.map((tool) => tool.name).sort();
    expect(await listed('alice')).toEqual(['calculator', 'web_search']);
    expect(await listed('bob')).toEqual(['broken', 'calculator', 'delete_everything', 'web_search']);
    expect(await listed('carol')).toEqual(['web_search']);
    expect(await listed('dave')).toEqual([]);
    // The tools keep the server's own descriptions and schemas.
    const [tool] = (await (await open('carol')).listTools()).tools;
    expect(tool).toMatchObject({ description: 'Searches the web.', inputSchema: { required: ['query'] } });
  });

  it('answers an allowed call, records it and charges its price to the budgets', async () => {
    const bob = await open('bob');
    const result = await bob.callTool({ name: 'web_search', arguments: { query: 'priced' } });
    expect(result.content).toEqual([{ type: 'text', text: 'results for priced' }]);
    expect(seen('web_search').map((call) => call.args.query)).toContain('priced');
    const [record] = (await records()).filter((entry) => entry.keyId === 'bob');
    expect(record).toMatchObject({
      kind: 'tool',
      tool: 'search/web_search',
      provider: 'mcp',
      model: null,
      route: '/mcp/search',
      tenantId: 'thrift',
      status: 200,
      costNanoUsd: 2_000_000,
      inputTokens: 0,
      outputTokens: 0,
    });
    // A free tool is recorded at 0.
    expect((await bob.callTool({ name: 'calculator', arguments: { a: 2, b: 3 } })).content).toEqual([
      { type: 'text', text: '5' },
    ]);
    expect((await records()).filter((entry) => entry.keyId === 'bob').map((entry) => entry.costNanoUsd)).toEqual([
      2_000_000, 0,
    ]);
    // A call the tool answers with an error costs nothing.
    expect(await bob.callTool({ name: 'broken', arguments: {} })).toMatchObject({ isError: true });
    expect((await records()).find((entry) => entry.tool === 'search/broken')).toMatchObject({
      keyId: 'bob',
      status: 200,
      costNanoUsd: 0,
      estimatedCostNanoUsd: 10_000_000,
    });
    // The server's credentials come from the gateway's environment; the caller's key never reaches it.
    expect(upstream.headers.every((headers) => headers.authorization === UPSTREAM_SECRET)).toBe(true);
  });

  it('refuses a tool the key may not call with tool_not_allowed; the server never sees it', async () => {
    const alice = await open('alice');
    const denied = await refusal(alice.callTool({ name: 'delete_everything', arguments: {} }));
    expect(denied).toMatchObject({ code: TOOL_CALL_REFUSED, data: { code: 'tool_not_allowed', status: 403 } });
    const dave = await open('dave');
    expect((await refusal(dave.callTool({ name: 'web_search', arguments: { query: 'no' } }))).data.code).toBe(
      'tool_not_allowed',
    );
    expect(seen('delete_everything')).toEqual([]);
    expect(seen('web_search').map((call) => call.args.query)).not.toContain('no');
    // The session goes on after a refusal.
    expect((await alice.callTool({ name: 'calculator', arguments: { a: 1, b: 1 } })).content).toEqual([
      { type: 'text', text: '2' },
    ]);
  });

  it("refuses calls past the tier's toolCallsPerMinute (the tenant's keys together), never forwarded", async () => {
    const [frank, gina] = [await open('frank'), await open('gina')];
    const before = upstream.calls.length;
    await frank.callTool({ name: 'web_search', arguments: { query: 'one' } });
    await gina.callTool({ name: 'web_search', arguments: { query: 'two' } });
    await frank.callTool({ name: 'web_search', arguments: { query: 'three' } });
    const limited = await refusal(gina.callTool({ name: 'web_search', arguments: { query: 'four' } }));
    expect(limited.code).toBe(TOOL_CALL_REFUSED);
    expect(limited.data).toMatchObject({ code: 'rate_limit_exceeded', status: 429 });
    expect((limited.data as { retryAfter?: number }).retryAfter).toBeGreaterThan(0);
    expect(upstream.calls.length - before).toBe(3);
    // Listing costs no call; another tenant of the tier keeps its own.
    expect((await frank.listTools()).tools).toHaveLength(1);
    await (await open('alice')).callTool({ name: 'web_search', arguments: { query: 'elsewhere' } });
    const [refused] = (await records()).filter((entry) => entry.keyId === 'gina' && entry.refusedBy);
    expect(refused).toMatchObject({ tool: 'search/web_search', refusedBy: 'requests', status: 429, costNanoUsd: 0 });
  });

  it('refuses a call its budget cannot pay with insufficient_quota, never forwarded', async () => {
    const erin = await open('erin');
    await erin.callTool({ name: 'web_search', arguments: { query: 'affordable' } });
    const broke = await refusal(erin.callTool({ name: 'web_search', arguments: { query: 'too dear' } }));
    expect(broke.data).toMatchObject({ code: 'insufficient_quota', status: 429 });
    expect(seen('web_search').map((call) => call.args.query)).not.toContain('too dear');
    expect(await tenantBudget('frugal')).toMatchObject({ spentNanoUsd: 2_000_000, reservedNanoUsd: 0 });
  });

  it("refuses the same call repeated past the guard's limit (a loop), never forwarded", async () => {
    const loopy = await open('loopy');
    for (let i = 0; i < 2; i++) await loopy.callTool({ name: 'web_search', arguments: { query: 'again' } });
    const looping = await refusal(loopy.callTool({ name: 'web_search', arguments: { query: 'again' } }));
    expect(looping.data.code).toBe('repeated_request');
    expect(seen('web_search').filter((call) => call.args.query === 'again')).toHaveLength(2);
  });

  it('answers 401 to a client without a valid key, before any session', async () => {
    const missing = await caught(connect(proxy, undefined));
    expect(missing).toBeInstanceOf(StreamableHTTPError);
    expect((missing as StreamableHTTPError).code).toBe(401);
    expect(((await caught(connect(proxy, newApiKey()))) as StreamableHTTPError).code).toBe(401);
    // The answer is a JSON-RPC error too, with the HTTP routes' code and challenge.
    const answer = await fetch(`${proxy.url}/mcp/search`, { method: 'POST', body: '{}' });
    expect(answer.headers.get('www-authenticate')).toBe('Bearer realm="tollgate"');
    expect(await answer.json()).toMatchObject({
      jsonrpc: '2.0',
      id: null,
      error: { data: { code: 'invalid_api_key' } },
    });
  });

  /** A message sent as raw JSON-RPC over HTTP, with `key` and in `session`. */
  const post = (key: string, session: string, body: unknown) =>
    fetch(`${proxy.url}/mcp/search`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': session,
        'mcp-protocol-version': '2025-06-18',
      },
      body: JSON.stringify(body),
    });
  const sessionOf = (client: Client) => (client.transport as StreamableHTTPClientTransport).sessionId!;

  it("keeps a session to the key that opened it: another key gets the SDK's 404", async () => {
    const alice = await open('alice');
    const session = sessionOf(alice);
    const list = { jsonrpc: '2.0', id: 1, method: 'tools/list' };
    const answer = await post(keys.bob, session, list);
    expect(answer.status).toBe(404);
    expect(await answer.json()).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32001 } });
    // Ended by its client (DELETE), the session is gone for its own key too.
    await (alice.transport as StreamableHTTPClientTransport).terminateSession();
    expect((await post(keys.alice, session, list)).status).toBe(404);
  });

  it('refuses a batch holding a tools/call (each call is admitted on its own), never forwarded', async () => {
    const bob = await open('bob');
    const before = upstream.calls.length;
    const call = (id: number) => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'calculator', arguments: { a: id, b: 0 } },
    });
    const answer = await post(keys.bob, sessionOf(bob), [call(101), call(102)]);
    expect(answer.status).toBe(400);
    expect(await answer.json()).toMatchObject({ error: { data: { code: 'invalid_request' } } });
    expect(upstream.calls.length).toBe(before);
  });

  it('records the end user and tags of the attribution headers on a tool call', async () => {
    const client = new Client({ name: 'e2e', version: '1.0.0' });
    clients.push(client);
    const headers = {
      authorization: `Bearer ${keys.bob}`,
      'x-tollgate-user': 'agent-7',
      'x-tollgate-tags': 'agent,eu',
    };
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${proxy.url}/mcp/search`), { requestInit: { headers } }),
    );
    await client.callTool({ name: 'calculator', arguments: { a: 40, b: 2 } });
    expect((await records()).find((record) => record.userId === 'agent-7')).toMatchObject({
      keyId: 'bob',
      tool: 'search/calculator',
      tags: ['agent', 'eu'],
    });
  });
});

describe('the spend-anomaly guard on tool calls', () => {
  let upstream: RunningMcpServer;
  let proxy: RunningProxy;
  let client: Client;

  beforeAll(async () => {
    // The detector's buckets and flushes on jest's clock (HTTP stays real): a bucket passes when the test says so.
    fakeOnly(['Date', 'setInterval', 'clearInterval'], Math.floor(Date.now() / 1000) * 1000 + 100);
    upstream = await startMcpServer();
    const config = {
      guard: {
        spendAnomaly: {
          bucketSeconds: 1,
          zScore: 4,
          minBuckets: 3,
          minSpendUsd: 0.01,
          action: 'suspend',
          watch: ['key'],
        },
      },
      tiers: { team: { tools: ['search/*'] } },
      keys: [{ id: 'runaway', sha256: sha256Hex(keys.loopy), tier: 'team' }],
      mcpServers: { search: { url: upstream.url, tools: { web_search: { usdPerCall: 0.002 } } } },
      adminKeySha256: sha256Hex(adminKey),
    } as GatewayConfig;
    proxy = await startProxy(config);
    client = await connect(proxy, keys.loopy);
  });

  afterAll(async () => {
    jest.useRealTimers();
    await client.close();
    await proxy.close();
    await upstream.close();
  });

  it('suspends a key whose tool spend runs away; its calls are refused and never forwarded', async () => {
    const mitigations = async () =>
      (await admin<{ mitigations: { kind: string; subject: string }[] }>(proxy, '/guard/mitigations')).mitigations;
    // Eight buckets of history, one call each ($0.002), each flushed to the guard's store as its bucket closes.
    for (let bucket = 0; bucket < 8; bucket++) {
      await client.callTool({ name: 'web_search', arguments: { query: `steady ${bucket}` } });
      jest.advanceTimersByTime(1000);
    }
    // A runaway: sixty calls ($0.12) in one bucket.
    for (let i = 0; i < 60; i++) await client.callTool({ name: 'web_search', arguments: { query: `burst ${i}` } });
    jest.advanceTimersByTime(250);
    const suspended = await waitFor(
      async () => (await mitigations()).find((mitigation) => mitigation.kind === 'suspend'),
      'the suspension',
    );
    expect(suspended.subject).toBe('key:runaway');
    const seenBefore = upstream.calls.length;
    const refused = await refusal(client.callTool({ name: 'web_search', arguments: { query: 'after' } }));
    expect(refused.data).toMatchObject({ code: 'key_suspended', status: 403 });
    expect(upstream.calls.length).toBe(seenBefore);
  });
});

describe('the MCP gateway when the MCP server fails', () => {
  let upstream: RunningMcpServer;
  let proxy: RunningProxy;
  let dir: string;

  beforeAll(async () => {
    upstream = await startMcpServer();
    dir = mkdtempSync(join(tmpdir(), 'tollgate-mcp-'));
    const config = {
      adminKeySha256: sha256Hex(adminKey),
      usageLog: join(dir, 'usage.jsonl'),
      tiers: { team: { tools: ['search/*'] } },
      tenants: { thrift: { tier: 'team', budget: { usd: 1, period: 'day' } } },
      keys: [{ id: 'bob', sha256: sha256Hex(keys.bob), tenant: 'thrift' }],
      mcpServers: { search: { url: upstream.url, tools: { web_search: { usdPerCall: 0.002 } } } },
    } as GatewayConfig;
    proxy = await startProxy(config);
  });

  afterAll(async () => {
    await proxy.close();
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers upstream_error, records the call at 0 and gives its reservation back', async () => {
    const bob = await connect(proxy, keys.bob);
    await upstream.close();
    const failed = await refusal(bob.callTool({ name: 'web_search', arguments: { query: 'nobody home' } }));
    expect(failed.data.code).toBe('upstream_error');
    await proxy.app.flushUsage();
    const [record] = readUsageLog(join(dir, 'usage.jsonl'));
    expect(record).toMatchObject({ kind: 'tool', tool: 'search/web_search', status: 502, costNanoUsd: 0 });
    expect(record).not.toHaveProperty('refusedBy');
    expect(await admin(proxy, '/budgets/tenant/thrift')).toMatchObject({
      budgets: [{ spentNanoUsd: 0, reservedNanoUsd: 0 }],
    });
    await bob.close();
    // A new session cannot start without the server: 502.
    expect(((await caught(connect(proxy, keys.bob))) as StreamableHTTPError).code).toBe(502);
  });
});
