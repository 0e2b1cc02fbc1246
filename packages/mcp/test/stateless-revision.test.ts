// MCP 2026-07-28 beside the session protocol: no initialize, no session; `Mcp-Method` / `Mcp-Name` name the call, the
// tool grant and the limits read them, and a body that disagrees with them is refused, never served.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import request from 'supertest';
import { Client as SessionClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as SessionTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client, ProtocolError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { ApiError, getContext, renderApiError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { toolMeter } from '@tollgate/metering';
import { HEADER_MISMATCH, STATELESS_PROTOCOL_VERSION, TOOL_CALL_REFUSED } from '@tollgate/mcp';
import type { RunningMcpServer } from '../../../test/helpers/mcp-server.js';
import { waitFor } from '../../../test/helpers/proxy.js';
import { serveMcpGateway } from './helpers/served-gateway.js';
import type { ServedGateway } from './helpers/served-gateway.js';

/** What ran, in order, on the test's POSTs. */
let ran: string[] = [];
/** The headers of every exchange the gateway received. */
const received: Record<string, string | string[] | undefined>[] = [];
const records: UsageRecord[] = [];
/** Calls each tool may make, by the name `Mcp-Name` gives it (a limiter that reads no body, as a load balancer's). */
const CALLS_PER_TOOL = 2;
const callsByHeader = new Map<string, number>();

/** Auth as a stage: the bearer token is the key id, on the `free` tier. */
const admitByToken: RequestHandler = (req, res, next) => {
  received.push({ ...req.headers });
  if (req.method === 'POST') ran.push('admit');
  const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
  if (!token) return renderApiError(new ApiError('invalid_api_key', 'No key.'), req, res);
  getContext(req, res).identity = { keyId: token, tier: 'free', scopes: [], authMethod: 'api_key' };
  next();
};
const charge = toolMeter({ onUsage: (record) => records.push(record) });

/** A per-tool limit keyed by the `Mcp-Name` header (the session protocol's calls carry none: not limited here). */
function limitPerToolHeader(req: Request, res: Response, next: NextFunction): void {
  ran.push(`limitAndReserve ${req.tollgate.estimate?.costNanoUsd}`);
  const name = req.headers['mcp-name'];
  if (typeof name !== 'string') return next();
  const count = (callsByHeader.get(name) ?? 0) + 1;
  callsByHeader.set(name, count);
  if (count > CALLS_PER_TOOL)
    return renderApiError(
      new ApiError('rate_limit_exceeded', `No more ${name} calls this minute.`, { headers: { 'Retry-After': '60' } }),
      req,
      res,
    );
  next();
}

let upstream: RunningMcpServer;
let gateway: ServedGateway;
let app: express.Express;
let base: string;

beforeAll(async () => {
  gateway = await serveMcpGateway((url) => ({
    servers: { search: { url, nanoUsdPerCall: { web_search: 2_000_000, calculator: 1_000 } } },
    tools: { tiers: { free: ['search/web_search', 'search/calculator'] } },
    stages: {
      admit: [admitByToken],
      readBody: [express.json(), (_req, _res, next) => (ran.push('readBody'), next())],
      meter: (req, res, call) => (ran.push(`meter ${call.tool} ${call.costNanoUsd}`), charge(req, res, call)),
      limitAndReserve: [limitPerToolHeader],
    },
  }));
  upstream = gateway.upstream;
  app = gateway.app;
  base = gateway.base;
});

afterAll(() => gateway.close());

beforeEach(() => {
  ran = [];
  received.length = 0;
  records.length = 0;
  upstream.calls.length = 0;
  callsByHeader.clear();
});

const STATELESS = {
  authorization: 'Bearer key-1',
  accept: 'application/json, text/event-stream',
  'mcp-protocol-version': STATELESS_PROTOCOL_VERSION,
};

/** A tools/call of the stateless revision: `headers` may say other than the body does. */
function callTool(name: string, headers: Record<string, string>, args: Record<string, unknown> = {}, id = 7) {
  return request(app)
    .post('/tools/search')
    .set({ ...STATELESS, ...headers })
    .send({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: {
        name,
        arguments: args,
        _meta: { 'io.modelcontextprotocol/protocolVersion': STATELESS_PROTOCOL_VERSION },
      },
    });
}

describe('MCP 2026-07-28 through the official SDK client (@modelcontextprotocol/client)', () => {
  async function connectStateless(): Promise<Client> {
    const client = new Client(
      { name: 'stateless-test', version: '1.0.0' },
      { versionNegotiation: { mode: { pin: STATELESS_PROTOCOL_VERSION } } },
    );
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${base}/search`), {
        requestInit: { headers: { authorization: 'Bearer key-1' } },
      }),
    );
    return client;
  }

  it('discovers, lists and calls a granted tool: no initialize, no session, the headers on every request', async () => {
    const client = await connectStateless();
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual(['calculator', 'web_search']);
    ran = [];
    const result = await client.callTool({ name: 'web_search', arguments: { query: 'tollgate' } });
    expect(result.content).toEqual([{ type: 'text', text: 'results for tollgate' }]);
    expect(ran).toEqual(['admit', 'readBody', 'meter search/web_search 2000000', 'limitAndReserve 2000000']);
    expect(upstream.calls).toEqual([{ tool: 'web_search', args: { query: 'tollgate' } }]);
    const record = await waitFor(() => records[0], 'the call recorded');
    expect(record).toMatchObject({ kind: 'tool', tool: 'search/web_search', costNanoUsd: 2_000_000 });
    await client.close();

    const methods = received.map((headers) => headers['mcp-method']);
    expect(methods).toEqual(['server/discover', 'tools/list', 'tools/call']);
    expect(received.at(-1)).toMatchObject({ 'mcp-name': 'web_search', 'mcp-protocol-version': '2026-07-28' });
    expect(received.every((headers) => headers['mcp-session-id'] === undefined)).toBe(true);
  });

  it('answers a call over its tool’s limit with the call’s JSON-RPC error, and the server never sees it', async () => {
    const client = await connectStateless();
    for (let call = 0; call < CALLS_PER_TOOL; call++)
      await client.callTool({ name: 'calculator', arguments: { a: 1, b: 2 } });
    const limited = await client.callTool({ name: 'calculator', arguments: { a: 1, b: 2 } }).catch((e: unknown) => e);
    expect(limited).toBeInstanceOf(ProtocolError);
    expect(limited).toMatchObject({ code: TOOL_CALL_REFUSED, data: { code: 'rate_limit_exceeded', retryAfter: 60 } });
    expect(upstream.calls).toHaveLength(CALLS_PER_TOOL);
    await client.close();
  });
});

describe('MCP 2026-07-28 over raw HTTP: the headers decide, the body must agree', () => {
  it('passes an allowed tool named in both, priced and limited by its name, as a complete result', async () => {
    const response = await callTool(
      'web_search',
      { 'mcp-method': 'tools/call', 'mcp-name': 'web_search' },
      { query: 'a' },
    );
    expect(response.status).toBe(200);
    expect(response.headers['mcp-session-id']).toBeUndefined();
    expect(response.body).toEqual({
      jsonrpc: '2.0',
      id: 7,
      result: { content: [{ type: 'text', text: 'results for a' }], resultType: 'complete' },
    });
    expect(ran).toEqual(['admit', 'readBody', 'meter search/web_search 2000000', 'limitAndReserve 2000000']);
    expect(callsByHeader.get('web_search')).toBe(1);
  });

  it('refuses a tool no grant lists from the headers alone: the body is never read', async () => {
    const response = await callTool('delete_everything', {
      'mcp-method': 'tools/call',
      'mcp-name': 'delete_everything',
    });
    expect(response.status).toBe(403);
    expect(response.body).toMatchObject({
      id: null,
      error: { code: TOOL_CALL_REFUSED, data: { code: 'tool_not_allowed', status: 403 } },
    });
    expect(ran).toEqual(['admit']);
    expect(upstream.calls).toEqual([]);
  });

  it('refuses a header naming an allowed tool over a body calling a denied one, before meter and limits', async () => {
    const response = await callTool('delete_everything', { 'mcp-method': 'tools/call', 'mcp-name': 'web_search' });
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ error: { code: HEADER_MISMATCH, data: { code: 'invalid_request' } } });
    expect(response.body.error.message).toMatch(/Mcp-Name says "web_search"/);
    expect(ran).toEqual(['admit', 'readBody']);
    expect(upstream.calls).toEqual([]);
    expect(callsByHeader.size).toBe(0);
  });

  it('refuses a header naming a tool under its limit over a body calling one past it', async () => {
    const named = { 'mcp-method': 'tools/call', 'mcp-name': 'web_search' };
    for (let call = 0; call < CALLS_PER_TOOL; call++)
      expect((await callTool('web_search', named, { query: 'q' })).body.result.resultType).toBe('complete');
    const past = await callTool('web_search', named, { query: 'q' });
    expect(past.body).toMatchObject({
      id: 7,
      error: { code: TOOL_CALL_REFUSED, data: { code: 'rate_limit_exceeded' } },
    });
    const dodged = await callTool(
      'web_search',
      { 'mcp-method': 'tools/call', 'mcp-name': 'calculator' },
      { query: 'q' },
    );
    expect(dodged.status).toBe(400);
    expect(dodged.body.error.code).toBe(HEADER_MISMATCH);
    expect(upstream.calls).toHaveLength(CALLS_PER_TOOL);
  });

  it('opens its own session with the server again once the server forgot it', async () => {
    const named = (name: string) => ({ 'mcp-method': 'tools/call', 'mcp-name': name });
    expect((await callTool('web_search', named('web_search'), { query: 'before' })).body.result).toBeDefined();
    await upstream.forgetSessions();
    const lost = await callTool('calculator', named('calculator'), { a: 1, b: 1 });
    expect(lost.body).toMatchObject({ id: 7, error: { data: { code: 'upstream_error' } } });
    const again = await callTool('calculator', named('calculator'), { a: 2, b: 2 });
    expect(again.body.result.content).toEqual([{ type: 'text', text: '4' }]);
    expect(upstream.calls.map((call) => call.tool)).toEqual(['web_search', 'calculator']);
  });

  it('refuses an Mcp-Method the body does not match: a tools/call dressed as tools/list', async () => {
    const response = await callTool('web_search', { 'mcp-method': 'tools/list' });
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ id: null, error: { code: HEADER_MISMATCH } });
    expect(response.body.error.message).toMatch(/Mcp-Method/);
    expect(upstream.calls).toEqual([]);
  });

  it('refuses a request without the headers the revision requires, before reading its body', async () => {
    const noMethod = await callTool('web_search', {});
    expect(noMethod.status).toBe(400);
    expect(noMethod.body.error).toMatchObject({ code: HEADER_MISMATCH, message: expect.stringMatching(/Mcp-Method/) });
    const noName = await callTool('web_search', { 'mcp-method': 'tools/call' });
    expect(noName.status).toBe(400);
    expect(noName.body.error).toMatchObject({ code: HEADER_MISMATCH, message: expect.stringMatching(/Mcp-Name/) });
    expect(ran).toEqual(['admit', 'admit']);
    expect(upstream.calls).toEqual([]);
  });

  it('refuses a body speaking 2026-07-28 under another revision’s header, and the reverse', async () => {
    const olderHeader = await callTool('web_search', {
      'mcp-protocol-version': '2025-11-25',
      'mcp-method': 'tools/call',
      'mcp-name': 'web_search',
    });
    expect(olderHeader.status).toBe(400);
    expect(olderHeader.body.error).toMatchObject({ code: HEADER_MISMATCH });
    const olderBody = await request(app)
      .post('/tools/search')
      .set({ ...STATELESS, 'mcp-method': 'tools/list' })
      .send({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/list',
        params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2025-11-25' } },
      });
    expect(olderBody.status).toBe(400);
    expect(olderBody.body.error).toMatchObject({ code: HEADER_MISMATCH });
    expect(upstream.calls).toEqual([]);
  });

  it('lists only granted tools, uncacheable for others; accepts a notification; GET has no stream', async () => {
    const listed = await request(app)
      .post('/tools/search')
      .set({ ...STATELESS, 'mcp-method': 'tools/list' })
      .send({ jsonrpc: '2.0', id: 'l', method: 'tools/list' });
    expect(listed.status).toBe(200);
    expect(listed.body.result).toMatchObject({ resultType: 'complete', ttlMs: 0, cacheScope: 'private' });
    expect(listed.body.result.tools.map((tool: { name: string }) => tool.name).sort()).toEqual([
      'calculator',
      'web_search',
    ]);
    const notified = await request(app)
      .post('/tools/search')
      .set({ ...STATELESS, 'mcp-method': 'notifications/cancelled' })
      .send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 3 } });
    expect(notified.status).toBe(202);
    const stream = await request(app).get('/tools/search').set(STATELESS);
    expect(stream.status).toBe(405);
    expect(stream.headers.allow).toBe('POST');
  });
});

describe('the session protocol beside it', () => {
  it('still initializes, holds a session and admits calls for a client of an older revision', async () => {
    const client = new SessionClient({ name: 'session-test', version: '1.0.0' });
    const transport = new SessionTransport(new URL(`${base}/search`), {
      requestInit: { headers: { authorization: 'Bearer key-1' } },
    });
    await client.connect(transport);
    expect(transport.sessionId).toEqual(expect.any(String));
    expect(transport.protocolVersion).toBe('2025-11-25');
    const result = await client.callTool({ name: 'calculator', arguments: { a: 2, b: 3 } });
    expect(result.content).toEqual([{ type: 'text', text: '5' }]);
    const denied = await client.callTool({ name: 'delete_everything' }).catch((e: unknown) => e);
    expect(denied).toMatchObject({ code: TOOL_CALL_REFUSED, data: { code: 'tool_not_allowed' } });
    expect(upstream.calls).toEqual([{ tool: 'calculator', args: { a: 2, b: 3 } }]);
    await client.close();
  });
});
