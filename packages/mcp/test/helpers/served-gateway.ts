// An MCP gateway served for a test: the test MCP server behind it, its router at `/tools` of an app on 127.0.0.1.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { apiErrorHandler } from '@tollgate/core';
import { createMcpGateway } from '@tollgate/mcp';
import type { McpGatewayOptions } from '@tollgate/mcp';
import { startMcpServer } from '../../../../test/helpers/mcp-server.js';
import type { RunningMcpServer } from '../../../../test/helpers/mcp-server.js';
import { closeServer } from '../../../../test/helpers/proxy.js';

export interface ServedGateway {
  /** The MCP server the gateway serves. */
  upstream: RunningMcpServer;
  app: express.Express;
  /** The route's base URL (`http://127.0.0.1:<port>/tools`): each server is at `<base>/<name>`. */
  base: string;
  /** Closes the gateway's sessions and clients, its server, then the MCP server. */
  close(): Promise<void>;
}

/** The gateway of `optionsFor(the MCP server's URL)`. */
export async function serveMcpGateway(optionsFor: (upstreamUrl: string) => McpGatewayOptions): Promise<ServedGateway> {
  const upstream = await startMcpServer();
  const mcp = createMcpGateway(optionsFor(upstream.url));
  const app = express();
  app.use('/tools', mcp.router);
  app.use(apiErrorHandler());
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    upstream,
    app,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/tools`,
    async close() {
      await mcp.close();
      await closeServer(server);
      await upstream.close();
    },
  };
}
