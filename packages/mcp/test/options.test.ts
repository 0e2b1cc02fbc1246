// createMcpGateway's options are checked when it is built: a mistake is a named TollgateError, never a route that
// silently runs without a stage or serves a server no path can reach.
import { describe, expect, it } from '@jest/globals';
import type { RequestHandler } from 'express';
import { TollgateError } from '@tollgate/core';
import { createMcpGateway } from '@tollgate/mcp';
import type { McpGatewayOptions, McpStages } from '@tollgate/mcp';

const pass: RequestHandler = (_req, _res, next) => next();
const stages: McpStages = {
  admit: [pass],
  readBody: [pass],
  meter: () => ({ start: () => undefined }),
  limitAndReserve: [pass],
};

function errorOf(options: unknown): TollgateError {
  try {
    void createMcpGateway(options as McpGatewayOptions).close();
  } catch (error) {
    if (error instanceof TollgateError) return error;
    throw error;
  }
  throw new Error('createMcpGateway accepted the options');
}

describe('createMcpGateway options', () => {
  it('builds a router from servers, grants and stages, and closes', async () => {
    const mcp = createMcpGateway({
      servers: { search: { url: 'http://127.0.0.1:1/mcp', headers: { authorization: 'Bearer s' } } },
      tools: { tiers: { free: ['search/*'] } },
      stages,
    });
    expect(typeof mcp.router).toBe('function');
    await mcp.close();
  });

  it.each([
    [{ servers: {}, stages, tool: {} }, 'ERR_TG_MCP_UNKNOWN_OPTION', 'has no option "tool"; did you mean "tools"?'],
    [
      { servers: { search: { url: 'http://x/mcp', timeoutMs: 5 } }, stages },
      'ERR_TG_MCP_UNKNOWN_OPTION',
      'servers.search() has no option "timeoutMs"',
    ],
    [
      { servers: { 'my search': { url: 'http://x/mcp' } }, stages },
      'ERR_TG_MCP_INVALID_OPTION',
      'the server name "my search" must be 1-64 letters',
    ],
    [{ servers: { search: { url: 'ftp://x' } }, stages }, 'ERR_TG_MCP_INVALID_OPTION', 'servers.search.url must be'],
    [{ servers: { search: { url: 'not a url' } }, stages }, 'ERR_TG_MCP_INVALID_OPTION', 'servers.search.url must be'],
    [
      { servers: { search: { url: 'http://x/mcp', nanoUsdPerCall: { web_search: 0.5 } } }, stages },
      'ERR_TG_MCP_INVALID_OPTION',
      'servers.search.nanoUsdPerCall.web_search must be a whole number of nano-USD',
    ],
    [
      { servers: { search: { url: 'http://x/mcp', callTimeoutMs: 0 } }, stages },
      'ERR_TG_MCP_INVALID_OPTION',
      'servers.search.callTimeoutMs must be a positive whole number',
    ],
    [
      { servers: {}, stages: { ...stages, limitAndReserve: undefined } },
      'ERR_TG_MCP_INVALID_OPTION',
      'stages.limitAndReserve must be an array of handlers',
    ],
    [{ servers: {}, stages: { ...stages, meter: [] } }, 'ERR_TG_MCP_INVALID_OPTION', 'stages.meter must be a function'],
    [{ servers: {} }, 'ERR_TG_MCP_INVALID_OPTION', 'stages.admit must be an array of handlers'],
  ])('refuses %j', (options, code, message) => {
    const error = errorOf(options);
    expect(error.code).toBe(code);
    expect(error.message).toContain(message);
  });
});
