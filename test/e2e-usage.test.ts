// What operators read: the JSONL usage log, Prometheus /metrics, the PostgreSQL ledger and `pnpm tollgate report`.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import pg from 'pg';
import type { UsageRecord } from '@tollgate/core';
import { MOCK_UPSTREAMS, newApiKey, ROOT, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const table = `tg_e2e_usage_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-usage-'));
const usageLog = path.join(dir, 'usage.jsonl');
const configPath = path.join(dir, 'config.json');
const aliceKey = newApiKey();
const bobKey = newApiKey();
let proxy: RunningProxy;

const config = {
  upstreams: MOCK_UPSTREAMS,
  usageLog,
  postgresUrl: POSTGRES_URL,
  postgresTable: table,
  // Read by a scraper without the admin key (there is none here).
  metrics: { public: true },
  tenants: { acme: {}, globex: {} },
  keys: [
    {
      id: 'alice-key',
      sha256: sha256Hex(aliceKey),
      tenant: 'acme',
      user: 'alice',
      feature: 'support-bot',
      scopes: ['chat'],
    },
    { id: 'bob-key', sha256: sha256Hex(bobKey), tenant: 'globex', user: 'bob', scopes: ['chat'] },
  ],
};

beforeAll(async () => {
  writeFileSync(configPath, JSON.stringify(config));
  proxy = await startProxy(config);
  const alice = new OpenAI({ apiKey: aliceKey, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  const bob = new Anthropic({ apiKey: bobKey, baseURL: proxy.url, maxRetries: 0 });
  await alice.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'one' }],
    max_tokens: 10,
  });
  const stream = await alice.chat.completions.create({
    model: 'gpt-4o',
    messages: [{ role: 'user', content: 'two' }],
    stream: true,
  });
  for await (const _chunk of stream) {
    /* drain */
  }
  await alice.responses.create({ model: 'gpt-4o-mini', input: 'three' });
  await bob.messages.create({
    model: 'claude-haiku-4-5',
    max_tokens: 20,
    messages: [{ role: 'user', content: 'four' }],
  });
  await proxy.app.flushUsage();
});

afterAll(async () => {
  await proxy.close();
  rmSync(dir, { recursive: true, force: true });
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
  await client.end();
});

describe('usage records', () => {
  it('the usage log holds one UsageRecord line per request, attributed and priced, without secrets', () => {
    const text = readFileSync(usageLog, 'utf8');
    const records = text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as UsageRecord);
    expect(records).toHaveLength(4);
    const byRoute = Object.fromEntries(records.map((record) => [`${record.route} ${record.model}`, record]));
    expect(byRoute['/v1/chat/completions gpt-4o-mini']).toMatchObject({
      keyId: 'alice-key',
      tenantId: 'acme',
      userId: 'alice',
      feature: 'support-bot',
      provider: 'openai',
      requestedModel: 'gpt-4o-mini',
      outputTokens: 10,
      status: 200,
      stream: false,
      aborted: false,
      usageSource: 'provider',
    });
    const streamed = byRoute['/v1/chat/completions gpt-4o']!;
    expect(streamed).toMatchObject({ stream: true, outputTokens: 24, usageSource: 'provider' });
    expect(byRoute['/v1/messages claude-haiku-4-5']).toMatchObject({
      keyId: 'bob-key',
      tenantId: 'globex',
      provider: 'anthropic',
      outputTokens: 20,
    });
    for (const record of records) {
      expect(record.costNanoUsd).toBeGreaterThan(0);
      expect(record.estimatedCostNanoUsd).toBeGreaterThan(0);
      expect(typeof record.requestId).toBe('string');
    }
    for (const secret of [aliceKey, bobKey, sha256Hex(aliceKey), sha256Hex(bobKey)]) expect(text).not.toContain(secret);
  });

  it('/metrics counts requests, tokens and cost by tenant and model', async () => {
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    const requestsOf = (tenant: string) =>
      [...metrics.matchAll(/^tollgate_requests_total\{([^}]*)\} (\d+)$/gm)]
        .filter((match) => match[1]!.includes(`tenant="${tenant}"`))
        .reduce((sum, match) => sum + Number(match[2]), 0);
    expect(requestsOf('acme')).toBe(3);
    expect(requestsOf('globex')).toBe(1);
    expect(metrics).toContain('tollgate_cost_usd_total');
    expect(metrics).not.toContain(aliceKey);
  });

  it('the PostgreSQL ledger feeds `pnpm tollgate report`, which finds the database in TOLLGATE_CONFIG', async () => {
    const run = promisify(execFile);
    const { stdout } = await run(
      path.join(ROOT, 'node_modules/.bin/tsx'),
      ['--conditions=source', 'packages/cli/src/tollgate.ts', 'report', '--by', 'tenant', '--since', '1h', '--json'],
      {
        cwd: ROOT,
        env: { ...process.env, TOLLGATE_CONFIG: configPath },
      },
    );
    const rows = JSON.parse(stdout) as { group: string; requests: number }[];
    const requestsOf = (tenant: string) => rows.find((row) => JSON.stringify(row).includes(`"${tenant}"`))?.requests;
    expect(Number(requestsOf('acme'))).toBe(3);
    expect(Number(requestsOf('globex'))).toBe(1);
  }, 30_000);

  it("clients that reuse request ids, their own or another tenant's, hide nothing in the ledger", async () => {
    const call = (key: string, requestId: string) =>
      fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': requestId },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'again' }] }),
      }).then((response) => response.text());
    // 21 calls of acme under two ids, then globex under one of acme's.
    for (let i = 0; i < 21; i++) await call(aliceKey, `reused-${i % 2}`);
    await call(bobKey, 'reused-0');
    await proxy.app.flushUsage();
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      const rows = await client.query<{ tenant_id: string; calls: string; ids: string }>(
        `SELECT tenant_id, count(*) AS calls, count(DISTINCT id) AS ids FROM "${table}" WHERE request_id LIKE 'reused-%' GROUP BY tenant_id ORDER BY tenant_id`,
      );
      // Before: keyed by request id, acme had 2 rows (90% of its spend hidden) and globex's call vanished.
      expect(rows.rows.map((row) => [row.tenant_id, Number(row.calls), Number(row.ids)])).toEqual([
        ['acme', 21, 21],
        ['globex', 1, 1],
      ]);
    } finally {
      await client.end();
    }
  });
});
