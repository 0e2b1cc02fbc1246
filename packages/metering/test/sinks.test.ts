import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from '@jest/globals';
import type { UsageRecord } from '@tollgate/core';
import { BatchQueue } from '../src/sink.js';
import { jsonlSink } from '@tollgate/metering';
import { logSink } from '@tollgate/metering/log';
import { prometheusSink } from '@tollgate/metering/prometheus';
import { OVERFLOW_LABEL } from '../src/prometheus-sink.js';
import express from 'express';
import { sampleRecord } from './sample-record.js';
import { pino } from 'pino';
import { Registry } from 'prom-client';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-sinks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('jsonlSink', () => {
  it('appends one JSON line per record, in batches, on flush', async () => {
    const path = join(dir, 'usage.jsonl');
    const sink = jsonlSink({ path, batchSize: 2, flushIntervalMs: 60_000 });
    sink.write(sampleRecord({ requestId: 'a' }));
    sink.write(sampleRecord({ requestId: 'b' }));
    sink.write(sampleRecord({ requestId: 'c' }));
    await sink.flush();
    const lines = readFileSync(path, 'utf8')
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as UsageRecord);
    expect(lines.map((line) => line.requestId)).toEqual(['a', 'b', 'c']);
    expect(lines[0]).toEqual(sampleRecord({ requestId: 'a' }));
    await sink.close();
  });

  it('never throws on a write it cannot do: reports the error once, keeps the records', async () => {
    const errors: unknown[] = [];
    const sink = jsonlSink({
      path: join(dir, 'missing-dir', 'usage.jsonl'),
      onError: (error) => errors.push(error),
      flushIntervalMs: 60_000,
    });
    expect(() => sink.write(sampleRecord())).not.toThrow();
    await expect(sink.flush()).resolves.toBeUndefined();
    expect(errors.length).toBeGreaterThanOrEqual(1);
    await sink.close();
  });
});

describe('BatchQueue', () => {
  it('drops the oldest records beyond maxQueue and retries a failed batch', async () => {
    let fail = true;
    const stored: number[] = [];
    const errors: unknown[] = [];
    const queue = new BatchQueue<number>(
      async (batch) => {
        if (fail) throw new Error('down');
        stored.push(...batch);
      },
      { batchSize: 10, flushIntervalMs: 60_000, maxQueue: 3, onError: (error) => errors.push(error) },
    );
    for (let i = 1; i <= 5; i++) queue.push(i);
    await queue.flush();
    expect(queue.dropped).toBe(2);
    fail = false;
    await queue.flush();
    expect(stored).toEqual([3, 4, 5]);
    expect(errors.length).toBeGreaterThan(0);
    await queue.close();
  });
});

describe('logSink', () => {
  it('writes one structured line per record', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    });
    const sink = logSink({ logger: pino({ base: null }, stream) });
    sink.write(sampleRecord());
    await sink.flush();
    const line = JSON.parse(lines.join('')) as { msg: string; level: number; usage: UsageRecord };
    expect(line).toMatchObject({ msg: 'usage', level: 30, usage: sampleRecord() });
  });
});

