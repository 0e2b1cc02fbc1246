// No usage record lost: a proxy killed with SIGKILL under load and started again has every call the provider billed in the
// usage log and the PostgreSQL ledger exactly once; SIGTERM under load drains and exits within 10 s with every record
// written.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import type { UsageRecord } from '@tollgate/core';
import { newApiKey, readUsageLog, sha256Hex, spawnProxy, startFakeUpstream } from './helpers/proxy.js';
import type { FakeUpstream, SpawnedProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-crash-'));
const key = newApiKey();
const tables: string[] = [];
/** The marker of every call the fake provider received whole, and so billed. */
const billed: string[] = [];
let upstream: FakeUpstream;

const usageChunk = (model: string) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created: 1,
  model,
  choices: [],
  usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
});

beforeAll(async () => {
  // A provider that takes 50 to 300 ms to answer, so that many calls are in flight at any moment.
  upstream = await startFakeUpstream((request, res) => {
    const body = request.body as { model: string; user: string; stream?: boolean };
    billed.push(body.user);
    res.on('error', () => undefined);
    setTimeout(
      () => {
        if (res.destroyed) return;
        if (body.stream) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(
            `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: body.model, choices: [{ index: 0, delta: { content: 'Hello there' }, finish_reason: null }] })}\n\n`,
          );
          setTimeout(() => {
            if (res.destroyed) return;
            res.write(
              `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: body.model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
            );
            res.write(`data: ${JSON.stringify(usageChunk(body.model))}\n\n`);
            res.end('data: [DONE]\n\n');
          }, 30);
        } else {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              id: 'chatcmpl-1',
              object: 'chat.completion',
              created: 1,
              model: body.model,
              choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there' }, finish_reason: 'stop' }],
              usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
            }),
          );
        }
      },
      50 + Math.floor(Math.random() * 250),
    );
  });
});

afterAll(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  for (const table of tables)
    await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
  await client.end();
});

/** A config of its own (usage log, ledger table, and so the spool next to the log) for one test. */
function writeConfig(name: string): { configPath: string; usageLog: string; table: string } {
  const table = `tg_e2e_crash_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  tables.push(table);
  const usageLog = path.join(dir, `${name}.jsonl`);
  const configPath = path.join(dir, `${name}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({
      usageLog,
      postgresUrl: POSTGRES_URL,
      postgresTable: table,
      upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' } },
      tiers: { roomy: { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000 } },
      defaultTier: 'roomy',
      keys: [{ id: 'load-key', sha256: sha256Hex(key), tenant: 'acme', scopes: ['chat'] }],
      tenants: { acme: { tier: 'roomy' } },
      // Served for 2 s after SIGTERM (the drain delay, 5 s by default), then no new connections.
      shutdown: { drainDelay: '2s' },
    }),
  );
  return { configPath, usageLog, table };
}

interface Load {
  /** Markers of the calls answered 200, read to their end. */
  ok: string[];
  /** Answers that asked to close their connection. */
  closing: number;
  stop(): Promise<void>;
}

/** `workers` clients, each sending one call after another (every other one streamed), each call with a marker of its own. */
function runLoad(url: string, prefix: string, workers: number): Load {
  let running = true;
  const load: Load = { ok: [], closing: 0, stop: async () => undefined };
  const worker = async (index: number) => {
    for (let i = 0; running; i++) {
      const marker = `${prefix}-${index}-${i}`;
      const stream = (index + i) % 2 === 0;
      try {
        const response = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': marker },
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            max_tokens: 16,
            stream,
            user: marker,
            messages: [{ role: 'user', content: `Say hello (${marker})` }],
          }),
        });
        if (response.headers.get('connection') === 'close') load.closing++;
        await response.text();
        if (response.status === 200) load.ok.push(marker);
      } catch {
        // Refused or cut: the proxy is stopping, or gone.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  const all = Array.from({ length: workers }, (_, index) => worker(index));
  load.stop = async () => {
    running = false;
    await Promise.all(all);
  };
  return load;
}

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Whether a new connection to `url` is refused while the process is still running (false if it exited first). */
async function refusedWhileRunning(url: string, proxy: SpawnedProxy): Promise<boolean> {
  const { hostname, port } = new URL(url);
  while (proxy.child.exitCode === null && proxy.child.signalCode === null) {
    const refused = await new Promise<boolean>((resolve) => {
      const socket = net.connect(Number(port), hostname);
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => resolve(true));
    });
    if (refused) return proxy.child.exitCode === null;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return false;
}

async function ledgerRequestIds(table: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ request_id: string }>(`SELECT request_id FROM "${table}"`);
    return rows.map((row) => row.request_id);
  } finally {
    await client.end();
  }
}

function countBy(values: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return counts;
}

/** Markers that do not appear exactly once in `values`. */
function notExactlyOnce(markers: readonly string[], values: readonly string[]): string[] {
  const counts = countBy(values);
  return markers.filter((marker) => counts.get(marker) !== 1);
}

describe('a proxy killed under load', () => {
  it('has, once started again, every call the provider billed in the usage log and the ledger exactly once', async () => {
    const { configPath, usageLog, table } = writeConfig('killed');
    const first = await spawnProxy({ TOLLGATE_CONFIG: configPath });
    const load = runLoad(first.url, 'killed', 80);
    await waitUntil(() => billed.filter((marker) => marker.startsWith('killed-')).length >= 300, '300 billed calls');
    const exited = once(first.child, 'exit');
    first.child.kill('SIGKILL');
    await exited;
    await load.stop();
    // What the dying proxy had already handed to the kernel may still arrive.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const billedHere = billed.filter((marker) => marker.startsWith('killed-'));
    const loggedBefore = new Set(readUsageLog(usageLog).map((record) => record.requestId));
    // The crash did lose records from the log: otherwise this test would prove nothing.
    expect(billedHere.filter((marker) => !loggedBefore.has(marker)).length).toBeGreaterThan(0);

    // Started on the same config: it writes what the spool kept before it listens.
    const second: SpawnedProxy = await spawnProxy({ TOLLGATE_CONFIG: configPath });
    expect(second.output()).toMatch(/usage spool held what 1 stopped process\(es\) left/);
    await second.stop();
    expect(second.child.exitCode).toBe(0);

    const records = readUsageLog(usageLog);
    const requestIds = records.map((record) => record.requestId);
    expect(notExactlyOnce(billedHere, requestIds)).toEqual([]);
    expect(new Set(records.map((record) => record.id)).size).toBe(records.length);
    expect(notExactlyOnce(billedHere, await ledgerRequestIds(table))).toEqual([]);
    expect((await ledgerRequestIds(table)).sort()).toEqual([...requestIds].sort());
    // A record of a call the provider never got: one the proxy was about to send when it died, charged its bound.
    const billedSet = new Set(billedHere);
    const unbilled = records.filter((record) => !billedSet.has(record.requestId));
    expect(unbilled.every((record: UsageRecord) => record.status === 0 && record.usageSource === 'estimated')).toBe(
      true,
    );
    // The calls in flight when it died are charged at their bound, never free.
    const inFlight = records.filter((record) => record.status === 0);
    expect(inFlight.length).toBeGreaterThan(0);
    expect(
      inFlight.every((record) => record.costNanoUsd > 0 && record.costNanoUsd === record.estimatedCostNanoUsd),
    ).toBe(true);
  }, 90_000);
});

describe('a proxy stopped with SIGTERM under load', () => {
  it('exits within 10 s with code 0, every answered call written once to the log and the ledger', async () => {
    const { configPath, usageLog, table } = writeConfig('stopped');
    const proxy = await spawnProxy({ TOLLGATE_CONFIG: configPath });
    const load = runLoad(proxy.url, 'stopped', 80);
    await waitUntil(() => load.ok.length >= 300, '300 answered calls');
    const answeredBefore = load.ok.length;
    const exited = once(proxy.child, 'exit');
    const signalled = Date.now();
    proxy.child.kill('SIGTERM');
    const refused = refusedWhileRunning(proxy.url, proxy);
    const [code] = (await exited) as [number | null];
    const tookMs = Date.now() - signalled;
    await load.stop();
    expect({ code, tookMs: tookMs < 10_000 }).toEqual({ code: 0, tookMs: true });
    // New connections were refused once the drain delay was over, while the process was still running; the calls in
    // flight were answered, and their connections closed after them.
    expect(await refused).toBe(true);
    expect(load.ok.length).toBeGreaterThan(answeredBefore);
    expect(load.closing).toBeGreaterThan(0);

    const records = readUsageLog(usageLog);
    const requestIds = records.map((record) => record.requestId);
    expect(notExactlyOnce(load.ok, requestIds)).toEqual([]);
    expect(notExactlyOnce(load.ok, await ledgerRequestIds(table))).toEqual([]);
    // Every call the provider billed, answered or not, has its record: nothing is left for a next start.
    expect(
      notExactlyOnce(
        billed.filter((marker) => marker.startsWith('stopped-')),
        requestIds,
      ),
    ).toEqual([]);
    expect(new Set(records.map((record) => record.id)).size).toBe(records.length);
  }, 90_000);
});
