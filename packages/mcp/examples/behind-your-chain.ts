// packages/mcp/examples/behind-your-chain.ts: an MCP server behind your own keys and budgets: tools allowed per tier, priced per call.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { toolMeter } from '@tollgate/metering';
import { createMcpGateway } from '@tollgate/mcp';

// A weather MCP server on its own port, one stateless transport per request (as in the SDK's own examples).
const weather = express().all('/mcp', express.json(), async (req, res) => {
  const tools = new McpServer({ name: 'weather', version: '1.0.0' });
  tools.registerTool('forecast', { inputSchema: { city: z.string() } }, async ({ city }) => ({
    content: [{ type: 'text', text: `${city}: sunny, 21°C` }],
  }));
  tools.registerTool('set_alarm', {}, async () => ({ content: [{ type: 'text', text: 'set' }] }));
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on('close', () => void tools.close());
  await tools.connect(transport);
  await transport.handleRequest(req, res, req.body);
});
const upstream = weather.listen(0, '127.0.0.1');
await once(upstream, 'listening');

const stores = createMemoryStores();
const key = generateApiKey();
await stores.keys.put({
  id: 'agent',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'free',
  scopes: [],
  createdAt: new Date().toISOString(),
});
const budgets = budgetGuard({ ledger: stores.ledger, tenants: { acme: { usd: 1, period: 'day' } } });

// Your chain's pieces, handed over as the stages the MCP route runs.
const mcp = createMcpGateway({
  servers: {
    weather: {
      url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`,
      nanoUsdPerCall: { forecast: 2_000_000 }, // $0.002
    },
  },
  tools: { tiers: { free: ['weather/forecast'] } },
  stages: {
    admit: [apiKeyAuth({ keys: stores.keys })],
    readBody: [express.json()],
    meter: toolMeter(), // add sinks: [...] to keep the records
    limitAndReserve: [budgets], // your tool-call limits go here too, before the budget
  },
});
const app = express();
app.use(requestContext());
app.use('/mcp', mcp.router);
app.use(apiErrorHandler());
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');

// The official MCP client, with its key: it sees and calls only what its tier allows.
const client = new Client({ name: 'agent', version: '1.0.0' });
await client.connect(
  new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp/weather`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  }),
);
console.log(`tools: ${(await client.listTools()).tools.map((tool) => tool.name).join(', ')}`);
const answer = await client.callTool({ name: 'forecast', arguments: { city: 'Lyon' } });
console.log(`forecast: ${(answer.content as { text: string }[])[0]!.text}`);
const refused = await client.callTool({ name: 'set_alarm' }).catch((error: McpError) => error.data as { code: string });
console.log(`set_alarm: ${'code' in refused ? refused.code : 'called'}`);
await client.close();
const [acme] = await budgets.status({ scope: 'tenant', id: 'acme' });
console.log(`acme spent: $${acme!.spentNanoUsd / 1e9}`);

server.closeAllConnections();
server.close();
await mcp.close();
await budgets.close();
upstream.closeAllConnections();
upstream.close();
