// The proxy config's MCP names: `mcpServers`, `tools` on tiers, tenants and keys, `toolCallsPerMinute`; each mistake named by its field.
import { describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { createGatewayApp } from '../src/app.js';
import { validateConfig } from '../src/config/index.js';
import { rejection } from './helpers/config-rejection.js';

const sha = 'a'.repeat(64);
const contract = {
  ...WITH_MOCK,
  mcpServers: {
    search: {
      url: 'http://search.internal:3001/mcp',
      headers: { authorization: 'SEARCH_MCP_AUTH' },
      tools: { web_search: { usdPerCall: 0.002 }, fetch_page: { usdPerCall: 0 } },
      callTimeout: '30s',
      sessionIdleTimeout: '10m',
    },
  },
  tiers: { pro: { toolCallsPerMinute: 120, tools: ['search/*'] } },
  tenants: { acme: { tier: 'pro', tools: ['search/web_search'] } },
  keys: [{ id: 'k', sha256: sha, tenant: 'acme', tools: ['*'] }],
};

describe('proxy config: MCP servers and tools', () => {
  it('accepts the contract names as written', () => {
    const config = validateConfig(contract);
    expect(config.mcpServers).toEqual(contract.mcpServers);
    expect(config.tiers?.pro).toEqual(contract.tiers.pro);
    expect(config.tenants?.acme?.tools).toEqual(['search/web_search']);
    expect(config.keys?.[0]?.tools).toEqual(['*']);
  });

  it.each([
    [{ mcpServers: { search: {} } }, 'mcpServers.search.url must be a non-empty string'],
    [{ mcpServers: { search: { url: 'ftp://x' } } }, 'mcpServers.search.url must use http: or https:'],
    [
      { mcpServers: { 'my search': { url: 'http://x/mcp' } } },
      'mcpServers has a server named "my search": use 1-64 letters, digits, _ and -',
    ],
    [
      { mcpServers: { search: { url: 'http://x/mcp', tools: { web_search: { usdPerCall: -1 } } } } },
      'mcpServers.search.tools.web_search.usdPerCall must be a number of USD from 0 to',
    ],
    [
      { mcpServers: { search: { url: 'http://x/mcp', tools: { web_search: { usdPerCall: 1, usd: 1 } } } } },
      'mcpServers.search.tools.web_search has no field "usd" (known: usdPerCall)',
    ],
    [
      { mcpServers: { search: { url: 'http://x/mcp', headers: { authorization: 'Bearer abc' } } } },
      'mcpServers.search.headers.authorization must be an environment variable name',
    ],
    [{ tiers: { pro: { toolCallsPerMinute: 0 } } }, 'tiers.pro.toolCallsPerMinute must be a positive integer'],
    [{ tiers: { pro: { tools: 'search/*' } } }, 'tiers.pro.tools must be an array of tool patterns'],
    [{ tiers: { pro: { tools: ['web_search'] } } }, 'tiers.pro.tools[0] must be "*" or "<server>/<tool>"'],
    [
      { mcpServers: { search: { url: 'http://x/mcp' } }, tiers: { pro: { tools: ['serch/*'] } } },
      'tiers.pro.tools names "serch/*", whose server "serch" is not in mcpServers; did you mean "search"?',
    ],
    [{ tenants: { acme: { tools: ['search/*'] } } }, 'tenants.acme.tools names "search/*", whose server "search"'],
    [{ keys: [{ id: 'k', sha256: sha, tools: ['search/x'] }] }, 'keys[0].tools names "search/x"'],
  ])('rejects %j naming the field', (config, message) => {
    expect(rejection(config)).toContain(message);
  });

  it('stops the start when a header names an environment variable that is not set', () => {
    const config = validateConfig({
      ...WITH_MOCK,
      mcpServers: { search: { url: 'http://x/mcp', headers: { authorization: 'TG_TEST_UNSET_MCP_AUTH' } } },
    });
    expect(() => createGatewayApp(config, { env: {}, metrics: false, log: () => undefined })).toThrow(
      /mcpServers\.search\.headers\.authorization names TG_TEST_UNSET_MCP_AUTH, which is not set/,
    );
  });
});
