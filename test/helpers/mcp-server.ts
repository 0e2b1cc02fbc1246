// A real MCP server for tests: the official SDK's McpServer with four tools, on its own port, over Streamable HTTP.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { closeServer } from './proxy.js';

export interface ToolCallSeen {
  tool: string;
  args: Record<string, unknown>;
}

export interface RunningMcpServer {
  /** The server's MCP endpoint (`http://127.0.0.1:<port>/mcp`). */
  url: string;
  /** Every tool call the server ran, oldest first. */
  calls: ToolCallSeen[];
  /** The headers of every HTTP request the server received. */
  headers: IncomingHttpHeaders[];
  /** Ends every client's session, as a restarted server would have forgotten them. */
  forgetSessions(): Promise<void>;
  close(): Promise<void>;
}

/** The tools: a search, a calculator, one that fails and one no test may ever reach. Each call is noted in `calls`. */
function searchServer(calls: ToolCallSeen[]): McpServer {
  const server = new McpServer({ name: 'search', version: '1.0.0' });
  server.registerTool(
    'web_search',
    { description: 'Searches the web.', inputSchema: { query: z.string() } },
    async ({ query }) => {
      calls.push({ tool: 'web_search', args: { query } });
      return { content: [{ type: 'text', text: `results for ${query}` }] };
    },
  );
  server.registerTool(
    'calculator',
    { description: 'Adds two numbers.', inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => {
      calls.push({ tool: 'calculator', args: { a, b } });
      return { content: [{ type: 'text', text: String(a + b) }] };
    },
  );
  server.registerTool('broken', { description: 'Always fails.' }, async () => {
    calls.push({ tool: 'broken', args: {} });
    throw new Error('the index is down');
  });
  server.registerTool('delete_everything', { description: 'Never to be called.' }, async () => {
    calls.push({ tool: 'delete_everything', args: {} });
    return { content: [{ type: 'text', text: 'deleted' }] };
  });
  return server;
}

/** The server on an ephemeral port of 127.0.0.1, with a session per client as the SDK's stateful servers keep them. */
export async function startMcpServer(): Promise<RunningMcpServer> {
  const calls: ToolCallSeen[] = [];
  const headers: IncomingHttpHeaders[] = [];
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const http = createServer((req, res) => {
    headers.push(req.headers);
    const id = req.headers['mcp-session-id'];
    let transport = typeof id === 'string' ? sessions.get(id) : undefined;
    const answer = async () => {
      if (!transport) {
        if (id !== undefined) {
          res.writeHead(404).end();
          return;
        }
        const fresh = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (sessionId) => void sessions.set(sessionId, fresh),
        });
        fresh.onclose = () => void (fresh.sessionId && sessions.delete(fresh.sessionId));
        await searchServer(calls).connect(fresh);
        transport = fresh;
      }
      await transport.handleRequest(req, res);
    };
    answer().catch(() => res.destroy());
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const { port } = http.address() as AddressInfo;
  const forgetSessions = async () => {
    await Promise.all([...sessions.values()].map((transport) => transport.close()));
  };
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    calls,
    headers,
    forgetSessions,
    async close() {
      await forgetSessions();
      await closeServer(http);
    },
  };
}
