// packages/gateway/examples/mcp.ts: an MCP server behind the gateway: its tools listed and called per key, priced per call.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGatewayApp, validateConfig } from '@tollgate/gateway';

// An MCP server with two tools (stateless: a server and a transport per request, as in the SDK's own examples).
const tools = createServer((req, res) => {
  const server = new McpServer({ name: 'search', version: '1.0.0' });
  server.registerTool('web_search', { inputSchema: { query: z.string() } }, async ({ query }) => ({
    content: [{ type: 'text', text: `3 results for ${query}` }],
  }));
  server.registerTool('delete_index', {}, async () => ({ content: [{ type: 'text', text: 'deleted' }] }));
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on('close', () => void server.close());
  void server.connect(transport).then(() => transport.handleRequest(req, res));
});
tools.listen(0, '127.0.0.1');
await once(tools, 'listening');

const key = generateApiKey();
const adminKey = generateApiKey();
const config = validateConfig({
  upstreams: { mock: { kind: 'mock' } },
  mcpServers: {
    search: {
      url: `http://127.0.0.1:${(tools.address() as AddressInfo).port}/mcp`,
      tools: { web_search: { usdPerCall: 0.002 } },
    },
  },
  tiers: { free: { tools: ['search/web_search'], toolCallsPerMinute: 60 } },
  tenants: { acme: { tier: 'free', budget: { usd: 1, period: 'day' } } },
  keys: [{ id: 'agent', sha256: hashApiKey(key), tenant: 'acme' }],
  adminKeySha256: hashApiKey(adminKey),
  log: { level: 'silent' },
});
const gateway = createGatewayApp(config, { log: () => undefined });
const server = gateway.listen(0, '127.0.0.1');
await once(server, 'listening');
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

// The official MCP client, with the gateway's key: it sees and calls only what its tier allows.
const client = new Client({ name: 'agent', version: '1.0.0' });
await client.connect(
  new StreamableHTTPClientTransport(new URL(`${base}/mcp/search`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  }),
);
console.log(`tools: ${(await client.listTools()).tools.map((tool) => tool.name).join(', ')}`);
const answer = await client.callTool({ name: 'web_search', arguments: { query: 'tollgate' } });
console.log(`web_search: ${(answer.content as { text: string }[])[0]!.text}`);
try {
  await client.callTool({ name: 'delete_index' });
} catch (error) {
  console.log(`delete_index: ${((error as McpError).data as { code: string }).code}`);
}
const budgets = await fetch(`${base}/admin/budgets/tenant/acme`, { headers: { authorization: `Bearer ${adminKey}` } });
const [budget] = ((await budgets.json()) as { budgets: { spentUsd: number }[] }).budgets;
console.log(`acme spent: $${budget!.spentUsd}`);

await client.close();
server.closeAllConnections();
server.close();
await gateway.close(); // ends the MCP sessions, flushes the sinks, closes the stores it made
tools.closeAllConnections();
tools.close();
