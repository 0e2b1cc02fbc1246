// A gateway on memory stores loads none of the packages only Redis stores, a PostgreSQL ledger, JWT or bearer auth or
// a CSV export need (issue 47: its memory at rest); each loads when the config asks for it (lean-start-redis.test.ts).
import { describe, expect, it } from '@jest/globals';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { filesOfPackage, ON_DEMAND, packageOf, REDIS_STORES_PACKAGE, runGateway } from './helpers/loaded-modules.js';

describe('a gateway on memory stores', () => {
  it('serves a request without loading what only other configs need', async () => {
    const key = generateApiKey();
    const config = {
      tiers: { standard: { requestsPerMinute: 60, tokensPerMinute: 100_000, models: ['gpt-4o-mini'] } },
      tenants: { acme: { tier: 'standard', budget: { usd: 5, period: 'day' } } },
      keys: [{ id: 'lean', sha256: hashApiKey(key), tenant: 'acme' }],
      log: { level: 'silent' },
    };
    let status = 0;
    const run = await runGateway(config, {}, async (url) => {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'ping' }] }),
      });
      status = response.status;
      await response.text();
    });
    expect(run.code).toBe(0);
    expect(status).toBe(200);
    const packages = new Set([...run.modules].map(packageOf));
    // What was seen: the hook and the module cache report what the gateway runs on.
    expect(packages).toContain('@tollgate/gateway');
    expect(packages).toContain('express');
    expect(ON_DEMAND.filter((name) => packages.has(name))).toEqual([]);
    // The guard's Lua scripts come from the stores package's door without the client; nothing else of it loads.
    expect(filesOfPackage(run.modules, REDIS_STORES_PACKAGE)).toEqual(['lua.ts']);
  }, 120_000);
});
