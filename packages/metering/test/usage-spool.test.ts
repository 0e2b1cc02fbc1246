// The usage spool: what a process that died left is written once at the next start; files stay small; a live process is never taken over.
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, jest } from '@jest/globals';
import type { UsageRecord } from '@tollgate/core';
import { jsonlSink, meter, openUsageSpool } from '@tollgate/metering';
import express from 'express';
import request from 'supertest';
import type { SpoolReplay, UsageSink } from '@tollgate/metering';
import { sampleRecord } from './sample-record.js';

const CHILD = fileURLToPath(new URL('./fixtures/spool-writer.mts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tollgate-spool-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let cases = 0;
function newCase(): { directory: string; log: string } {
  const dir = join(root, `case-${++cases}`);
  mkdirSync(dir);
  return { directory: join(dir, 'spool'), log: join(dir, 'usage.jsonl') };
}

type Step = { intent: string } | { record: string } | { flush: 'spool' | 'log' };

/** Runs the writer child through its steps, then kills it with SIGKILL: a crash. Resolves with what its replay() found. */
async function crashAfter(plan: {
  directory: string;
  log: string;
  down?: boolean;
  steps: Step[];
}): Promise<SpoolReplay> {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', CHILD, JSON.stringify(plan)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let errors = '';
  child.stderr.on('data', (chunk: Buffer) => (errors += String(chunk)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += String(chunk);
      if (output.includes('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the writer exited (${code}) before it was ready:\n${errors}`)));
  });
  child.kill('SIGKILL');
  await exited;
  return JSON.parse(output.split('\n')[0]!) as SpoolReplay;
}

function logged(log: string): UsageRecord[] {
  try {
    return readFileSync(log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as UsageRecord);
  } catch {
    return [];
  }
}

const requestIds = (records: UsageRecord[]) => records.map((record) => record.requestId).sort();

describe('usage spool: after a crash', () => {
  it('writes every record the sinks had not stored and a bound record for each call sent without one, once', async () => {
    const paths = newCase();
    await crashAfter({
      ...paths,
      steps: [
        { record: 'a' },
        { record: 'b' },
        { flush: 'spool' },
        // In the log before the crash, but after the last checkpoint: not written twice.
        { record: 'c' },
        { flush: 'log' },
        // Only in the log's memory when the process died.
        { intent: 'd' },
        { record: 'd' },
        { record: 'e' },
        // Sent, never answered.
        { intent: 'f' },
      ],
    });
    expect(requestIds(logged(paths.log))).toEqual(['a', 'b', 'c']);

    const spool = openUsageSpool({ directory: paths.directory, sinks: [jsonlSink({ path: paths.log })] });
    const replay = await spool.replay();
    expect(replay).toEqual({ processes: 1, records: 3, recovered: 1 });
    const records = logged(paths.log);
    expect(requestIds(records)).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(new Set(records.map((record) => record.id)).size).toBe(6);
    // The call sent and never settled is charged its bound: the provider may have billed it.
    expect(records.find((record) => record.requestId === 'f')).toMatchObject({
      id: 'rec-f',
      status: 0,
      aborted: true,
      usageSource: 'estimated',
    });
    await spool.close();
    // Everything stored: nothing is left behind.
    expect(readdirSync(paths.directory)).toEqual([]);
  });

  it('is written once even when a replay is cut short and run again, and a torn last line is skipped', async () => {
    const paths = newCase();
    await crashAfter({ ...paths, steps: [{ record: 'a' }, { flush: 'spool' }, { record: 'b' }, { intent: 'c' }] });
    // The crash cut a line in half.
    const [file] = readdirSync(paths.directory).filter((name) => name.endsWith('.jsonl'));
    appendFileSync(join(paths.directory, file!), '{"type":"record","seq":3,"record":{"id":"rec-x","requestId":"x"');

    // A start that replays into the log, but dies before a sink that is down stored anything: the files stay.
    const first = await crashAfter({ ...paths, down: true, steps: [] });
    expect(first).toEqual({ processes: 1, records: 2, recovered: 1 });
    expect(requestIds(logged(paths.log))).toEqual(['a', 'b', 'c']);

    const errors: unknown[] = [];
    const spool = openUsageSpool({
      directory: paths.directory,
      sinks: [jsonlSink({ path: paths.log })],
      onError: (error) => errors.push(error),
    });
    // Two processes' files now (the first writer's, kept by the replay that died, and that replay's own).
    expect((await spool.replay()).processes).toBe(2);
    expect(requestIds(logged(paths.log))).toEqual(['a', 'b', 'c']);
    expect(errors).toEqual([]);
    await spool.close();
  });
});

describe('usage spool: while running', () => {
  it('sets full files aside and deletes them once every sink stored them', async () => {
    const paths = newCase();
    const spool = openUsageSpool({
      directory: paths.directory,
      sinks: [jsonlSink({ path: paths.log })],
      maxFileBytes: 4096,
      checkpointIntervalMs: 3_600_000,
    });
    let largest = 0;
    for (let i = 0; i < 200; i++) {
      spool.writeIntent(sampleRecord({ requestId: `r${i}` }), 'openai.chat');
      spool.deliver(sampleRecord({ requestId: `r${i}` }));
      if (i % 10 === 9) expect(await spool.flush()).toBe(true);
      const bytes = readdirSync(paths.directory)
        .filter((name) => name.endsWith('.jsonl'))
        .reduce((sum, name) => sum + statSync(join(paths.directory, name)).size, 0);
      largest = Math.max(largest, bytes);
    }
    // 200 records and 200 intents are about 280 KB; the spool never held more than a few files' worth.
    expect(largest).toBeLessThan(4096 + 10 * 1500);
    expect(readdirSync(paths.directory).filter((name) => name.endsWith('.jsonl'))).toHaveLength(1);
    await spool.close();
    expect(logged(paths.log)).toHaveLength(200);
  });

  it('writes again what a sink dropped from its full queue, once it stores again', async () => {
    const paths = newCase();
    const missing = join(paths.directory, '..', 'not-yet', 'usage.jsonl');
    const errors: unknown[] = [];
    const log = jsonlSink({
      path: missing,
      maxQueue: 5,
      flushIntervalMs: 3_600_000,
      onError: (error) => errors.push(error),
    });
    const spool = openUsageSpool({ directory: paths.directory, sinks: [log], checkpointIntervalMs: 3_600_000 });
    for (let i = 0; i < 12; i++) spool.deliver(sampleRecord({ requestId: `r${String(i).padStart(2, '0')}` }));
    expect(await spool.flush()).toBe(false);
    expect(log.dropped).toBeGreaterThan(0);
    mkdirSync(join(missing, '..'));
    expect(await spool.flush()).toBe(true);
    expect(requestIds(logged(missing))).toEqual(Array.from({ length: 12 }, (_, i) => `r${String(i).padStart(2, '0')}`));
    await spool.close();
  });

  it('never takes over the files of a spool that is open', async () => {
    const paths = newCase();
    const records: UsageRecord[] = [];
    const memory: UsageSink = {
      write: (record) => records.push(record),
      flush: async () => undefined,
      close: async () => undefined,
    };
    const first = openUsageSpool({ directory: paths.directory, sinks: [] });
    first.writeIntent(sampleRecord({ requestId: 'in-flight' }), 'openai.chat');
    const second = openUsageSpool({ directory: paths.directory, sinks: [memory] });
    expect(await second.replay()).toEqual({ processes: 0, records: 0, recovered: 0 });
    expect(records).toEqual([]);
    first.deliver(sampleRecord({ requestId: 'in-flight' }));
    await Promise.all([first.close(), second.close()]);
    expect(readdirSync(paths.directory)).toEqual([]);
  });

  it('leaves the files of another host alone, and says so', async () => {
    const paths = newCase();
    mkdirSync(paths.directory);
    const owner = '0123456789abcdef';
    writeFileSync(join(paths.directory, `${owner}.lock`), JSON.stringify({ pid: 1, host: 'another-host' }));
    const file = `${owner}.${owner}.0.jsonl`;
    writeFileSync(
      join(paths.directory, file),
      `${JSON.stringify({ type: 'record', seq: 1, record: sampleRecord({ requestId: 'theirs' }) })}\n`,
    );
    const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    let warnings: string[];
    const spool = openUsageSpool({ directory: paths.directory, sinks: [jsonlSink({ path: paths.log })] });
    try {
      expect(await spool.replay()).toEqual({ processes: 0, records: 0, recovered: 0 });
      warnings = emitWarning.mock.calls.map(([warning]) => String(warning));
    } finally {
      emitWarning.mockRestore();
    }
    expect(warnings).toEqual([expect.stringContaining(`${owner}.lock belongs to process 1 of host another-host`)]);
    await spool.close();
    expect(logged(paths.log)).toEqual([]);
    expect(readdirSync(paths.directory).sort()).toEqual([file, `${owner}.lock`].sort());
  });
});

describe('meter({ spool })', () => {
  it('notes a call when it is sent, at its reservation bound, under the id its record then gets', async () => {
    const paths = newCase();
    const records: UsageRecord[] = [];
    const memory: UsageSink = {
      write: (record) => records.push(record),
      flush: async () => undefined,
      close: async () => undefined,
    };
    const spool = openUsageSpool({ directory: paths.directory, sinks: [memory], checkpointIntervalMs: 3_600_000 });
    const spooled = () =>
      readdirSync(paths.directory)
        .filter((name) => name.endsWith('.jsonl'))
        .flatMap((name) =>
          readFileSync(join(paths.directory, name), 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((line) => JSON.parse(line) as { type: string; record?: UsageRecord }),
        );
    const app = express();
    app.use(express.json());
    app.post('/v1/chat/completions', meter({ api: 'openai.chat', spool }), (req, res) => {
      if (req.body.send) req.tollgate.markSending();
      const intents = spooled().filter((line) => line.type === 'intent');
      res.json({
        id: 'chatcmpl-1',
        object: 'chat.completion',
        model: 'gpt-4o-mini',
        intents: intents.map((line) => line.record),
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
      });
    });
    const body = { model: 'gpt-4o-mini', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] };
    const sent = await request(app)
      .post('/v1/chat/completions')
      .send({ ...body, send: true });
    const [intent] = sent.body.intents as UsageRecord[];
    // Before the answer: the call is on disk, charged its bound (the reservation's), as if its process died now.
    expect(intent).toMatchObject({
      status: 0,
      aborted: true,
      usageSource: 'estimated',
      model: 'gpt-4o-mini',
      outputTokens: 20,
      stream: false,
    });
    expect(intent!.costNanoUsd).toBeGreaterThan(0);
    expect(intent!.costNanoUsd).toBe(intent!.estimatedCostNanoUsd);
    // A route that never says it sends (no provider reached) notes nothing.
    const unsent = await request(app).post('/v1/chat/completions').send(body);
    expect(unsent.body.intents).toHaveLength(1);
    expect(await spool.flush()).toBe(true);
    expect(records).toHaveLength(2);
    // The record replaces the intent under the same id, with the provider's usage.
    expect(records[0]).toMatchObject({ id: intent!.id, usageSource: 'provider', status: 200, outputTokens: 1 });
    expect(
      spooled()
        .filter((line) => line.type === 'record')
        .map((line) => line.record!.id),
    ).toEqual(records.map((record) => record.id));
    await spool.close();
  });
});