describe('prometheusSink', () => {
  const servers: http.Server[] = [];
  afterAll(async () => {
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });

  it('counts requests, tokens by class, cost and latency, served at /metrics', async () => {
    const sink = prometheusSink();
    sink.write(sampleRecord());
    sink.write(
      sampleRecord({
        requestId: 'req-2',
        tenantId: null,
        feature: null,
        model: 'claude-haiku-4-5',
        inputTokens: 300,
        cachedInputTokens: 100,
        cacheWriteTokens: 50,
        outputTokens: 20,
        reasoningTokens: 0,
        costNanoUsd: 500_000_000,
        status: 429,
      }),
    );
    const app = express();
    app.get('/metrics', sink.handler);
    const server = app.listen(0, '127.0.0.1');
    servers.push(server);
    await new Promise((resolve) => server.once('listening', resolve));
    const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = await response.text();
    expect(text).toContain(
      'tollgate_requests_total{tenant="acme",model="gpt-4o",feature="support-bot",status="200",usage_source="provider"} 1',
    );
    expect(text).toContain(
      'tollgate_tokens_total{tenant="acme",model="gpt-4o",feature="support-bot",class="input"} 600',
    );
    expect(text).toContain(
      'tollgate_tokens_total{tenant="acme",model="gpt-4o",feature="support-bot",class="cached_input"} 400',
    );
    expect(text).toContain(
      'tollgate_tokens_total{tenant="acme",model="gpt-4o",feature="support-bot",class="output"} 200',
    );
    expect(text).toContain(
      'tollgate_tokens_total{tenant="acme",model="gpt-4o",feature="support-bot",class="reasoning"} 50',
    );
    expect(text).toContain(
      'tollgate_tokens_total{tenant="none",model="claude-haiku-4-5",feature="none",class="cache_write"} 50',
    );
    expect(text).toContain('tollgate_cost_usd_total{tenant="acme",model="gpt-4o",feature="support-bot"} 0.0035');
    expect(text).toContain('tollgate_cost_usd_total{tenant="none",model="claude-haiku-4-5",feature="none"} 0.5');
    expect(text).toContain(
      'tollgate_request_duration_seconds_bucket{le="2.5",tenant="acme",model="gpt-4o",feature="support-bot"} 1',
    );
    expect(text).toContain(
      'tollgate_request_duration_seconds_count{tenant="acme",model="gpt-4o",feature="support-bot"} 1',
    );
  });

  it('keeps a series per status and usage source, and per token class, under the same tenant, model and feature', async () => {
    const registry = new Registry();
    const sink = prometheusSink({ registry });
    sink.write(sampleRecord());
    sink.write(
      sampleRecord({
        requestId: 'req-2',
        status: 429,
        usageSource: 'counted',
        cachedInputTokens: 0,
        cacheWriteTokens: 0,
        reasoningTokens: 0,
      }),
    );
    sink.write(sampleRecord({ requestId: 'req-3' }));
    const text = await registry.metrics();
    expect(text).toContain(
      'tollgate_requests_total{tenant="acme",model="gpt-4o",feature="support-bot",status="200",usage_source="provider"} 2',
    );
    expect(text).toContain(
      'tollgate_requests_total{tenant="acme",model="gpt-4o",feature="support-bot",status="429",usage_source="counted"} 1',
    );
    expect(text).toContain(
      'tollgate_tokens_total{tenant="acme",model="gpt-4o",feature="support-bot",class="output"} 600',
    );
    expect(text).toContain(
      'tollgate_tokens_total{tenant="acme",model="gpt-4o",feature="support-bot",class="reasoning"} 100',
    );
    expect(text).toContain(
      'tollgate_request_duration_seconds_count{tenant="acme",model="gpt-4o",feature="support-bot"} 3',
    );
  });

  it('counts an MCP tool call under its tool in the model label, its cost with no tokens', async () => {
    const registry = new Registry();
    const sink = prometheusSink({ registry });
    const noTokens = { inputTokens: 0, cachedInputTokens: 0, outputTokens: 0, reasoningTokens: 0 };
    sink.write(
      sampleRecord({ ...noTokens, kind: 'tool', tool: 'search/web_search', model: null, costNanoUsd: 2_000_000 }),
    );
    const text = await registry.metrics();
    expect(text).toContain(
      'tollgate_requests_total{tenant="acme",model="search/web_search",feature="support-bot",status="200",usage_source="provider"} 1',
    );
    expect(text).toContain(
      'tollgate_cost_usd_total{tenant="acme",model="search/web_search",feature="support-bot"} 0.002',
    );
    expect(text).toContain(
      'tollgate_tokens_total{tenant="acme",model="search/web_search",feature="support-bot",class="input"} 0',
    );
  });

  it('bounds label values: later ones go under __other__', async () => {
    const registry = new Registry();
    const sink = prometheusSink({ registry, maxLabelValues: 2, prefix: 'gw_' });
    for (const tenantId of ['t1', 't2', 't3', 't4']) sink.write(sampleRecord({ tenantId }));
    const text = await registry.metrics();
    expect(text).toContain('gw_requests_total{tenant="t1"');
    expect(text).toContain('gw_requests_total{tenant="t2"');
    expect(text).not.toContain('tenant="t3"');
    expect(text).toContain(
      `gw_requests_total{tenant="${OVERFLOW_LABEL}",model="gpt-4o",feature="support-bot",status="200",usage_source="provider"} 2`,
    );
    // A second sink on the same registry reuses the metrics instead of failing to register them.
    expect(() => prometheusSink({ registry, prefix: 'gw_' })).not.toThrow();
  });

  it('names only the tenants it is given: any other counts as __other__, whatever the room left', async () => {
    const registry = new Registry();
    const sink = prometheusSink({ registry, tenants: ['acme', 'beta'] });
    for (const tenantId of ['acme', 'minted-1', 'minted-2', null]) sink.write(sampleRecord({ tenantId }));
    const tenants = [...(await registry.metrics()).matchAll(/^tollgate_requests_total\{tenant="([^"]*)".* (\d+)$/gm)];
    expect(tenants.map((match) => [match[1], match[2]])).toEqual([
      ['acme', '1'],
      [OVERFLOW_LABEL, '2'],
      ['none', '1'],
    ]);
  });
});
