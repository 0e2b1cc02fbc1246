// Benchmark (issue 61, item 3): what the dashboard's pages and `tollgate report` read at 10,000,000 usage rows (10,000
// tenants, 100,000 keys, a month), with the rollups and without them (the raw path), and the budget rebuild after a
// Redis loss. Standalone: `npx tsx --conditions=source bench/ledger-scale.ts` [--rows N] [--runs N] [--raw-runs N]
// [--rebuild-runs N] [--keep] [--reuse SCHEMA] [--generate-only] [--rebuild] [--partition]. Makes a schema of its own
// in POSTGRES_URL and drops it after (unless --keep).
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import pg from 'pg';
import { budgetGuard } from '@tollgate/budget';
import { createMemoryStores } from '@tollgate/core';
import { aggregateUsage, migrateUsageLedger, partitionUsageLedger, postgresSpendSource } from '@tollgate/metering';
import type { LedgerLocation } from '@tollgate/metering';
import { insertUsageRecords, ledgerTableName } from '../packages/metering/src/postgres-ledger.js';
import { ROLLUP_GRAINS, rollupTableName } from '../packages/metering/src/usage-rollups.js';
import { makeUnpartitionedLedger } from '../packages/metering/test/ledger-backends.js';
import { runReportCommand } from '../packages/cli/src/report-command.js';
import type { ReportIo } from '../packages/cli/src/report-command.js';
import { resolveOptions } from '../packages/dashboard/src/options.js';
import { loadOverview } from '../packages/dashboard/src/overview-page.js';
import { loadTenant } from '../packages/dashboard/src/tenant-page.js';
import { fmtBytes, fmtMs, fmtNumber, quantile, table } from './lib/stats.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
}

const config = {
  rows: argument('rows', 10_000_000),
  tenants: argument('tenants', 10_000),
  keysPerTenant: 10,
  days: 30,
  /** Samples per dashboard read with the rollup (p95 of these), and without it (each takes seconds there). */
  runs: argument('runs', 20),
  rawRuns: argument('raw-runs', 3),
  /** Samples of the rebuild's read and of the whole rebuild (`--rebuild`). */
  rebuildRuns: argument('rebuild-runs', 3),
  chunk: 1_000_000,
};
/** The month: 30 days from 1 October 2026; "now" is its last minute, as a dashboard opened at the month's end. */
const monthStart = Date.UTC(2026, 9, 1);
const monthEnd = monthStart + config.days * DAY;
const now = monthEnd - 60_000;

/**
 * Rows in time order (as calls arrive), every column a real record fills. Tenants are skewed as SaaS traffic is (the
 * busiest 1% make about a fifth of the calls: random()^3); each tenant has 10 keys, 20 end users and half the calls
 * name one, 4 features, 5 models of 2 providers, 2 teams; 2% refused, 1% failed, 3% cache hits, 30% in a session.
 */
function generateSql(table: string): string {
  return `INSERT INTO ${table} (id, request_id, ts, key_id, tenant_id, user_id, feature, route, provider, model,
      requested_model, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
      cost_nano_usd, estimated_cost_nano_usd, status, stream, latency_ms, usage_source, saved_nano_usd, refused_by,
      session, team)
    SELECT 'b' || g, 'r' || g, to_timestamp($3::double precision / 1000 + g * $4::double precision),
           'k-' || (t * ${config.keysPerTenant} + floor(r2 * ${config.keysPerTenant})::int), 't-' || t,
           CASE WHEN r3 < 0.5 THEN 'u-' || t || '-' || floor(r3 * 40)::int END,
           (ARRAY['chat', 'search', 'summarise', NULL])[1 + floor(r4 * 4)::int], '/v1/chat/completions',
           CASE WHEN m < 3 THEN 'openai' ELSE 'anthropic' END,
           (ARRAY['gpt-4o', 'gpt-4o-mini', 'o3', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[1 + m],
           (ARRAY['gpt-4o', 'gpt-4o-mini', 'o3', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[1 + m],
           floor(r5 * 4000)::int, floor(r5 * 1000)::int, 0, floor(r6 * 800)::int, 0,
           CASE WHEN o < 0.06 THEN 0 ELSE floor(r5 * 20000000 + r6 * 8000000)::bigint END, 30000000,
           CASE WHEN o < 0.02 THEN 429 WHEN o < 0.03 THEN 502 ELSE 200 END, r2 < 0.5, floor(r6 * 3000)::int,
           CASE WHEN o >= 0.03 AND o < 0.06 THEN 'cache' ELSE 'provider' END,
           CASE WHEN o >= 0.03 AND o < 0.06 THEN floor(r5 * 20000000)::bigint ELSE 0 END,
           CASE WHEN o < 0.02 THEN 'budget' END,
           CASE WHEN r4 < 0.3 THEN 's-' || t || '-' || (g / 500) END,
           CASE WHEN r3 < 0.2 THEN 'red' WHEN r3 < 0.4 THEN 'blue' END
      FROM (SELECT g, floor(power(random(), 3) * ${config.tenants})::int AS t, random() AS r2, random() AS r3,
                   random() AS r4, random() AS r5, random() AS r6, random() AS o, floor(random() * 5)::int AS m
              FROM generate_series($1::bigint, $2::bigint) AS g OFFSET 0) AS drawn`;
}

