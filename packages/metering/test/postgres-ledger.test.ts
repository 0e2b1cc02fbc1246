import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { aggregateUsage, migrateUsageLedger, recentUsage } from '@tollgate/metering';
import { insertUsageRecords, ledgerMigrationSql } from '../src/postgres-ledger.js';
import { postgresSink } from '@tollgate/metering/postgres';
import pg from 'pg';
import { cacheSavings, spendRecords } from './ledger-samples.js';
import { sampleRecord } from './sample-record.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// A schema of its own per run, dropped after: other test runs share the database.
const schema = `tg_metering_${randomBytes(6).toString('hex')}`;
const table = 'usage_ledger';
const db = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });

const now = Date.now();
const records = spendRecords(now);

beforeAll(async () => {
  const sink = postgresSink({ connectionString: POSTGRES_URL, schema, table, batchSize: 2, flushIntervalMs: 60_000 });
  for (const record of records) sink.write(record);
  // A retried record (the same record, so the same id) is stored once.
  sink.write(records[0]!);
  await sink.close();
});

afterAll(async () => {
  await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await db.end();
});

describe('postgresSink', () => {
  it('creates the table and its indexes, and stores each request once', async () => {
    const rows = await db.query<{
      request_id: string;
      cost_nano_usd: string;
      tenant_id: string | null;
      ts: Date;
      stream: boolean;
    }>(`SELECT request_id, cost_nano_usd, tenant_id, ts, stream FROM "${schema}"."${table}" ORDER BY request_id`);
    expect(rows.rows.map((row) => row.request_id)).toEqual(['r1', 'r2', 'r3', 'r4', 'r5']);
    expect(Number(rows.rows[0]!.cost_nano_usd)).toBe(3_000_000);
    expect(rows.rows[0]!.ts.toISOString()).toBe(records[0]!.timestamp);
    expect(rows.rows[4]!.tenant_id).toBeNull();
    const indexes = await db.query<{ indexdef: string }>(
      'SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2',
      [schema, table],
    );
    const definitions = indexes.rows.map((row) => row.indexdef).join('\n');
    expect(definitions).toContain('(tenant_id, ts)');
    expect(definitions).toContain('(feature, ts)');
    expect(definitions).toContain('(model, ts)');
    expect(definitions).toContain('(request_id)');
  });

  it("keeps every call when clients reuse request ids, their own or another tenant's", async () => {
    const reused = postgresSink({
      connectionString: POSTGRES_URL,
      schema,
      table: 'reused_ids',
      flushIntervalMs: 60_000,
    });
    // 21 calls of one tenant under 2 request ids, and another tenant's call under the same id.
    const calls = Array.from({ length: 21 }, (_, i) =>
      sampleRecord({ id: `call-${i}`, requestId: `dup-${i % 2}`, tenantId: 'sly', costNanoUsd: 1_000 }),
    );
    calls.push(sampleRecord({ id: 'victim-call', requestId: 'dup-0', tenantId: 'victim', costNanoUsd: 5_000 }));
    for (const record of calls) reused.write(record);
    await reused.close();
    const totals = await aggregateUsage(db, { schema, table: 'reused_ids', by: 'tenant', since: new Date(0) });
    // Before: keyed by request id, 2 rows for 'sly' (90% of its spend hidden) and the victim's row gone.
    expect(totals).toEqual([
      expect.objectContaining({ group: 'sly', requests: 21, costNanoUsd: 21_000 }),
      expect.objectContaining({ group: 'victim', requests: 1, costNanoUsd: 5_000 }),
    ]);
  });

  it('upgrades a table of the request-id-keyed layout in place, keeping its rows', async () => {
    const old = `"${schema}".old_layout`;
    await db.query(`CREATE TABLE ${old} (request_id text PRIMARY KEY, ts timestamptz NOT NULL, key_id text, tenant_id text, user_id text, feature text,
      route text NOT NULL, provider text, model text, requested_model text, input_tokens bigint NOT NULL DEFAULT 0,
      cached_input_tokens bigint NOT NULL DEFAULT 0, cache_write_tokens bigint NOT NULL DEFAULT 0, output_tokens bigint NOT NULL DEFAULT 0,
      reasoning_tokens bigint NOT NULL DEFAULT 0, cost_nano_usd bigint NOT NULL DEFAULT 0, estimated_cost_nano_usd bigint NOT NULL DEFAULT 0,
      status integer NOT NULL, stream boolean NOT NULL DEFAULT false, aborted boolean NOT NULL DEFAULT false,
      latency_ms integer NOT NULL DEFAULT 0, usage_source text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())`);
    await db.query(
      `INSERT INTO ${old} (request_id, ts, route, status, usage_source, cost_nano_usd) VALUES ('before-1', now(), '/v1/chat/completions', 200, 'provider', 42)`,
    );
    await migrateUsageLedger(db, { schema, table: 'old_layout' });
    await migrateUsageLedger(db, { schema, table: 'old_layout' });
    const sink = postgresSink({ connectionString: POSTGRES_URL, schema, table: 'old_layout', flushIntervalMs: 60_000 });
    sink.write(sampleRecord({ id: 'after-1', requestId: 'before-1' }));
    await sink.close();
    const rows = await db.query<{ id: string; request_id: string }>(`SELECT id, request_id FROM ${old} ORDER BY id`);
    expect(rows.rows).toEqual([
      { id: 'after-1', request_id: 'before-1' },
      { id: 'before-1', request_id: 'before-1' },
    ]);
    const key = await db.query<{ def: string }>(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`,
      [old],
    );
    expect(key.rows.map((row) => row.def)).toEqual(['PRIMARY KEY (id)']);
  });

  it("keeps a tool call's kind and tool; a model call's stay absent, also in a table made before them", async () => {
    const sink = postgresSink({ connectionString: POSTGRES_URL, schema, table: 'old_layout', flushIntervalMs: 60_000 });
    const tool = sampleRecord({
      id: 'tool-1',
      kind: 'tool',
      tool: 'search/web_search',
      provider: 'mcp',
      model: null,
      requestedModel: null,
      inputTokens: 0,
      cachedInputTokens: 0,
      outputTokens: 0,
      reasoningTokens: 0,
      costNanoUsd: 2_000_000,
      estimatedCostNanoUsd: 2_000_000,
    });
    sink.write(tool);
    sink.write(sampleRecord({ id: 'model-1' }));
    await sink.close();
    const { records: read } = await recentUsage(db, { schema, table: 'old_layout', limit: 10 });
    expect(read.find((record) => record.id === 'tool-1')).toEqual(tool);
    const model = read.find((record) => record.id === 'model-1');
    expect(model).not.toHaveProperty('kind');
    expect(model).not.toHaveProperty('tool');
  });

  it("keeps the caller's abuse score (column abuse_score), an unscored record's absent, also in a table made before it", async () => {
    const location = { schema, table: 'before_abuse' };
    await migrateUsageLedger(db, location);
    await db.query(`ALTER TABLE "${schema}"."before_abuse" DROP COLUMN abuse_score`);
    const sink = postgresSink({ connectionString: POSTGRES_URL, ...location, flushIntervalMs: 60_000 });
    const scored = sampleRecord({ id: 'scored-1', abuseScore: 0.7312 });
    sink.write(scored);
    sink.write(sampleRecord({ id: 'unscored-1' }));
    await sink.close();
    const stored = await db.query<{ id: string; abuse_score: number | null }>(
      `SELECT id, abuse_score FROM "${schema}"."before_abuse" ORDER BY id`,
    );
    expect(stored.rows).toEqual([
      { id: 'scored-1', abuse_score: 0.7312 },
      { id: 'unscored-1', abuse_score: null },
    ]);
    const { records: read } = await recentUsage(db, { ...location, limit: 10 });
    expect(read.find((record) => record.id === 'scored-1')).toEqual(scored);
    expect(read.find((record) => record.id === 'unscored-1')).not.toHaveProperty('abuseScore');
  });

  it('migrates idempotently (a second run changes nothing)', async () => {
    await expect(migrateUsageLedger(db, { schema, table })).resolves.toBeUndefined();
    expect(ledgerMigrationSql({ schema, table })[0]).toBe(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    expect(() => ledgerMigrationSql({ table: 'usage; DROP TABLE x' })).toThrow(/plain SQL identifier/);
  });

  it('never fails the caller when PostgreSQL is unreachable', async () => {
    const errors: unknown[] = [];
    const sink = postgresSink({
      connectionString: 'postgres://postgres@127.0.0.1:1/none',
      schema,
      table,
      onError: (error) => errors.push(error),
      flushIntervalMs: 60_000,
    });
    expect(() => sink.write(sampleRecord({ requestId: 'lost' }))).not.toThrow();
    await expect(sink.flush()).resolves.toBeUndefined();
    expect(errors.length).toBeGreaterThan(0);
    expect(sink.pending).toBe(1);
    await sink.close();
  });

  it('resolves flush and recovers by itself when PostgreSQL stops answering mid-connection', async () => {
    const relay = new FreezableRelay(new URL(POSTGRES_URL));
    const url = await relay.listen();
    const errors: unknown[] = [];
    const sink = postgresSink({
      connectionString: url,
      schema,
      table: 'hang_ledger',
      queryTimeoutMs: 500,
      onError: (error) => errors.push(error),
      flushIntervalMs: 60_000,
    });
    try {
      sink.write(sampleRecord({ requestId: 'hang-1' }));
      await sink.flush();
      expect(sink.pending).toBe(0);
      // Connections stay open but nothing comes back (a network partition, a frozen server).
      relay.freeze();
      sink.write(sampleRecord({ requestId: 'hang-2' }));
      await sink.flush();
      expect(errors.length).toBeGreaterThan(0);
      expect(sink.pending).toBe(1);
      relay.thaw();
      await sink.flush();
      expect(sink.pending).toBe(0);
      const stored = await db.query(`SELECT request_id FROM "${schema}".hang_ledger ORDER BY request_id`);
      expect(stored.rows.map((row) => row.request_id)).toEqual(['hang-1', 'hang-2']);
    } finally {
      relay.thaw();
      await sink.close();
      await relay.close();
    }
  });
});

/** A TCP relay to PostgreSQL that can stop passing bytes while keeping its connections open. */
class FreezableRelay {
  readonly #server: net.Server;
  readonly #open = new Set<net.Socket>();
  #frozen = false;

  constructor(private readonly target: URL) {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      this.#open.add(client).add(upstream);
      client.on('data', (bytes) => {
        if (!this.#frozen) upstream.write(bytes);
      });
      upstream.on('data', (bytes) => {
        if (!this.#frozen) client.write(bytes);
      });
      const teardown = () => {
        client.destroy();
        upstream.destroy();
        this.#open.delete(client);
        this.#open.delete(upstream);
      };
      for (const socket of [client, upstream]) socket.on('close', teardown).on('error', teardown);
    });
  }

  freeze(): void {
    this.#frozen = true;
  }

  thaw(): void {
    this.#frozen = false;
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const url = new URL(this.target);
    url.host = `127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return url.toString();
  }

  async close(): Promise<void> {
    for (const socket of this.#open) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

describe('aggregateUsage', () => {
  const since = new Date(now - 7 * 86_400_000);

  it('sums spend and tokens per tenant over the range, most expensive first', async () => {
    const rows = await aggregateUsage(db, { by: 'tenant', since, schema, table });
    expect(rows).toEqual([
      {
        group: 'globex',
        requests: 1,
        refusals: 0,
        inputTokens: 2000,
        cachedInputTokens: 0,
        cacheWriteTokens: 0,
        outputTokens: 300,
        reasoningTokens: 0,
        costNanoUsd: 7_500_000,
        cacheHits: 0,
        savedNanoUsd: 0,
      },
      {
        group: 'acme',
        requests: 2,
        refusals: 0,
        inputTokens: 1500,
        cachedInputTokens: 800,
        cacheWriteTokens: 0,
        outputTokens: 150,
        reasoningTokens: 100,
        costNanoUsd: 4_000_000,
        cacheHits: 0,
        savedNanoUsd: 0,
      },
      {
        group: null,
        requests: 1,
        refusals: 0,
        inputTokens: 10,
        cachedInputTokens: 0,
        cacheWriteTokens: 0,
        outputTokens: 5,
        reasoningTokens: 0,
        costNanoUsd: 250_000,
        cacheHits: 0,
        savedNanoUsd: 0,
      },
    ]);
  });

  it('groups by feature, model and UTC day', async () => {
    const byFeature = await aggregateUsage(db, { by: 'feature', since, schema, table });
    expect(byFeature.map((row) => [row.group, row.costNanoUsd])).toEqual([
      ['support-bot', 10_500_000],
      ['search', 1_000_000],
      [null, 250_000],
    ]);
    const byModel = await aggregateUsage(db, { by: 'model', since, schema, table, tenantId: 'acme' });
    expect(byModel.map((row) => [row.group, row.requests])).toEqual([
      ['gpt-4o', 1],
      ['gpt-4o-mini', 1],
    ]);
    const byDay = await aggregateUsage(db, { by: 'day', since: new Date(now - 20 * 86_400_000), schema, table });
    const days = [...new Set(records.map((record) => record.timestamp.slice(0, 10)))].sort();
    expect(byDay.map((row) => row.group)).toEqual(days);
    expect(byDay.reduce((sum, row) => sum + row.costNanoUsd, 0)).toBe(110_750_000);
  });

  it('groups by tag: a record counts under each of its tags, an untagged one under null', async () => {
    const byTag = await aggregateUsage(db, { by: 'tag', since, schema, table });
    expect(byTag.map((row) => [row.group, row.requests, row.costNanoUsd])).toEqual([
      ['eu', 2, 10_500_000],
      ['beta', 1, 3_000_000],
      [null, 2, 1_250_000],
    ]);
  });

  it('stores tags and reads them back; a record without tags has none', async () => {
    const { records: latest } = await recentUsage(db, { schema, table, tenantId: 'acme', limit: 2 });
    expect(latest.map((record) => [record.requestId, record.tags])).toEqual([
      ['r1', ['eu', 'beta']],
      ['r2', undefined],
    ]);
    expect('tags' in latest[1]!).toBe(false);
  });
});

describe('what caching saved, in the aggregates', () => {
  const savings = { schema, table: 'cache_savings' };
  // Response-cache hits (usage source `cache`, billed nothing or a fraction) and provider calls with a cached-input discount.
  const { cached, since, expected } = cacheSavings(now);

  beforeAll(async () => {
    await migrateUsageLedger(db, savings);
    await insertUsageRecords(db, cached, savings);
  });

  it('sums cache hits and savings per group in the one aggregate query', async () => {
    const rows = await aggregateUsage(db, { ...savings, by: 'tenant', since });
    expect(rows.map((row) => ({ group: row.group, cacheHits: row.cacheHits, savedNanoUsd: row.savedNanoUsd }))).toEqual(
      [
        { group: 'globex', ...expected('globex') },
        { group: 'acme', ...expected('acme') },
        { group: 'initech', ...expected('initech') },
      ],
    );
    expect(expected('globex')).toEqual({ cacheHits: 1, savedNanoUsd: 2_501_234_567_891 });
    expect(expected('acme')).toEqual({ cacheHits: 2, savedNanoUsd: 9_800_000 });
    expect(expected('initech')).toEqual({ cacheHits: 0, savedNanoUsd: 0 });
  });
});
