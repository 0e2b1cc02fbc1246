// A read of many rows on a pool leaves nothing of them behind once its caller lets go: pg-pool keeps the query that
// made it open a client reachable for the client's life, so large reads check a client out instead (readMany).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { readMany } from '../src/postgres-ledger.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

describe('readMany on a pool', () => {
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
  afterAll(() => pool.end());

  it('answers the rows, and keeps none of them once they are dropped, though its read opened the client', async () => {
    expect(pool.totalCount).toBe(0);
    let rows: { n: number }[] | undefined = (
      await readMany<{ n: number }>(pool, 'SELECT generate_series(1, 5000) AS n')
    ).rows;
    expect(rows).toHaveLength(5000);
    expect(rows[4999]).toEqual({ n: 5000 });
    expect(pool.totalCount).toBe(1);
    const kept = new WeakRef(rows);
    rows = undefined;
    // Collected once nothing but the pool's client (still open, idle) could hold it.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    expect(kept.deref()).toBeUndefined();
    // The client is reused: a second read answers as well.
    expect((await readMany<{ one: number }>(pool, 'SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });
});
