// Budgets decided in code (budgetGuard's `budgets`) after Redis loses its data, in a process of their own on a private
// redis-server with PostgreSQL as the usage ledger: a budget decided by the request's tags is rebuilt to the ledger's
// spend (before, the rebuild asked the function without the tags and left it at nothing), and one decided by the
// tier, which the ledger does not keep, is refused at the start rebuild with ERR_TG_BUDGET_NOT_REBUILDABLE (before,
// the process started and its budget would have come back from a loss at nothing).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { createClient } from 'redis';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { ROOT } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const FIXTURE = 'test/fixtures/code-budgets-process.ts';
const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
const tables: string[] = [];
const children: ChildProcess[] = [];
let redis: PrivateRedis;

beforeAll(async () => {
  redis = new PrivateRedis(await freePort());
  await redis.start();
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await redis?.stop();
  for (const table of tables) {
    await pool.query(
      `DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_credits", "${table}_audit"`,
    );
    await pool.query(`DROP FUNCTION IF EXISTS "${table}_audit_append_only"()`);
  }
  await pool.end();
});

/** The fixture in a process of its own; resolves with its port, or its exit code and output when it stops first. */
async function start(mode: 'tags' | 'tier', table: string) {
  const prefix = `code-budgets:${randomUUID()}:`;
  const child = spawn(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', FIXTURE, mode, redis.url, POSTGRES_URL, table, prefix],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += String(chunk)));
  child.stderr!.on('data', (chunk: Buffer) => (output += String(chunk)));
  return new Promise<{ port?: number; code?: number | null; output: string }>((resolve) => {
    child.stdout!.on('data', () => {
      const port = /listening (\d+)/.exec(output)?.[1];
      if (port) resolve({ port: Number(port), output });
    });
    child.once('exit', (code) => resolve({ code, output }));
  });
}

const tagged = { 'content-type': 'application/json', 'x-key': 'k1', 'x-tags': 'batch,nightly' };

async function spentOfBatchJobs(port: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/status`, { headers: tagged });
  const { budgets } = (await response.json()) as { budgets: { id: string; spentNanoUsd: number }[] };
  return budgets.find((budget) => budget.id === 'batch-jobs')!.spentNanoUsd;
}

async function ledgerSpent(table: string, calls: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await pool
      .query<{ n: string; s: string }>(
        `SELECT count(*)::text AS n, coalesce(sum(cost_nano_usd), 0)::text AS s FROM "${table}"`,
      )
      .catch(() => ({ rows: [{ n: '0', s: '0' }] }));
    if (Number(rows[0]!.n) >= calls) return Number(rows[0]!.s);
    await sleep(100);
  }
  throw new Error(`the ledger never held ${calls} records`);
}

describe('budgets decided in code, after Redis loses its data', () => {
  it('rebuilds a budget decided by the tags to the ledger', async () => {
    const table = `tg_code_tags_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    tables.push(table);
    const { port, output } = await start('tags', table);
    if (port === undefined) throw new Error(`the fixture did not start:\n${output}`);
    for (let i = 0; i < 5; i++) {
      const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: 'POST',
        headers: tagged,
        body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 100 }),
      });
      expect(response.status).toBe(200);
    }
    const recorded = await ledgerSpent(table, 5);
    expect(recorded).toBeGreaterThan(0);
    expect(await spentOfBatchJobs(port)).toBe(recorded);
    const client = createClient({ url: redis.url });
    await client.connect();
    await client.flushAll();
    await client.quit();
    const rebuilt = await fetch(`http://127.0.0.1:${port}/rebuild`, { method: 'POST' });
    expect(rebuilt.status).toBe(200);
    // Before: 0 (the function was asked without the tags, and named no budget).
    expect(await spentOfBatchJobs(port)).toBe(recorded);
  }, 90_000);

  it('refuses at the start rebuild a budget decided by the tier, which the ledger does not keep', async () => {
    const table = `tg_code_tier_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    tables.push(table);
    const started = await start('tier', table);
    expect(started.port).toBeUndefined();
    expect(started.code).toBe(2);
    expect(started.output).toContain('refused ERR_TG_BUDGET_NOT_REBUILDABLE');
    expect(started.output).toContain('identity.tier');
  }, 90_000);
});
