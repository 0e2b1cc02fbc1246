// A gateway on memory stores loads none of the packages only Redis stores, a PostgreSQL ledger, JWT or bearer auth or
// a CSV export need (issue 47: its memory at rest); each loads when the config asks for it (lean-start-redis.test.ts).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { filesOfPackage, ON_DEMAND, packageOf, REDIS_STORES_PACKAGE, runGateway } from './helpers/loaded-modules.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('a gateway on memory stores', () => {
  it('serves a request without loading what only other configs need', async () => {
    const key = generateApiKey();
    const config = {
      upstreams: { mock: { kind: 'mock' } },
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

describe('the demo without PGlite (after `npm i @tollgate/gateway` alone)', () => {
  it('starts, serves its demo keys, and says in its start line that usage is not kept', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        './test/fixtures/without-pglite.mjs',
        '--import',
        'tsx',
        '--conditions=source',
        'packages/gateway/src/bin.ts',
        '--port',
        '0',
      ],
      { cwd: ROOT, env: { ...process.env, TOLLGATE_CONFIG: '', TOLLGATE_DATA_DIR: '', REDIS_URL: '', PORT: '' } },
    );
    let output = '';
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const read = (chunk: Buffer) => {
          output += String(chunk);
          const match = /listening on http:\/\/localhost:(\d+)/.exec(output);
          if (match) resolve(`http://127.0.0.1:${match[1]}`);
        };
        child.stdout.on('data', read);
        child.stderr.on('data', read);
        child.once('exit', (code) => reject(new Error(`the demo exited with ${code}:\n${output}`)));
      });
      expect(output).toContain('no usage ledger (@electric-sql/pglite is not installed');
      expect(output).toContain(
        'ledger: none, usage records are not kept (@electric-sql/pglite is not installed); upstreams: the built-in mock',
      );
      const key = /demo-free\s+tier free\s+(tgk_\w+)/.exec(output)?.[1];
      const answer = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'ping' }] }),
      });
      expect(answer.status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
  }, 120_000);
});
