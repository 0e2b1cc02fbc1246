// The MCP route runs the stages it is handed, in its profile's order: admit, then the body, then for a tools/call the
// tool grant, the meter at the tool's price and limitAndReserve; a refusal by a stage is the call's JSON-RPC error.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { ApiError, getContext, renderApiError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { toolMeter } from '@tollgate/metering';
import { TOOL_CALL_REFUSED } from '@tollgate/mcp';
import type { ToolCallMeter } from '../src/options.js';
import type { RunningMcpServer } from '../../../test/helpers/mcp-server.js';
import { waitFor } from '../../../test/helpers/proxy.js';
import { serveMcpGateway } from './helpers/served-gateway.js';
import type { ServedGateway } from './helpers/served-gateway.js';

/** What ran, in order, on every exchange of the test. */
let ran: string[] = [];
/** What ran on the client's POSTs: its GET stream of the server's messages opens when it likes. */
const posted = () => ran.filter((step) => step !== 'admit GET');
/** When set, limitAndReserve refuses every call with it. */
let refusal: ApiError | undefined;
const records: UsageRecord[] = [];

/** Auth as a stage: the bearer token is the key id, on the `free` tier. */
const admitByToken: RequestHandler = (req, res, next) => {
  ran.push(`admit ${req.method}`);
  const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
  if (!token) return renderApiError(new ApiError('invalid_api_key', 'No key.'), req, res);
  getContext(req, res).identity = { keyId: token, tier: 'free', scopes: [], authMethod: 'api_key' };
  next();
};
const charge = toolMeter({ onUsage: (record) => records.push(record) });
const meterInOrder: ToolCallMeter = (req, res, call) => {
  ran.push(`meter ${call.tool} ${call.costNanoUsd}`);
  return charge(req, res, call);
};
function limitAndReserve(req: Request, res: Response, next: NextFunction): void {
  ran.push(`limitAndReserve ${req.tollgate.estimate?.costNanoUsd}`);
  if (refusal) return renderApiError(refusal, req, res);
  next();
}

let upstream: RunningMcpServer;
let gateway: ServedGateway;
let base: string;

beforeAll(async () => {
  gateway = await serveMcpGateway((url) => ({
    servers: { search: { url, nanoUsdPerCall: { web_search: 2_000_000 } } },
    tools: { tiers: { free: ['search/web_search', 'search/broken'] }, defaultTier: 'free' },
    stages: {
      admit: [admitByToken],
      readBody: [express.json(), (_req, _res, next) => (ran.push('readBody'), next())],
      meter: meterInOrder,
      limitAndReserve: [limitAndReserve],
    },
  }));
  upstream = gateway.upstream;
  base = gateway.base;
});

afterAll(() => gateway.close());

beforeEach(() => {
  ran = [];
  refusal = undefined;
  upstream.calls.length = 0;
  records.length = 0;
});

async function connect(): Promise<Client> {
  const client = new Client({ name: 'stages-test', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${base}/search`), {
      requestInit: { headers: { authorization: 'Bearer key-1' } },
    }),
  );
  ran = [];
  return client;
}

describe('createMcpGateway: the stages it is handed', () => {
  it('runs admit and the body on a message, and no meter or limit on anything but a tools/call', async () => {
    const client = await connect();
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual(['broken', 'web_search']);
    expect(posted()).toEqual(['admit POST', 'readBody']);
    await client.close();
  });

  it('prices an allowed call, then runs limitAndReserve on its price, then calls the server and records it', async () => {
    const client = await connect();
    const result = await client.callTool({ name: 'web_search', arguments: { query: 'tollgate' } });
    expect(result.content).toEqual([{ type: 'text', text: 'results for tollgate' }]);
    expect(posted()).toEqual(['admit POST', 'readBody', 'meter search/web_search 2000000', 'limitAndReserve 2000000']);
    expect(upstream.calls).toEqual([{ tool: 'web_search', args: { query: 'tollgate' } }]);
    const record = await waitFor(() => records[0], 'the call recorded');
    expect(record).toMatchObject({ kind: 'tool', tool: 'search/web_search', costNanoUsd: 2_000_000 });
    await client.close();
  });

  it('refuses a tool no grant lists before the meter and the limits, as the call’s JSON-RPC error', async () => {
    const client = await connect();
    const denied = await client.callTool({ name: 'calculator', arguments: { a: 1, b: 2 } }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(McpError);
    expect(denied).toMatchObject({ code: TOOL_CALL_REFUSED, data: { code: 'tool_not_allowed', status: 403 } });
    expect(posted()).toEqual(['admit POST', 'readBody']);
    expect(upstream.calls).toEqual([]);
    await client.close();
  });

  it('answers a refusal by limitAndReserve as the call’s error, and the server never sees the call', async () => {
    const client = await connect();
    refusal = new ApiError('rate_limit_exceeded', 'Too many tool calls.', { headers: { 'Retry-After': '7' } });
    const limited = await client.callTool({ name: 'web_search', arguments: { query: 'x' } }).catch((e: unknown) => e);
    expect(limited).toMatchObject({
      code: TOOL_CALL_REFUSED,
      data: { code: 'rate_limit_exceeded', status: 429, retryAfter: 7 },
    });
    expect(posted()).toEqual(['admit POST', 'readBody', 'meter search/web_search 2000000', 'limitAndReserve 2000000']);
    expect(upstream.calls).toEqual([]);
    const record = await waitFor(() => records[0], 'the refused call recorded');
    expect(record).toMatchObject({ kind: 'tool', tool: 'search/web_search', costNanoUsd: 0 });
    await client.close();
  });

  it('refuses a caller admit refuses with the JSON-RPC error of the exchange, before any server is looked up', async () => {
    const response = await fetch(`${base}/nowhere`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ id: null, error: { data: { code: 'invalid_api_key' } } });
    expect(ran).toEqual(['admit POST']);
  });
});