interface Timing {
  name: string;
  withRollup: number[];
  raw: number[];
}

/** A page loader reports a failed read on the page rather than throwing: one such is a failed sample here. */
function unfailed(problems: readonly string[]): void {
  const failed = problems.filter((message) => message.startsWith('Could not read'));
  if (failed.length > 0) throw new Error(failed.join('; '));
}

async function timed(read: () => Promise<unknown>, runs: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await read();
    samples.push(performance.now() - started);
  }
  return samples;
}

/** Drops what the migration makes after the usage table (trigger, rollups, secondary indexes): the next one remakes them. */
async function loadBare(pool: pg.Pool, location: LedgerLocation): Promise<void> {
  const usage = ledgerTableName(location);
  await pool.query(`DROP TRIGGER IF EXISTS usage_rollups ON ${usage}`);
  for (const grain of ROLLUP_GRAINS) await pool.query(`DROP TABLE IF EXISTS ${rollupTableName(location, grain)}`);
  const indexes = await pool.query<{ name: string }>(
    `SELECT indexname AS name FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 AND indexname NOT LIKE '%_pkey'`,
    [location.schema, location.table],
  );
  for (const { name } of indexes.rows) await pool.query(`DROP INDEX "${location.schema}"."${name}"`);
}

async function main(): Promise<void> {
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 8 });
  // --reuse SCHEMA: the rows a run kept (--keep, or one cut short) are read again without generating them.
  const reuse = process.argv.indexOf('--reuse');
  const schema = reuse === -1 ? `tg_bench_${randomBytes(6).toString('hex')}` : process.argv[reuse + 1]!;
  const location: LedgerLocation = { schema, table: 'usage' };
  const usage = ledgerTableName(location);
  const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
  try {
    const partition = process.argv.includes('--partition');
    // The usage table as a version before partitions made it: the run times `tollgate ledger partition` on its rows.
    if (partition && reuse === -1) await makeUnpartitionedLedger(pool, location);
    const migrateStarted = performance.now();
    await migrateUsageLedger(pool, location);
    log(`migration ${fmtMs(performance.now() - migrateStarted)} (reusing: a grain added since is filled in it)`);
    // Generating: the raw rows are loaded bare (no trigger, no rollup, no index but the key), then the ledger's own
    // migration makes the indexes and fills every rollup once, as it does for a ledger that predates them. A run that
    // reuses a schema migrates it too: a grain added since is filled there. The trigger is what later inserts run.
    if (reuse === -1) await loadBare(pool, location);
    const step = (config.days * DAY) / 1000 / config.rows;
    const generateStarted = performance.now();
    for (let first = 0; reuse === -1 && first < config.rows; first += config.chunk) {
      const last = Math.min(config.rows, first + config.chunk) - 1;
      const started = performance.now();
      await pool.query(generateSql(usage), [first, last, monthStart, step]);
      log(`rows ${fmtNumber(last + 1)} (${fmtMs(performance.now() - started)} for this chunk)`);
    }
    const generateMs = performance.now() - generateStarted;
    const fillStarted = performance.now();
    await migrateUsageLedger(pool, location);
    const fillMs = performance.now() - fillStarted;
    log(`migration (indexes, rollups filled) ${fmtMs(fillMs)}`);
    if (partition) {
      const started = performance.now();
      const { converted } = await partitionUsageLedger(pool, location);
      log(`tollgate ledger partition (converted: ${converted}) ${fmtMs(performance.now() - started)}`);
    }
    if (process.argv.includes('--generate-only')) return;
    // As autovacuum leaves a ledger soon after a bulk load (inserts set it off since PostgreSQL 13): statistics, and the
    // visibility map that index-only reads (a tenant's top sessions) need not to visit the rows (812 against 104 ms).
    await pool.query(`VACUUM (ANALYZE) ${usage}`);
    for (const grain of ROLLUP_GRAINS) await pool.query(`VACUUM (ANALYZE) ${rollupTableName(location, grain)}`);
    const size = async (table: string) => {
      const result = await pool.query<{ rows: string; bytes: string }>(
        // A partitioned table's own size is 0: its partitions' (pg_partition_tree lists a plain table alone).
        `SELECT (SELECT count(*) FROM ${table}) AS rows,
                (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('${table}')) AS bytes`,
      );
      return `${fmtNumber(Number(result.rows[0]!.rows))} rows (${fmtBytes(Number(result.rows[0]!.bytes))})`;
    };
    const sizes = { raw: await size(usage), rollups: [] as string[] };
    for (const grain of ROLLUP_GRAINS)
      sizes.rollups.push(`${grain.suffix} ${await size(rollupTableName(location, grain))}`);

    // The write path: the sink's batches of 100 records, with the rollup's trigger and without it.
    const batch = (n: number) =>
      Array.from({ length: 100 }, (_, i) => ({
        id: `w${n}-${i}`,
        requestId: `w${n}-${i}`,
        timestamp: new Date(now - 1000 + i).toISOString(),
        keyId: `k-${i}`,
        tenantId: `t-${i % 10}`,
        userId: null,
        feature: 'chat',
        route: '/v1/chat/completions',
        provider: 'openai',
        model: 'gpt-4o',
        requestedModel: 'gpt-4o',
        inputTokens: 100,
        cachedInputTokens: 0,
        cacheWriteTokens: 0,
        outputTokens: 10,
        reasoningTokens: 0,
        costNanoUsd: 1000,
        estimatedCostNanoUsd: 2000,
        status: 200,
        stream: false,
        aborted: false,
        latencyMs: 100,
        usageSource: 'provider' as const,
      }));
    let written = 0;
    const writeWith = await timed(() => insertUsageRecords(pool, batch(written++), location), config.runs);
    await pool.query(`ALTER TABLE ${usage} DISABLE TRIGGER USER`);
    const writeRaw = await timed(() => insertUsageRecords(pool, batch(written++), location), config.runs);
    await pool.query(`ALTER TABLE ${usage} ENABLE TRIGGER USER`);

    const month = { ...location, since: new Date(monthStart), until: new Date(monthEnd) };
    // The dashboard's own loaders, as its routes call them (the HTML and JSON are made from what they return), and the
    // report command as an operator runs it: what the targets are about.
    const dashboardConfig = resolveOptions({
      authorize: () => true,
      ledger: pool,
      ledgerTable: location,
      now: () => now,
    });
    const reportArgs = ['report', '--postgres', POSTGRES_URL, '--schema', schema, '--table', 'usage', '--by', 'tenant'];
    const dates = ['--since', new Date(monthStart).toISOString(), '--until', new Date(monthEnd).toISOString()];
    let reportBytes = 0;
    const reportIo = {
      stdout: { write: (text: string) => (reportBytes += text.length) > 0 },
      stderr: { write: (text: string) => process.stderr.write(text) },
    } as unknown as ReportIo;
    const busiest = 't-0';
    const reads: [name: string, read: () => Promise<unknown>][] = [
      [
        `\`tollgate report --by tenant\`, the month (${fmtNumber(config.tenants)} tenants)`,
        async () => {
          if ((await runReportCommand([...reportArgs, ...dates], reportIo)) !== 0) throw new Error('report failed');
        },
      ],
      [
        'overview page: loadOverview (tenants, features, savings, 30-day series)',
        async () => unfailed((await loadOverview(dashboardConfig)).alerts.map((alert) => alert.message)),
      ],
      [
        `tenant page (${busiest}, busiest), 7 days: loadTenant`,
        async () => unfailed((await loadTenant(dashboardConfig, busiest, '7d')).problems),
      ],
      [
        `tenant page (${busiest}), 30 days: loadTenant`,
        async () => unfailed((await loadTenant(dashboardConfig, busiest, '30d')).problems),
      ],
      [
        `of it: top sessions, 7 days (raw rows: sessions are not rolled up; an index)`,
        () =>
          aggregateUsage(pool, {
            ...location,
            by: 'session',
            since: new Date(now - 7 * DAY),
            until: new Date(now),
            tenantId: busiest,
            limit: 10,
            named: true,
          }),
      ],
      [
        'tenant page (t-5000, quiet), 30 days: loadTenant',
        async () => unfailed((await loadTenant(dashboardConfig, 't-5000', '30d')).problems),
      ],
      [
        'tenants list, searched ("t-12"), a page of 50',
        () => aggregateUsage(pool, { ...month, by: 'tenant', groupPrefix: 't-12', limit: 50, offset: 50 }),
      ],
    ];
    const cell = (samples: number[]) =>
      samples.length === 0
        ? '(not run)'
        : samples.length >= 20
          ? `p50 ${fmtMs(quantile(samples, 0.5))} p95 ${fmtMs(quantile(samples, 0.95))}`
          : `${fmtMs(Math.min(...samples))}–${fmtMs(Math.max(...samples))} (${samples.length} runs)`;
    const timings: Timing[] = [];
    for (const [name, read] of reads) {
      log(name);
      await read(); // warm
      const withRollup = await timed(read, config.runs);
      // Without rollups: the readers fall back to raw rows, the path every read took before them.
      if (config.rawRuns === 0) {
        timings.push({ name, withRollup, raw: [] });
        log(`  with rollups ${cell(withRollup)}`);
        continue;
      }
      for (const grain of ROLLUP_GRAINS)
        await pool.query(`ALTER TABLE ${rollupTableName(location, grain)} RENAME TO hidden_${grain.suffix}`);
      let raw: number[];
      try {
        raw = await timed(read, config.rawRuns);
      } finally {
        for (const grain of ROLLUP_GRAINS)
          await pool.query(`ALTER TABLE "${schema}".hidden_${grain.suffix} RENAME TO usage_${grain.suffix}`);
      }
      timings.push({ name, withRollup, raw });
      // As it goes: a run cut short still says what it measured.
      log(`  with rollups ${cell(withRollup)}; raw rows only ${cell(raw)}`);
    }
    // The rebuild after a Redis loss, of a plan of tenant and key budgets (what the scale workload configures): its read
    // sums callers by tenant and key, from the rollups but the last hours; then the whole rebuild into a memory ledger.
    // (Every caller field kept apart, the month is millions of callers, keys x sessions x tags: Node ran out of heap.)
    const rebuildRead: number[] = [];
    const rebuildAll: number[] = [];
    let restored = 0;
    if (process.argv.includes('--rebuild')) {
      const source = postgresSpendSource(pool, location);
      rebuildRead.push(
        ...(await timed(
          () => source.spentByCaller(monthStart, now + 1, now - 60_000, undefined, undefined, ['keyId', 'tenantId']),
          config.rebuildRuns,
        )),
      );
      rebuildAll.push(
        ...(await timed(async () => {
          const guard = budgetGuard({
            // The month's clock for the store too: its periods end in the past of the machine's.
            ledger: createMemoryStores({ clock: () => now, sweepIntervalMs: 0 }).ledger,
            tenants: { '*': { usd: 1_000_000, period: 'month' } },
            keys: { '*': { usd: 100_000, period: 'month' } },
            now: () => now,
            log: false,
          });
          restored = (await guard.rebuild(source)).restored.length;
          await guard.close();
        }, config.rebuildRuns)),
      );
      log(`rebuild: read ${cell(rebuildRead)}, whole ${cell(rebuildAll)}, ${fmtNumber(restored)} scopes restored`);
    }

    const load = loadavg()
      .map((value) => value.toFixed(2))
      .join(', ');
    process.stdout.write(
      `Ledger at scale: usage ${sizes.raw} with indexes, ${fmtNumber(config.tenants)} tenants (skewed), ` +
        `${fmtNumber(config.tenants * config.keysPerTenant)} keys, ${config.days} days, generated in ` +
        `${fmtMs(generateMs)}, indexes and rollups filled by the migration in ${fmtMs(fillMs)}; rollups: ${sizes.rollups.join(', ')}. PostgreSQL at ` +
        `${new URL(POSTGRES_URL).host}; load average ${load}.\n\n`,
    );
    process.stdout.write(
      table(
        ['read', `with rollup (${config.runs} runs)`, `raw rows only (${config.rawRuns} runs)`],
        [
          ...timings.map((timing) => [timing.name, cell(timing.withRollup), cell(timing.raw)]),
          [
            'rebuild read: spend by tenant and key, the month (rollups, raw rows the last hours)',
            rebuildRead.length > 0 ? cell(rebuildRead) : '(--rebuild)',
            '',
          ],
          [
            `rebuild: tenant and key budgets, ${fmtNumber(restored)} scopes restored (memory ledger)`,
            rebuildAll.length > 0 ? cell(rebuildAll) : '(--rebuild)',
            '',
          ],
          ['write: one batch of 100 records', cell(writeWith), cell(writeRaw)],
        ],
      ) + '\n',
    );
  } finally {
    if (!process.argv.includes('--keep')) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    else log(`kept schema ${schema}`);
    await pool.end();
  }
}

await main();
