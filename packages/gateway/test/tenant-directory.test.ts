// The tenant directory's resync: a change that reached the table without its message is applied by the next resync,
// which reads the versions of every row and then only the rows that changed (on PGlite, PostgreSQL and in memory).
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from '@jest/globals';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { memoryTenantTable, postgresTenantTable } from '@tollgate/metering/postgres';
import type { TenantTable } from '@tollgate/metering/postgres';
import { TenantDirectory } from '../src/tenant-directory.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const RESYNC_MS = 40;

interface Backend {
  table: TenantTable;
  close(): Promise<void>;
}

function inMemory(): Backend {
  return { table: memoryTenantTable(), close: async () => undefined };
}

function onPglite(): Backend {
  const db = new PGlite();
  return { table: postgresTenantTable(db), close: () => db.close() };
}

function onPostgres(): Backend {
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4 });
  const schema = `tg_tenants_${randomBytes(5).toString('hex')}`;
  return {
    table: postgresTenantTable(pool, { schema, table: 'usage' }),
    async close() {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await pool.end();
    },
  };
}

/** The table with a count of the reads a directory makes of it. */
function counted(table: TenantTable) {
  const reads = { list: 0, get: 0, versions: 0 };
  const wrapped: TenantTable = {
    list: () => (reads.list++, table.list()),
    get: (id) => (reads.get++, table.get(id)),
    versions: () => (reads.versions++, table.versions()),
    put: (id, fields) => table.put(id, fields),
    remove: (id) => table.remove(id),
  };
  return { reads, wrapped };
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let waited = 0; waited < 5_000; waited += 10) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const open: (Backend | TenantDirectory)[] = [];
afterEach(async () => {
  for (const item of open.splice(0).reverse()) await item.close();
});

describe.each([
  ['memory', inMemory],
  ['PGlite', onPglite],
  ['PostgreSQL', onPostgres],
])('the tenant directory on %s', (_name, backendOf) => {
  it('gives every write of a row a new version', async () => {
    const backend = backendOf();
    open.push(backend);
    await backend.table.put('acme', { tier: 'pro' });
    const first = (await backend.table.get('acme'))!.version;
    await backend.table.put('acme', { tier: 'pro' });
    const [second] = await backend.table.versions();
    expect(second).toEqual({ id: 'acme', version: expect.any(String) });
    expect(second!.version).not.toBe(first);
  });

  it('applies changes made behind its back at the next resync, reading only the rows that changed', async () => {
    const backend = backendOf();
    open.push(backend);
    for (let i = 0; i < 50; i++) await backend.table.put(`t${i}`, { tier: 'pro', budget: { usd: 5, period: 'day' } });
    const { reads, wrapped } = counted(backend.table);
    const directory = new TenantDirectory({ configTenants: {}, table: wrapped, resyncMs: RESYNC_MS });
    open.push(directory);
    await directory.ready();
    expect(reads).toEqual({ list: 1, get: 0, versions: 0 });
    const untouched = directory.find('t7');
    expect(directory.budgetSpecs({ keyId: 'k', tenantId: 't1', scopes: [], authMethod: 'api_key' })).toEqual([
      { scope: 'tenant', id: 't1', usd: 5, period: 'day' },
    ]);
    // Written straight to the table, as another process whose message was lost: one changed, one added, one removed.
    await backend.table.put('t1', { tier: 'free' });
    await backend.table.put('new', { tier: 'pro' });
    await backend.table.remove('t2');
    await until(() => directory.tierOf('t1') === 'free' && directory.has('new') && !directory.has('t2'), 'the resync');
    expect(reads.list).toBe(1);
    expect(reads.get).toBe(2);
    expect(directory.budgetSpecs({ keyId: 'k', tenantId: 't1', scopes: [], authMethod: 'api_key' })).toEqual([]);
    // A tenant that did not change is the object it was: nothing made anew for it.
    const versionsRead = reads.versions;
    await until(() => reads.versions > versionsRead + 1, 'two more resyncs');
    expect(directory.find('t7')).toBe(untouched);
    expect(reads.get).toBe(2);
  });

  it('reads a tenant written through it once more (its version is only known by reading it)', async () => {
    const backend = backendOf();
    open.push(backend);
    await backend.table.put('acme', { tier: 'pro' });
    const { reads, wrapped } = counted(backend.table);
    const directory = new TenantDirectory({ configTenants: {}, table: wrapped, resyncMs: RESYNC_MS });
    open.push(directory);
    await directory.ready();
    await directory.put('globex', { tier: 'free' });
    expect(directory.tierOf('globex')).toBe('free');
    await until(() => reads.get === 1, 'the resync reading globex');
    const versionsRead = reads.versions;
    await until(() => reads.versions > versionsRead + 1, 'two more resyncs');
    expect(reads.get).toBe(1);
    expect(directory.all().map((tenant) => tenant.id)).toEqual(['acme', 'globex']);
  });
});
