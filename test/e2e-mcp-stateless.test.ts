// MCP 2026-07-28 end to end: the official stateless client (@modelcontextprotocol/client) through the gateway's whole
// chain to a real MCP server; grants, toolCallsPerMinute and budgets hold as they do for sessions.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Client, ProtocolError, SdkHttpError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { HEADER_MISMATCH, STATELESS_PROTOCOL_VERSION, TOOL_CALL_REFUSED } from '@tollgate/mcp';
import { startMcpServer } from './helpers/mcp-server.js';
import type { RunningMcpServer } from './helpers/mcp-server.js';
import { caught, newApiKey, readUsageLog, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const NAMES = ['alice', 'dave', 'erin', 'frank', 'gina'] as const;
type Name = (typeof NAMES)[number];
const keys = Object.fromEntries(NAMES.map((name) => [name, newApiKey()])) as Record<Name, string>;

/**
 * alice (tenant acme, tier pro): the tier grants web_search, the tenant calculator. dave: nothing.
 * frank and gina (tenant busy, tier pro): 3 tool calls a minute for both keys together.
 * erin (tenant frugal, tier team): every tool, a budget of $0.003 a day.
 */
function gatewayConfig(upstream: RunningMcpServer, usageLog: string): GatewayConfig {
  const key = (id: Name, fields: Record<string, unknown> = {}) => ({ id, sha256: sha256Hex(keys[id]), ...fields });
  return {
    usageLog,
    tiers: { free: {}, pro: { toolCallsPerMinute: 3, tools: ['search/web_search'] }, team: { tools: ['search/*'] } },
    tenants: {
      acme: { tier: 'pro', tools: ['search/calc*'] },
      frugal: { tier: 'team', budget: { usd: 0.003, period: 'day' } },
      busy: { tier: 'pro' },
    },
    keys: [
      key('alice', { tenant: 'acme' }),
      key('dave'),
      key('erin', { tenant: 'frugal' }),
      key('frank', { tenant: 'busy' }),
      key('gina', { tenant: 'busy' }),
    ],
    mcpServers: {
      search: { url: upstream.url, tools: { web_search: { usdPerCall: 0.002 }, calculator: { usdPerCall: 0 } } },
    },
  } as GatewayConfig;
}

describe('the MCP gateway on the stateless revision', () => {
  let upstream: RunningMcpServer;
  let proxy: RunningProxy;
  let dir: string;
  const clients: Client[] = [];
  const open = async (name: Name) => {
    const client = new Client(
      { name: 'e2e-stateless', version: '1.0.0' },
      { versionNegotiation: { mode: { pin: STATELESS_PROTOCOL_VERSION } } },
    );
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${proxy.url}/mcp/search`), {
        requestInit: { headers: { authorization: `Bearer ${keys[name]}` } },
      }),
    );
    clients.push(client);
    return client;
  };
  const refusal = async (promise: Promise<unknown>) => {
    const error = await caught(promise);
    expect(error).toBeInstanceOf(ProtocolError);
    return error as ProtocolError & { data: { code: string; status: number } };
  };
  const seen = (query: string) => upstream.calls.filter((call) => call.args.query === query);

  beforeAll(async () => {
    upstream = await startMcpServer();
    dir = mkdtempSync(join(tmpdir(), 'tollgate-mcp-stateless-'));
    proxy = await startProxy(gatewayConfig(upstream, join(dir, 'usage.jsonl')));
  });

  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await proxy.close();
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists each key its granted tools and refuses the others with tool_not_allowed, never forwarded', async () => {
    const alice = await open('alice');
    expect((await alice.listTools()).tools.map((tool) => tool.name).sort()).toEqual(['calculator', 'web_search']);
    expect((await (await open('dave')).listTools()).tools).toEqual([]);
    const denied = await caught(alice.callTool({ name: 'delete_everything', arguments: {} }));
    // Refused from its headers before its body (and id) is read: HTTP 403, which the SDK raises as an HTTP error.
    expect(denied).toBeInstanceOf(SdkHttpError);
    expect((denied as SdkHttpError).data?.status).toBe(403);
    expect(JSON.parse((denied as SdkHttpError & { data: { text: string } }).data.text)).toMatchObject({
      id: null,
      error: { code: TOOL_CALL_REFUSED, data: { code: 'tool_not_allowed' } },
    });
    expect(upstream.calls.filter((call) => call.tool === 'delete_everything')).toEqual([]);
  });

  it('records a call at its price, with the route it came by', async () => {
    const alice = await open('alice');
    const result = await alice.callTool({ name: 'web_search', arguments: { query: 'stateless' } });
    expect(result.content).toEqual([{ type: 'text', text: 'results for stateless' }]);
    await proxy.app.flushUsage();
    const [record] = readUsageLog(join(dir, 'usage.jsonl')).filter((entry) => entry.keyId === 'alice');
    expect(record).toMatchObject({
      kind: 'tool',
      tool: 'search/web_search',
      route: '/mcp/search',
      tenantId: 'acme',
      status: 200,
      costNanoUsd: 2_000_000,
    });
  });

  it("refuses calls past the tier's toolCallsPerMinute (the tenant's keys together), never forwarded", async () => {
    const [frank, gina] = [await open('frank'), await open('gina')];
    for (const [client, query] of [
      [frank, 'f1'],
      [gina, 'g1'],
      [frank, 'f2'],
    ] as const)
      await client.callTool({ name: 'web_search', arguments: { query } });
    const limited = await refusal(gina.callTool({ name: 'web_search', arguments: { query: 'g2' } }));
    expect(limited.code).toBe(TOOL_CALL_REFUSED);
    expect(limited.data).toMatchObject({ code: 'rate_limit_exceeded', status: 429 });
    expect(seen('g2')).toEqual([]);
  });

  it('refuses a call its budget cannot pay with insufficient_quota, never forwarded', async () => {
    const erin = await open('erin');
    await erin.callTool({ name: 'web_search', arguments: { query: 'affordable' } });
    const broke = await refusal(erin.callTool({ name: 'web_search', arguments: { query: 'too dear' } }));
    expect(broke.data).toMatchObject({ code: 'insufficient_quota', status: 429 });
    expect(seen('too dear')).toEqual([]);
  });

  it('refuses headers naming an allowed tool over a body calling a denied one, through the whole chain', async () => {
    const answer = await fetch(`${proxy.url}/mcp/search`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${keys.alice}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': STATELESS_PROTOCOL_VERSION,
        'mcp-method': 'tools/call',
        'mcp-name': 'web_search',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'delete_everything' } }),
    });
    expect(answer.status).toBe(400);
    expect(await answer.json()).toMatchObject({ error: { code: HEADER_MISMATCH, data: { code: 'invalid_request' } } });
    expect(upstream.calls.filter((call) => call.tool === 'delete_everything')).toEqual([]);
  });
});
