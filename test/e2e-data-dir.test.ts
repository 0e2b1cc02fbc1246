// `dataDir`: the embedded default keeps its ledger, its keys and its budgets' spend across restarts (a clean stop and
// a SIGKILL), and one process at a time holds the directory.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { ledgerClient } from '../packages/metering/src/ledger-socket.js';
import { runCli } from '@tollgate/cli';
import {
  MOCK_UPSTREAMS,
  newApiKey,
  readUsageLog,
  runProxyExpectingExit,
  sha256Hex,
  spawnProxy,
} from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const root = mkdtempSync(path.join(tmpdir(), 'tollgate-data-dir-'));
const running: SpawnedProxy[] = [];

afterAll(async () => {
  await Promise.all(running.map((proxy) => proxy.stop()));
  rmSync(root, { recursive: true, force: true });
});

async function start(dataDir: string, env: Record<string, string> = {}): Promise<SpawnedProxy> {
  const proxy = await spawnProxy({ TOLLGATE_DATA_DIR: dataDir, ...env });
  running.push(proxy);
  return proxy;
}

function keyOf(output: string, tenant: string): string {
  const key = new RegExp(`${tenant}\\s+tier \\w+\\s+(tgk_\\w+)`).exec(output)?.[1];
  if (!key) throw new Error(`no key for ${tenant} in:\n${output}`);
  return key;
}

async function spentNanoUsd(url: string, adminKey: string, tenant: string): Promise<number> {
  const res = await fetch(`${url}/admin/budgets/tenant/${tenant}`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  expect(res.status).toBe(200);
  const { budgets } = (await res.json()) as { budgets: { spentNanoUsd: number }[] };
  return budgets[0]!.spentNanoUsd;
}

async function call(url: string, apiKey: string, stream = false): Promise<void> {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
  const messages = [{ role: 'user' as const, content: 'Count to three, please.' }];
  if (stream) {
    const chunks = await client.chat.completions.create({ model: 'gpt-4o', messages, stream: true });
    for await (const _chunk of chunks) {
      // read to the end
    }
  } else {
    const answer = await client.chat.completions.create({ model: 'gpt-4o', messages });
    expect(answer.choices[0]!.message.content).toBeTruthy();
  }
}

/** The sink writes the ledger in batches: until `calls` records are in. */
async function waitForLedger(ledger: ReturnType<typeof ledgerClient>, calls: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    // The table is made with the first batch.
    const rows = await ledger.query<{ calls: number }>('SELECT count(*)::int AS calls FROM tollgate_usage').then(
      (result) => result.rows,
      () => [{ calls: 0 }],
    );
    if (rows[0]!.calls >= calls) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the ledger never held ${calls} records`);
}

describe('the embedded default with a data directory', () => {
  it('keeps keys, spend and the ledger across a clean stop and a SIGKILL, and takes over the lock of a killed process', async () => {
    const dataDir = path.join(root, 'demo');
    const first = await start(dataDir);
    const proKey = keyOf(first.output(), 'demo-pro');
    const adminKey = /admin key (tgk_\w+)/.exec(first.output())?.[1];
    expect(adminKey).toBeDefined();
    expect(first.output()).toContain(`${dataDir} keeps their hashes`);
    await call(first.url, proKey);
    await call(first.url, proKey, true);
    // A key made while running, through the admin API: kept in the data directory's keys file.
    const made = await fetch(`${first.url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'made-live', tenant: 'demo-pro', scopes: ['chat'] }),
    });
    expect(made.status).toBe(201);
    const madeKey = ((await made.json()) as { key: string }).key;
    await call(first.url, madeKey);
    const spentBefore = await spentNanoUsd(first.url, adminKey!, 'demo-pro');
    expect(spentBefore).toBeGreaterThan(0);
    // Its ledger, read from another process through the socket in the data directory: what the budget holds, and
    // nothing a reader sends can change it.
    const ledger = ledgerClient(path.join(dataDir, 'ledger.sock'));
    await waitForLedger(ledger, 3);
    const { rows } = await ledger.query<{ calls: number; cost: string }>(
      "SELECT count(*)::int AS calls, sum(cost_nano_usd)::text AS cost FROM tollgate_usage WHERE tenant_id = 'demo-pro'",
    );
    expect(rows).toEqual([{ calls: 3, cost: String(spentBefore) }]);
    await expect(ledger.query('DELETE FROM tollgate_usage')).rejects.toThrow(/read-only transaction/);
    await first.stop();
    expect(existsSync(path.join(dataDir, 'ledger.sock'))).toBe(false);

    const keysFile = path.join(dataDir, 'keys.json');
    expect(statSync(keysFile).mode & 0o777).toBe(0o600);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    const kept = JSON.parse(readFileSync(keysFile, 'utf8')) as { keys: { id: string; sha256: string }[] };
    expect(kept.keys.map((key) => key.id).sort()).toEqual(['demo-free-key', 'demo-pro-key', 'made-live']);
    // Hashes only: no key itself is on disk.
    expect(readFileSync(keysFile, 'utf8')).not.toContain(proKey);
    expect(existsSync(path.join(dataDir, 'tollgate.pid'))).toBe(false);

    // Started again: no new keys, the old ones work, the spend of the period is what it was.
    const second = await start(dataDir);
    expect(second.output()).not.toMatch(/tgk_\w+/);
    expect(second.output()).toContain('The demo keys were printed when');
    expect(await spentNanoUsd(second.url, adminKey!, 'demo-pro')).toBe(spentBefore);
    await call(second.url, proKey);
    await call(second.url, madeKey, true);
    const spentAfterSecond = await spentNanoUsd(second.url, adminKey!, 'demo-pro');
    expect(spentAfterSecond).toBeGreaterThan(spentBefore);

    // While it runs, a second process cannot open the directory.
    const refused = await runProxyExpectingExit({ TOLLGATE_DATA_DIR: dataDir });
    expect(refused.code).toBe(1);
    expect(refused.output).toContain(`is held by process ${second.child.pid}`);

    // Killed: its lock stays, and the next start takes it over; what it settled is in the ledger (or its spool).
    second.child.kill('SIGKILL');
    await new Promise((resolve) => second.child.once('exit', resolve));
    expect(JSON.parse(readFileSync(path.join(dataDir, 'tollgate.pid'), 'utf8')).pid).toBe(second.child.pid);
    const third = await start(dataDir);
    expect(await spentNanoUsd(third.url, adminKey!, 'demo-pro')).toBe(spentAfterSecond);
    await call(third.url, madeKey);
    await third.stop();
  }, 120_000);
});

