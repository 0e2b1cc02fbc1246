// Who may call which tool: a tool is allowed when the caller's tier, its tenant or its key lists it; an unknown tier
// gets the default tier's list; a price is the server's per tool, 0 for a tool without one.
import { describe, expect, it } from '@jest/globals';
import type { Identity } from '@tollgate/core';
import { toolPolicy } from '../src/tool-policy.js';

const caller = (fields: Partial<Identity>): Identity => ({ keyId: 'k', scopes: [], authMethod: 'api_key', ...fields });

describe('toolPolicy', () => {
  const policy = toolPolicy(
    {
      tiers: { free: ['search/web_search'], pro: ['search/*'], none: undefined },
      defaultTier: 'free',
      tenants: { acme: ['files/read'], bare: undefined },
    },
    { search: { url: 'http://x/mcp', nanoUsdPerCall: { web_search: 2_000_000 } }, files: { url: 'http://y/mcp' } },
  );

  it.each([
    [{ tier: 'free' }, 'search/web_search', true],
    [{ tier: 'free' }, 'search/calculator', false],
    [{ tier: 'pro' }, 'search/calculator', true],
    [{ tier: 'pro' }, 'files/read', false],
    [{ tier: 'pro', tenantId: 'acme' }, 'files/read', true],
    [{ tier: 'none', tenantId: 'bare' }, 'search/web_search', false],
    [{ tier: 'unknown' }, 'search/web_search', true],
    [{}, 'search/web_search', true],
    [{ tier: 'none', tools: ['files/*'] }, 'files/write', true],
    [{ tier: 'none', tenantId: 'constructor' }, 'search/web_search', false],
  ])('%j calling %s: %s', (fields, tool, allowed) => {
    expect(policy.allows(caller(fields), tool)).toBe(allowed);
  });

  it('prices a tool at its server’s price, and any other at 0', () => {
    expect(policy.priceOf('search', 'web_search')).toBe(2_000_000);
    expect(policy.priceOf('search', 'calculator')).toBe(0);
    expect(policy.priceOf('files', 'web_search')).toBe(0);
  });

  it('lists no tool for anybody without grants', () => {
    const none = toolPolicy({}, {});
    expect(none.allows(caller({ tier: 'free' }), 'search/web_search')).toBe(false);
    expect(none.allows(caller({ tools: ['*'] }), 'search/web_search')).toBe(true);
  });
});
