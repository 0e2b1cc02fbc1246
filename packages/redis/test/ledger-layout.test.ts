// The ledger's Redis layout: a reservation is an amount in an expiry bucket of each scope; nothing else is left behind.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createClient } from 'redis';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import type { SettledRecord } from '@tollgate/core/store-contracts';
import { deleteKeys, keysWithPrefix, REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

describe('reservation ledger layout', () => {
  const prefix = uniquePrefix();
  const client = createClient({ url: REDIS_URL });
  let stores: RedisStores;
  const key = (name: string) => `${prefix}{ledger}:${name}`;
  const hour = 3_600_000;
  const day = 86_400_000;
  /** When a key expires, as epoch ms (PTTL, not Redis 7's PEXPIRETIME: Redis 6.2 is supported). */
  const expiryOf = async (name: string) => Date.now() + (await client.pTTL(key(name)));

  beforeAll(async () => {
    await requireRedis();
    client.on('error', () => undefined);
    await client.connect();
    stores = createRedisStores({ url: REDIS_URL, prefix });
  });

  afterAll(async () => {
    await stores.close();
    await client.close();
    await deleteKeys(prefix);
  });

  it('keeps a reservation as an amount in one expiry bucket of its scope; a settle leaves the scope’s totals only', async () => {
    const expiresAt = Date.now() + hour;
    await stores.ledger.reserve({
      id: 'r1',
      amount: 7,
      ttlMs: 60_000,
      scopes: [{ key: 'tenant:a', limit: 100, expiresAt }],
    });
    const held = await client.hGetAll(key('scope:tenant:a'));
    const bucket = held.lb!;
    expect(bucket).toMatch(/^\d+$/);
    expect(held).toMatchObject({ r: '7', pe: String(expiresAt), [`h${bucket}`]: '7' });
    expect(held.s ?? '0').toBe('0');
    // The bucket is the reservation's expiry rounded up to a power of two near an eighth of its TTL.
    expect(Number(bucket) - Date.now()).toBeGreaterThan(55_000);
    expect(Number(bucket) - Date.now()).toBeLessThan(60_000 + 8_192 + 1_000);
    await stores.ledger.settle('r1', 5);
    // b: the hash's birth (Redis time in µs), which a settle compares with its reservation's.
    expect(await client.hGetAll(key('scope:tenant:a'))).toEqual({
      s: '5',
      r: '0',
      pe: String(expiresAt),
      lb: '',
      x: String(expiresAt + day),
      b: expect.stringMatching(/^\d{16}$/),
    });
    // One scope hash, this process's settle sequence and its ring of reserve receipts (each grant's
    // bucket and amount, read only after a lost reply): no reservation record, no holds set.
    const keys = await keysWithPrefix(prefix);
    expect(keys.filter((k) => !k.includes(':seq:') && !k.includes(':receipts:')).sort()).toEqual([
      key('scope:tenant:a'),
    ]);
    const receipts = keys.filter((k) => k.includes(':receipts:'));
    expect(receipts).toHaveLength(1);
    // The tag, the bucket, the grant and the scope's birth (a give-back of a lost reply then leaves a hash written again alone).
    expect(Object.values(await client.hGetAll(receipts[0]!))).toContain(`0,r1,${bucket},7,${held.b}`);
    // Gone a day after its fields were first written: a process that stopped leaves nothing behind.
    expect(Math.abs((await client.pTTL(receipts[0]!)) - day)).toBeLessThan(5_000);
  });

  it('lets a scope live a day past its period end, or past a reservation that outlasts the period (for late settles)', async () => {
    const periodEnd = Date.now() + 60_000;
    await stores.ledger.reserve({
      id: 'r2',
      amount: 1,
      ttlMs: 10_000,
      scopes: [{ key: 'day', limit: 100, expiresAt: periodEnd }],
    });
    expect(Math.abs((await expiryOf('scope:day')) - (periodEnd + day))).toBeLessThan(1_000);
    const late = await stores.ledger.reserve({
      id: 'r3',
      amount: 1,
      ttlMs: 120_000,
      scopes: [{ key: 'day', limit: 100, expiresAt: periodEnd }],
    });
    expect(late).toMatchObject({ ok: true, scopes: [{ reserved: 2 }] });
    const kept = Number(await client.hGet(key('scope:day'), 'x'));
    expect(kept).toBeGreaterThan(periodEnd + day + 50_000);
    expect(Math.abs((await expiryOf('scope:day')) - kept)).toBeLessThan(1_000);
  });

  it('charges an expired bucket in every scope it held, whichever call touches the scope next', async () => {
    const expiresAt = Date.now() + hour;
    await stores.ledger.reserve({
      id: 'r5',
      amount: 9,
      ttlMs: 100,
      scopes: ['p', 'q'].map((k) => ({ key: k, limit: 100, expiresAt })),
    });
    await new Promise((resolve) => setTimeout(resolve, 250));
    await stores.ledger.usage(['p']);
    expect(await client.hGetAll(key('scope:p'))).toMatchObject({ s: '9', r: '0', lb: '' });
    await stores.ledger.adjustSpent('q', 1, expiresAt);
    expect(await client.hGetAll(key('scope:q'))).toMatchObject({ s: '10', r: '0', lb: '' });
  });

  it('sums the settles of one moment into one batch, and a batch sent again is applied once', async () => {
    const expiresAt = Date.now() + hour;
    const scope = { key: 'batch', limit: 1_000, expiresAt };
    const ids = Array.from({ length: 20 }, (_, i) => `b${i}`);
    await Promise.all(ids.map((id) => stores.ledger.reserve({ id, amount: 10, ttlMs: 60_000, scopes: [scope] })));
    const monitor = client.duplicate();
    await monitor.connect();
    const calls: string[] = [];
    await monitor.monitor((line) => {
      if (line.includes(key('scope:batch'))) calls.push(line);
    });
    try {
      const results = await Promise.all(ids.map((id) => stores.ledger.settle(id, 3)));
      expect(results.every((result) => result.settled && result.reserved === 10)).toBe(true);
      expect(results[19]!.scopes).toEqual([{ key: 'batch', spent: 60, reserved: 0, credit: 0 }]);
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      await monitor.close();
    }
    // One script call for twenty settles.
    expect(calls.filter((line) => /"EVALSHA"|"EVAL"/.test(line))).toHaveLength(1);
    const [sequence] = (await keysWithPrefix(prefix)).filter((k) => k.includes(':seq:'));
    const last = Number(await client.get(sequence!));
    // The same batch number again (a retry whose first reply was lost) changes nothing.
    const { settleBatch } = await import('../src/scripts.js');
    const send = (args: string[]) => client.sendCommand(args);
    const bucket = (await client.hGet(key('scope:batch'), 'lb')) || String(Date.now() + 60_000);
    expect(
      await settleBatch.run(send, [key('scope:batch'), sequence!], [String(last), '1', bucket, '10', '999']),
    ).toEqual([0]);
    expect(await stores.ledger.usage(['batch'])).toEqual([{ key: 'batch', spent: 60, reserved: 0, credit: 0 }]);
  });

  it('sends a batch’s records in one argument, split only where a share lost its reservation (and one per argument when an id holds a line break)', async () => {
    const lostPrefix = uniquePrefix();
    const lost = createRedisStores({ url: REDIS_URL, prefix: lostPrefix });
    const gate = lost.ledger.rebuildGate!;
    const at = (name: string) => `${lostPrefix}{ledger}:${name}`;
    const monitor = client.duplicate();
    await monitor.connect();
    const batches: string[] = [];
    await monitor.monitor((line) => {
      // The settle batches: the calls that carry the ledger's sequence key.
      if (line.includes(at('scope:tenant:lost')) && line.includes(':seq:')) batches.push(line);
    });
    try {
      gate.require();
      await gate.markRebuilt([]);
      const scopes = [{ key: 'tenant:lost', limit: 1_000, expiresAt: Date.now() + hour }];
      await lost.ledger.reserve({ id: 'packed', amount: 100, ttlMs: 60_000, scopes });
      await lost.ledger.reserve({ id: 'by-line', amount: 100, ttlMs: 60_000, scopes });
      await lost.ledger.reserve({ id: 'pair-1', amount: 100, ttlMs: 60_000, scopes });
      await lost.ledger.reserve({ id: 'pair-2', amount: 100, ttlMs: 60_000, scopes });
      // Redis loses the slot (its scope and its rebuilt mark); a rebuild read the records "rec-a" and "rec\nb".
      await client.del([at('scope:tenant:lost'), at('rebuilt')]);
      const now = Date.now();
      await gate.recordCut!(now - 60_000, new Map([[undefined, ['rec-a', 'rec\nb']]]));
      batches.length = 0;
      const first = await lost.ledger.settle('packed', 60, [
        { id: 'rec-a', at: now, amount: 20 },
        { id: 'rec-c', at: now, amount: 40 },
      ]);
      // Of the lost share's 60, only the record the rebuild did not read is charged.
      expect(first.scopes).toEqual([{ key: 'tenant:lost', spent: 40, reserved: 0, credit: 0 }]);
      await lost.ledger.settle('by-line', 30, [{ id: 'rec\nb', at: now, amount: 30 }]);
      expect(await lost.ledger.usage(['tenant:lost'])).toEqual([
        { key: 'tenant:lost', spent: 40, reserved: 0, credit: 0 },
      ]);
      // Until the slot is rebuilt, the lost hash keeps what was charged, record by record, for the restore.
      expect(await client.hGetAll(at('lost:tenant:lost'))).toEqual({ '@a': '40', 'rec-c': `${now},40` });
      // Two settles of one moment share the lost scope in one batch: its refs are two ranges, each read.
      await Promise.all([
        lost.ledger.settle('pair-1', 5, [{ id: 'rec-a', at: now, amount: 5 }]),
        lost.ledger.settle('pair-2', 7, [{ id: 'rec-d', at: now, amount: 7 }]),
      ]);
      expect(await lost.ledger.usage(['tenant:lost'])).toEqual([
        { key: 'tenant:lost', spent: 47, reserved: 0, credit: 0 },
      ]);
      expect(await client.hGetAll(at('lost:tenant:lost'))).toEqual({
        '@a': '47',
        'rec-c': `${now},40`,
        'rec-d': `${now},7`,
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(batches).toHaveLength(3);
      expect(batches[0]).toContain('"b4"');
      expect(batches[0]).toContain('"1-2"');
      expect(batches[1]).toContain('"b3"');
      expect(batches[2]).toContain('"1-1,2-2"');
    } finally {
      await monitor.close();
      await lost.close();
      await deleteKeys(lostPrefix);
    }
  });

  it('notes every share of one record that a lost slot charged (a hold and its extension): the restore takes back each', async () => {
    const lostPrefix = uniquePrefix();
    const lost = createRedisStores({ url: REDIS_URL, prefix: lostPrefix });
    const gate = lost.ledger.rebuildGate!;
    const at = (name: string) => `${lostPrefix}{ledger}:${name}`;
    try {
      gate.require();
      await gate.markRebuilt([]);
      const scope = { key: 'tenant:extended', limit: 10_000, expiresAt: Date.now() + hour };
      // A stream's hold and the extension reserved for it when its output passed what was held.
      await lost.ledger.reserve({ id: 'hold', amount: 300, ttlMs: 60_000, scopes: [scope] });
      await lost.ledger.reserve({ id: 'hold:more:1', amount: 500, ttlMs: 60_000, scopes: [scope] });
      await client.del([at('scope:tenant:extended'), at('rebuilt')]);
      // The call cost 700: its record's parts, the hold's 300 and the extension's 400, settle before the rebuild.
      const now = Date.now();
      await Promise.all([
        lost.ledger.settle('hold:more:1', 400, [{ id: 'rec-x', at: now, amount: 400 }]),
        lost.ledger.settle('hold', 300, [{ id: 'rec-x', at: now, amount: 300 }]),
      ]);
      expect(await client.hGetAll(at('lost:tenant:extended'))).toEqual({ '@a': '700', 'rec-x': `${now},700` });
      // The rebuild read the record (700 in the usage ledger): the call counts once, not 700 and one share again.
      await gate.recordCut!(now - 60_000, new Map([[undefined, ['rec-x']]]));
      await lost.ledger.restoreSpent!(scope.key, 700, scope.expiresAt);
      expect(await lost.ledger.usage([scope.key])).toEqual([{ key: scope.key, spent: 700, reserved: 0, credit: 0 }]);
    } finally {
      await lost.close();
      await deleteKeys(lostPrefix);
    }
  });

  it('lands a batch whose record has no id (a caller in JavaScript), and the settles beside it', async () => {
    const expiresAt = Date.now() + hour;
    const scope = { key: 'no-id', limit: 1_000, expiresAt };
    await stores.ledger.reserve({ id: 'n1', amount: 10, ttlMs: 60_000, scopes: [scope] });
    await stores.ledger.reserve({ id: 'n2', amount: 10, ttlMs: 60_000, scopes: [scope] });
    const results = await Promise.all([
      stores.ledger.settle('n1', 4, [{ at: Date.now(), amount: 4 } as unknown as SettledRecord]),
      stores.ledger.settle('n2', 5, [{ id: 'with-id', at: Date.now(), amount: 5 }]),
    ]);
    expect(results.map((result) => result.settled)).toEqual([true, true]);
    expect(await stores.ledger.usage(['no-id'])).toEqual([{ key: 'no-id', spent: 9, reserved: 0, credit: 0 }]);
  });

  it('lands a batch whose records cannot be read (left out, the amounts charged whole), and refuses records that are no array', async () => {
    const expiresAt = Date.now() + hour;
    const scope = { key: 'unreadable', limit: 1_000, expiresAt };
    for (const id of ['u1', 'u2', 'u3', 'u4'])
      await stores.ledger.reserve({ id, amount: 10, ttlMs: 60_000, scopes: [scope] });
    const throwing = {
      at: Date.now(),
      amount: 1,
      get id(): string {
        throw new Error('a getter that throws');
      },
    };
    const results = await Promise.all([
      stores.ledger.settle('u1', 4, [null, { id: 'no-time', amount: 4 }] as unknown as SettledRecord[]),
      stores.ledger.settle('u2', 5, [
        { id: Symbol('s'), at: Date.now(), amount: Number.NaN },
      ] as unknown as SettledRecord[]),
      stores.ledger.settle('u3', 6, [throwing as unknown as SettledRecord, { id: 'fine', at: Date.now(), amount: 6 }]),
    ]);
    expect(results.map((result) => result.settled)).toEqual([true, true, true]);
    expect(await stores.ledger.usage(['unreadable'])).toEqual([
      { key: 'unreadable', spent: 15, reserved: 10, credit: 0 },
    ]);
    // Not an array: refused before the reservation is let go, so it settles again.
    await expect(stores.ledger.settle('u4', 7, 'records' as unknown as SettledRecord[])).rejects.toThrow(
      /records must be an array/,
    );
    expect((await stores.ledger.settle('u4', 7)).settled).toBe(true);
    expect(await stores.ledger.usage(['unreadable'])).toEqual([
      { key: 'unreadable', spent: 22, reserved: 0, credit: 0 },
    ]);
  });

  it('carries over the spend of a scope written by the ledger before buckets', async () => {
    const periodEnd = Date.now() + hour;
    await client.hSet(key('scope:old'), { spent: '420', reserved: '30', x: String(periodEnd) });
    expect(await stores.ledger.usage(['old'])).toEqual([{ key: 'old', spent: 420, reserved: 0, credit: 0 }]);
    expect(
      await stores.ledger.reserve({
        id: 'after-upgrade',
        amount: 100,
        minAmount: 1,
        ttlMs: 60_000,
        scopes: [{ key: 'old', limit: 500, expiresAt: periodEnd }],
      }),
    ).toMatchObject({ ok: true, amount: 80 });
  });

  it('reads a scope written when a top-up lowered its spend as what was spent and the credit apart', async () => {
    const periodEnd = Date.now() + hour;
    // Spent 70, then 100 credited by the ledger before credit was kept apart: s went to -30, c kept the 100.
    await client.hSet(key('scope:credited'), {
      s: '-30',
      c: '100',
      r: '0',
      pe: String(periodEnd),
      x: String(periodEnd),
    });
    expect(await stores.ledger.usage(['credited'])).toEqual([{ key: 'credited', spent: 70, reserved: 0, credit: 100 }]);
    expect(await client.hmGet(key('scope:credited'), ['s', 'cr', 'c'])).toEqual(['70', '100', null]);
    const scopes = [{ key: 'credited', limit: 50, expiresAt: periodEnd }];
    // limit + credit - spent = 80, as before the upgrade (50 - -30).
    expect(
      await stores.ledger.reserve({ id: 'credited-1', amount: 100, minAmount: 1, ttlMs: 60_000, scopes }),
    ).toMatchObject({ ok: true, amount: 80 });
  });

  it('spools settles that cannot land before close, and the next stores send them exactly once', async () => {
    const { cpSync, mkdtempSync, readdirSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const spool = mkdtempSync(path.join(tmpdir(), 'tollgate-settles-'));
    const files = (dir: string) => readdirSync(dir);
    let down = false;
    const send = (args: string[]) =>
      down ? Promise.reject(new Error('connection refused')) : client.sendCommand(args);
    const first = createRedisStores({ sendCommand: send, prefix, settleSpool: spool, timeoutMs: 200 });
    const scope = { key: 'spooled', limit: 1_000, expiresAt: Date.now() + hour };
    await first.ledger.reserve({ id: 's1', amount: 100, ttlMs: 60_000, scopes: [scope] });
    await first.ledger.reserve({ id: 's2', amount: 100, ttlMs: 60_000, scopes: [scope] });
    down = true;
    const settling = Promise.allSettled([first.ledger.settle('s1', 40), first.ledger.settle('s2', 25)]);
    await first.close();
    expect((await settling).map((result) => result.status)).toEqual(['rejected', 'rejected']);
    expect(files(spool)).toEqual([expect.stringMatching(/^settles-[\w-]+\.jsonl$/)]);
    down = false;
    expect(await stores.ledger.usage(['spooled'])).toEqual([{ key: 'spooled', spent: 0, reserved: 200, credit: 0 }]);
    // A copy, replayed once more below: a batch that already landed is not applied again.
    const copy = mkdtempSync(path.join(tmpdir(), 'tollgate-settles-copy-'));
    cpSync(spool, copy, { recursive: true });
    // Two processes start on the same spool at once: one takes the file, the batches land once.
    const second = createRedisStores({ sendCommand: send, prefix, settleSpool: spool });
    const third = createRedisStores({ sendCommand: send, prefix, settleSpool: spool });
    for (let i = 0; i < 100 && files(spool).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(files(spool)).toEqual([]);
    await second.close();
    await third.close();
    expect(await stores.ledger.usage(['spooled'])).toEqual([{ key: 'spooled', spent: 65, reserved: 0, credit: 0 }]);
    const again = createRedisStores({ sendCommand: send, prefix, settleSpool: copy });
    for (let i = 0; i < 100 && files(copy).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    await again.close();
    expect(await stores.ledger.usage(['spooled'])).toEqual([{ key: 'spooled', spent: 65, reserved: 0, credit: 0 }]);
  });
});