/** `tollgate report --data-dir DIR --by tenant` in a format. */
async function report(dataDir: string, format: string): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(
    ['report', '--data-dir', dataDir, '--by', 'tenant', '--since', '1h', '--format', format],
    { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: (text: string) => (stderr += text) } },
    {},
  );
  if (code !== 0) throw new Error(`report exited ${code}: ${stderr}`);
  return { code, stdout };
}

describe('tollgate report --data-dir', () => {
  it('matches the usage log to the micro-dollar, in a table, CSV and JSON, while the proxy runs and after it stopped', async () => {
    const dataDir = path.join(root, 'reported');
    const usageLog = path.join(root, 'reported-usage.jsonl');
    const configPath = path.join(root, 'reported.json');
    const keys = { acme: newApiKey(), globex: newApiKey() };
    writeFileSync(
      configPath,
      JSON.stringify({
        upstreams: MOCK_UPSTREAMS,
        dataDir,
        usageLog,
        tiers: { pro: { requestsPerMinute: 600, tokensPerMinute: 2_000_000, models: ['*'] } },
        tenants: { acme: { tier: 'pro' }, globex: { tier: 'pro' } },
        keys: Object.entries(keys).map(([tenant, key]) => ({
          id: `${tenant}-key`,
          sha256: sha256Hex(key),
          tenant,
          scopes: ['chat'],
        })),
      }),
    );
    const proxy = await start(dataDir, { TOLLGATE_CONFIG: configPath });
    for (let i = 0; i < 3; i++) await call(proxy.url, keys.acme, i === 1);
    await call(proxy.url, keys.globex);
    const logged = () => readUsageLog(usageLog);
    for (let i = 0; i < 100 && logged().length < 4; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    const nanoOf = (tenant: string) =>
      logged()
        .filter((record) => record.tenantId === tenant)
        .reduce((sum, record) => sum + record.costNanoUsd, 0);
    // The report prints USD to the micro-dollar: each figure within half a micro-dollar of the usage log's sum.
    const close = (usd: number, nano: number) => expect(Math.abs(usd * 1e9 - nano)).toBeLessThanOrEqual(500);
    const check = async () => {
      const json = JSON.parse((await report(dataDir, 'json')).stdout) as { tenant: string; costUsd: number }[];
      const csv = (await report(dataDir, 'csv')).stdout.trim().split('\n');
      const table = (await report(dataDir, 'table')).stdout;
      const header = csv[0]!.split(',');
      for (const tenant of ['acme', 'globex']) {
        const nano = nanoOf(tenant);
        expect(nano).toBeGreaterThan(0);
        const fromJson = json.find((row) => row.tenant === tenant)!.costUsd;
        close(fromJson, nano);
        close(Number(csv.find((line) => line.startsWith(`${tenant},`))!.split(',')[header.indexOf('costUsd')]), nano);
        expect(table).toMatch(new RegExp(`${tenant} .*${fromJson.toFixed(6).replace('.', '\\.')}`));
      }
    };
    // Running: read through the socket the proxy serves in its data directory (the sink writes once a second).
    for (let i = 0; i < 60; i++) {
      const rows = JSON.parse((await report(dataDir, 'json')).stdout) as unknown[];
      if (rows.length === 2) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await check();
    await proxy.stop();
    // Stopped: the ledger opened from the directory itself.
    await check();
  }, 120_000);
});
