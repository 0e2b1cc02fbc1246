// The abuse watch at scale: bounded tallies in both stores (with their ends), and the worker scoring as the watch did.
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from '@jest/globals';
import { createRedisStores } from '@tollgate/redis';
import { AbuseTallyTable, FEATURE_NAMES, type AbuseSubject, type AbuseTallyDelta } from '../src/abuse-features.js';
import { abuseEvidence, abuseScore, byKind, populationProfile, trainAbuseForest } from '../src/abuse-model.js';
import { FEATURE_COUNT, partsText, reasonsAt, scoreWindow, textParts } from '../src/abuse-scoring.js';
import { AbuseWorker } from '../src/abuse-worker-client.js';
import { AbuseWindow } from '../src/abuse-window.js';
import { scoringJson, type AbuseEntry, type Scoring } from '../src/abuse-watch.js';
import { TimeSlice } from '@tollgate/core/store-contracts';
import { MAX_ABUSE_SUBJECTS, MAX_AUTH_FAILURE_ADDRESSES, MemoryGuardStore } from '../src/memory-guard-store.js';
import { RedisGuardStore, TALLY_SCAN_COUNT } from '../src/redis-guard-store.js';
import * as scripts from '../src/redis-scripts.js';
import { runSourceChild } from '../../../test/helpers/source-child.js';
import { deleteKeys, REDIS_URL, uniquePrefix } from './helpers.js';

const prefix = uniquePrefix();
const redis = createRedisStores({ url: REDIS_URL, prefix });
afterAll(async () => {
  await deleteKeys(prefix);
  await redis.close();
});

describe('the memory guard store', () => {
  it('forgets the least recently failing address past MAX_AUTH_FAILURE_ADDRESSES, and keeps the others', async () => {
    const store = new MemoryGuardStore();
    await store.countAuthFailure('10.0.0.1', 'a', 60_000);
    await store.countAuthFailure('10.0.0.1', 'b', 60_000);
    for (let i = 0; i < MAX_AUTH_FAILURE_ADDRESSES; i++) await store.countAuthFailure(`10.1.${i}`, 'c', 60_000);
    // Within its window still, but pushed out by 100,000 addresses failing after it: its count starts again.
    expect(await store.countAuthFailure('10.0.0.1', 'a', 60_000)).toMatchObject({ failures: 1, distinct: 1 });
    expect(await store.countAuthFailure(`10.1.${MAX_AUTH_FAILURE_ADDRESSES - 1}`, 'd', 60_000)).toMatchObject({
      failures: 2,
      distinct: 2,
    });
  }, 120_000);

  it("drops the least recently seen subject's sums of a bucket past MAX_ABUSE_SUBJECTS", async () => {
    const store = new MemoryGuardStore();
    const delta = (subject: AbuseSubject) => ({ subject, counts: { requests: 1 }, marks: [] });
    await store.addAbuseTallies(7, 60_000, [delta('address:first')]);
    const crowd = Array.from({ length: MAX_ABUSE_SUBJECTS }, (_, i) => delta(`key:k${i}`));
    await store.addAbuseTallies(7, 60_000, crowd);
    await store.addAbuseTallies(8, 60_000, [delta('address:first')]);
    const bucket = await store.abuseTallies([7]);
    expect(bucket.size).toBe(MAX_ABUSE_SUBJECTS);
    expect(bucket.has('address:first')).toBe(false);
    expect(bucket.get(`key:k${MAX_ABUSE_SUBJECTS - 1}`)!.counts.requests).toBe(1);
    // Another bucket holds it still: the subject reads as quieter, not unseen.
    expect((await store.abuseTallies([7, 8])).get('address:first')!.counts.requests).toBe(1);
  }, 180_000);
});

describe('the Redis guard store', () => {
  it('gives every tally key an end, and a full bucket of abuse sums adds only to the fields it holds', async () => {
    const store = new RedisGuardStore({ sendCommand: redis.sendCommand, prefix });
    await store.countAuthFailure('10.0.0.1', 'a', 60_000);
    await store.addAbuseTallies(3, 90_000, [{ subject: 'key:k', counts: { requests: 1 }, marks: [] }]);
    const ttl = (key: string) => redis.sendCommand(['PTTL', `${prefix}guard:${key}`]).then(Number);
    for (const key of ['{ip:10.0.0.1}:failures', '{ip:10.0.0.1}:credentials']) {
      expect(await ttl(key)).toBeGreaterThan(50_000);
      expect(await ttl(key)).toBeLessThanOrEqual(60_000);
    }
    expect(await ttl('abuse:{bucket:3}')).toBeGreaterThan(80_000);
    expect(await ttl('abuse:{bucket:3}:version')).toBeGreaterThan(80_000);
    expect(await ttl('abuse:{bucket:3}:log')).toBeGreaterThan(80_000);

    // The script with a bound of 4 fields: the second call finds 3 and adds all it has; the third finds 5.
    const key = `${prefix}guard:abuse:{bucket:small}`;
    const add = (pairs: [string, number][], marks: string[]) =>
      scripts.addAbuseTallies.run(
        redis.sendCommand,
        [key, `${key}:version`, `${key}:log`],
        [
          '60000',
          '4',
          String(pairs.length),
          '1024',
          ...pairs.flatMap(([field, value]) => [field, String(value)]),
          ...marks,
        ],
      );
    await add(
      [
        ['key:a\u001frequests', 1],
        ['key:a\u001fchars', 3],
      ],
      ['key:a\u001fpeer\u001fx'],
    );
    await add(
      [
        ['key:a\u001frequests', 1],
        ['key:b\u001frequests', 1],
      ],
      ['key:b\u001fpeer\u001fy'],
    );
    await add(
      [
        ['key:a\u001frequests', 1],
        ['key:c\u001frequests', 1],
      ],
      ['key:c\u001fpeer\u001fz'],
    );
    const fields = (await redis.sendCommand(['HGETALL', key])) as string[];
    expect(Object.fromEntries(fields.flatMap((value, i) => (i % 2 ? [] : [[value, fields[i + 1]]])))).toEqual({
      'key:a\u001frequests': '3',
      'key:a\u001fchars': '3',
      'key:a\u001fpeer\u001fx': '1',
      'key:b\u001frequests': '1',
      'key:b\u001fpeer\u001fy': '1',
    });
    expect(Number(await redis.sendCommand(['PTTL', key]))).toBeGreaterThan(50_000);
  });
});

describe("the Redis guard store's flush of many subjects", () => {
  it('keeps a few script calls in flight, and a failing one fails the flush, never the process', async () => {
    let inFlight = 0;
    let most = 0;
    const send = (async (command: string[]) => {
      if (!command[0]!.startsWith('EVAL')) return redis.sendCommand(command);
      inFlight++;
      most = Math.max(most, inFlight);
      try {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return await redis.sendCommand(command);
      } finally {
        inFlight--;
      }
    }) as typeof redis.sendCommand;
    const store = new RedisGuardStore({ sendCommand: send, prefix: `${prefix}flush:` });
    const crowd = Array.from({ length: 5_000 }, (_, i) => ({
      subject: `address:10.9.${i >> 8}.${i & 255}` as const,
      counts: { requests: 1 },
      marks: [],
    }));
    await store.addAbuseTallies(72, 60_000, crowd);
    expect((await store.abuseTallies([72])).liveSize).toBe(5_000);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(4);
    await store.close();

    // A call failing while the flush waits its turn to issue more: in a process of its own, where an unhandled
    // rejection would end it.
    const run = await runSourceChild(fileURLToPath(new URL('./fixtures/flush-failure.ts', import.meta.url)));
    expect(run.stderr).not.toContain('EVALSHA');
    expect(run.stdout).toBe('flush: store operation EVALSHA took longer than 500 ms\nalive\n');
    expect(run.code).toBe(0);
  }, 90_000);
});

describe("the Redis guard store's read of a large bucket", () => {
  it('reads it in bounded HSCAN pages, every subject exactly once, even when a page repeats fields', async () => {
    const sent: string[][] = [];
    const previous = new Map<string, string[]>();
    // What a scan over a rehashing hash may do: a page holds fields an earlier page of the same hash returned.
    const send = async (command: string[]) => {
      sent.push(command);
      const reply = await redis.sendCommand(command);
      if (command[0] !== 'HSCAN') return reply;
      const [cursor, fields] = reply as [string, string[]];
      const repeated = [...fields, ...(previous.get(command[1]!) ?? [])];
      previous.set(command[1]!, fields);
      return [cursor, repeated];
    };
    const store = new RedisGuardStore({ sendCommand: send as typeof redis.sendCommand, prefix });
    const subjects = 3_000;
    const deltas = Array.from({ length: subjects }, (_, i) => ({
      subject: `address:10.1.${i >> 8}.${i & 255}` as const,
      counts: { requests: 2, chars: i, tokens: 7 },
      marks: [`peer\u001fk${i % 5}`],
    }));
    await store.addAbuseTallies(21, 60_000, deltas);
    await store.addAbuseTallies(22, 60_000, deltas.slice(0, 10));
    sent.length = 0;

    const read = await store.abuseTallies([21, 22]);
    expect(sent.some(([name]) => name === 'HGETALL')).toBe(false);
    const pages = sent.filter(([name]) => name === 'HSCAN');
    expect(pages.length).toBeGreaterThan(5);
    for (const page of pages) expect(page.slice(3)).toEqual(['COUNT', String(TALLY_SCAN_COUNT)]);
    expect(read.size).toBe(subjects);
    for (const [i, { subject }] of deltas.entries()) {
      const twice = i < 10 ? 2 : 1;
      expect(read.get(subject)!.counts).toMatchObject({ requests: 2 * twice, chars: i * twice, tokens: 7 * twice });
      expect(read.get(subject)!.marks).toEqual({ peer: 1, agent: 0, model: 0, route: 0 });
    }
  }, 30_000);
});

describe('a window table kept from round to round', () => {
  const delta = (subject: AbuseSubject, requests: number, marks: string[] = []): AbuseTallyDelta => ({
    subject,
    counts: { requests, tokens: 3 * requests },
    marks,
  });
  /** Every live row as a person reads it, by subject: what a fresh table's would be. */
  const rowsOf = (table: AbuseTallyTable) =>
    Object.fromEntries(
      table.subjects.filter((subject) => table.has(subject)).map((subject) => [subject, table.get(subject)]),
    );

  it.each([
    ['memory', () => new MemoryGuardStore()],
    ['Redis', () => new RedisGuardStore({ sendCommand: redis.sendCommand, prefix: `${prefix}kept:` })],
  ])('reads each round as a fresh table would (%s store)', async (_name, makeStore) => {
    const store = makeStore();
    const window = new AbuseWindow();
    const kept = window.table;
    // Round 1: a and b in bucket 31; round 2: b and c in bucket 32, the window now bucket 32 alone.
    await store.addAbuseTallies(31, 60_000, [delta('key:a', 2, ['peer\u001fx', 'peer\u001fy']), delta('key:b', 1)]);
    const first = await store.abuseTallies([31], undefined, window);
    expect(first).toBe(kept);
    expect(rowsOf(kept)).toEqual(rowsOf(await store.abuseTallies([31])));
    expect(kept.liveSize).toBe(2);

    await store.addAbuseTallies(32, 60_000, [delta('key:b', 5, ['peer\u001fz']), delta('key:c', 1)]);
    await store.abuseTallies([32], undefined, window);
    const fresh = await store.abuseTallies([32]);
    expect(rowsOf(kept)).toEqual(rowsOf(fresh));
    // a's row is stale: it reads as no row, its sums and marks gone; b's sums and marks are this round's alone.
    expect(kept.has('key:a')).toBe(false);
    expect(kept.get('key:a')).toBeUndefined();
    expect(kept.get('key:b')).toEqual({
      counts: expect.objectContaining({ requests: 5, tokens: 15 }),
      marks: { peer: 1, agent: 0, model: 0, route: 0 },
    });
    expect(kept.liveSize).toBe(2);
    expect(kept.size).toBe(3);
    expect([...Array(kept.size).keys()].filter((row) => kept.live(row)).map((row) => kept.subjects[row])).toEqual([
      'key:b',
      'key:c',
    ]);

    // Back in a later round, a subject's row holds that round's sums only.
    await store.abuseTallies([31, 32], undefined, window);
    expect(rowsOf(kept)).toEqual(rowsOf(await store.abuseTallies([31, 32])));
    expect(kept.get('key:b')!.counts.requests).toBe(6);
    expect(kept.get('key:b')!.marks.peer).toBe(1);
    expect(kept.get('key:a')).toEqual({
      counts: expect.objectContaining({ requests: 2, tokens: 6 }),
      marks: { peer: 2, agent: 0, model: 0, route: 0 },
    });
    expect(window.changed).toBeUndefined();

    // The same buckets again: only the subjects written since are summed again, and the window reads as a fresh one.
    await store.abuseTallies([31, 32], undefined, window);
    expect(window.changed).toEqual([]);
    await store.addAbuseTallies(32, 60_000, [delta('key:a', 4, ['peer\u001fx', 'agent\u001fcurl']), delta('key:d', 1)]);
    await store.abuseTallies([31, 32], undefined, window);
    expect(window.changed!.map((row) => kept.subjects[row]).sort()).toEqual(['key:a', 'key:d']);
    expect(rowsOf(kept)).toEqual(rowsOf(await store.abuseTallies([31, 32])));
    // a's peer x is in both buckets: counted once; its agent is new.
    expect(kept.get('key:a')).toEqual({
      counts: expect.objectContaining({ requests: 6, tokens: 18 }),
      marks: { peer: 2, agent: 1, model: 0, route: 0 },
    });
    // Another bucket in the window (or one left out): merged whole again.
    await store.addAbuseTallies(33, 60_000, [delta('key:e', 2)]);
    await store.abuseTallies([31, 32, 33], undefined, window);
    expect(window.changed).toBeUndefined();
    expect(rowsOf(kept)).toEqual(rowsOf(await store.abuseTallies([31, 32, 33])));
    await store.abuseTallies([32, 33], undefined, window);
    expect(window.changed).toBeUndefined();
    expect(kept.has('key:a')).toBe(true);
    expect(kept.get('key:a')!.counts.requests).toBe(4);
    await store.close();
  });

  it('merges whole again once a bucket may have lost sums: a subject pushed out, a Redis bucket lost and read whole', async () => {
    // An ordered bucket table (the memory store's) at two subjects: a third pushes the least recently seen out.
    const bucket = new AbuseTallyTable(true);
    const window = new AbuseWindow();
    const slice = new TimeSlice(3);
    bucket.addDelta(bucket.seen('key:a', 2), delta('key:a', 3));
    bucket.addDelta(bucket.seen('key:b', 2), delta('key:b', 1));
    await window.merge([bucket], slice);
    bucket.addDelta(bucket.seen('key:c', 2), delta('key:c', 1));
    await window.merge([bucket], slice);
    expect(window.changed).toBeUndefined();
    expect(window.table.has('key:a')).toBe(false);
    expect(Object.keys(rowsOf(window.table)).sort()).toEqual(['key:b', 'key:c']);
    expect(window.table.get('key:c')!.counts.requests).toBe(1);

    // A Redis bucket lost with its Redis and written again with less: read whole, and the window with it.
    const keyPrefix = `${prefix}kept-lost:`;
    const store = new RedisGuardStore({ sendCommand: redis.sendCommand, prefix: keyPrefix });
    const kept = new AbuseWindow();
    await store.addAbuseTallies(61, 60_000, [delta('key:x', 5), delta('key:y', 2)]);
    await store.abuseTallies([61], undefined, kept);
    const hash = `${keyPrefix}guard:abuse:{bucket:61}`;
    const [lostId] = ((await redis.sendCommand(['XRANGE', `${hash}:log`, '-', '+'])) as [string, string[]][])[0]!;
    await redis.sendCommand(['DEL', hash, `${hash}:version`, `${hash}:log`]);
    await store.addAbuseTallies(61, 60_000, [delta('key:x', 1)]);
    // Written again within the same millisecond, its log's first entry gets the lost one's id: as here.
    const [, fields] = ((await redis.sendCommand(['XRANGE', `${hash}:log`, '-', '+'])) as [string, string[]][])[0]!;
    await redis.sendCommand(['DEL', `${hash}:log`]);
    await redis.sendCommand(['XADD', `${hash}:log`, lostId, ...fields]);
    await store.abuseTallies([61], undefined, kept);
    expect(kept.changed).toBeUndefined();
    expect(rowsOf(kept.table)).toEqual(rowsOf(await store.abuseTallies([61])));
    expect(kept.table.has('key:y')).toBe(false);
    expect(kept.table.get('key:x')!.counts.requests).toBe(1);
    await store.close();
  });

  it("reads a Redis bucket again exactly, and two reads at once alike (the store's own tables kept between reads)", async () => {
    const store = new RedisGuardStore({ sendCommand: redis.sendCommand, prefix: `${prefix}reread:` });
    const crowd = Array.from({ length: 300 }, (_, i) => delta(`address:10.3.${i >> 8}.${i & 255}`, 1 + (i % 4)));
    await store.addAbuseTallies(41, 60_000, crowd);
    await store.addAbuseTallies(42, 60_000, crowd.slice(0, 50));
    const [one, two] = await Promise.all([store.abuseTallies([41, 42]), store.abuseTallies([41, 42])]);
    expect(rowsOf(one)).toEqual(rowsOf(two));
    expect(one.get('address:10.3.0.0')!.counts.requests).toBe(2);
    // More sums in one bucket, another bucket left out: read again, nothing counted twice or left over.
    await store.addAbuseTallies(41, 60_000, [delta('address:10.3.0.0', 5)]);
    const again = await store.abuseTallies([41]);
    expect(again.get('address:10.3.0.0')!.counts.requests).toBe(6);
    expect(again.get('address:10.3.0.1')!.counts).toMatchObject({ requests: 2, tokens: 6 });
    expect(again.liveSize).toBe(300);
    expect((await store.abuseTallies([42])).liveSize).toBe(50);
    await store.close();
  });

  it('reads a Redis bucket again only once a write moved its version, from its log when that follows on', async () => {
    const sent: string[][] = [];
    const keyPrefix = `${prefix}versions:`;
    /** Runs once before the next log read reaches Redis: writes between the reader's version and its log. */
    let beforeLogRead: (() => Promise<void>) | undefined;
    const store = new RedisGuardStore({
      sendCommand: (async (command: string[]) => {
        sent.push(command);
        if (command[0] === 'XRANGE' && beforeLogRead) {
          const hook = beforeLogRead;
          beforeLogRead = undefined;
          await hook();
        }
        return redis.sendCommand(command);
      }) as typeof redis.sendCommand,
      prefix: keyPrefix,
    });
    const scans = () => sent.filter(([name]) => name === 'HSCAN').map((command) => command[1]!);
    const logReads = () => sent.filter(([name]) => name === 'XRANGE').length;
    /** What a store holding nothing would read: the bucket's truth in Redis. */
    const fresh = (buckets: number[]) =>
      new RedisGuardStore({ sendCommand: redis.sendCommand, prefix: keyPrefix }).abuseTallies(buckets);
    await store.addAbuseTallies(51, 60_000, [delta('key:old', 3)]);
    await store.addAbuseTallies(52, 60_000, [delta('key:new', 1, ['peer\u001fa'])]);
    const first = await store.abuseTallies([51, 52]);
    expect(first.get('key:old')!.counts.requests).toBe(3);
    expect(scans()).toHaveLength(2);

    // Nothing written since: neither bucket is read again, and the sums are the same.
    sent.length = 0;
    expect(rowsOf(await store.abuseTallies([51, 52]))).toEqual(rowsOf(first));
    expect(scans()).toEqual([]);
    expect(logReads()).toBe(0);

    // Writes to one bucket (a new subject, a known one, a mark seen and a new one): its log brings it up to date.
    await store.addAbuseTallies(52, 60_000, [
      delta('key:new', 4, ['peer\u001fa', 'peer\u001fb']),
      delta('key:other', 1),
    ]);
    await store.addAbuseTallies(52, 60_000, [delta('key:new', 2)]);
    sent.length = 0;
    const after = await store.abuseTallies([51, 52]);
    expect(scans()).toEqual([]);
    expect(logReads()).toBe(1);
    expect(after.get('key:new')).toEqual({
      counts: expect.objectContaining({ requests: 7, tokens: 21 }),
      marks: { peer: 2, agent: 0, model: 0, route: 0 },
    });
    expect(after.get('key:old')!.counts.requests).toBe(3);
    expect(after.get('key:other')!.counts.requests).toBe(1);
    expect(rowsOf(after)).toEqual(rowsOf(await fresh([51, 52])));

    // More entries than a page of the log: read in pages, every one applied.
    for (let i = 0; i < 150; i++) await store.addAbuseTallies(52, 60_000, [delta(`key:page${i % 7}`, 1)]);
    sent.length = 0;
    const paged = await store.abuseTallies([52]);
    expect(scans()).toEqual([]);
    expect(logReads()).toBeGreaterThanOrEqual(3);
    expect(paged.get('key:page0')!.counts.requests).toBe(22);
    expect(rowsOf(paged)).toEqual(rowsOf(await fresh([52])));

    // The log trimmed past the entry held (a reader further behind than its length): the bucket is read whole.
    const bucket52 = `${keyPrefix}guard:abuse:{bucket:52}`;
    await store.addAbuseTallies(52, 60_000, [delta('key:trimmed', 2)]);
    await redis.sendCommand(['XTRIM', `${bucket52}:log`, 'MAXLEN', '1']);
    await store.addAbuseTallies(52, 60_000, [delta('key:trimmed', 1)]);
    sent.length = 0;
    const trimmed = await store.abuseTallies([52]);
    expect(scans()).toHaveLength(1);
    expect(trimmed.get('key:trimmed')!.counts.requests).toBe(3);
    expect(rowsOf(trimmed)).toEqual(rowsOf(await fresh([52])));

    // A write that left no entry (a release before the log, during an upgrade): the chain breaks, the bucket is read.
    await redis.sendCommand(['HINCRBYFLOAT', bucket52, 'key:new\u001frequests', '10']);
    await redis.sendCommand(['INCR', `${bucket52}:version`]);
    sent.length = 0;
    expect((await store.abuseTallies([52])).get('key:new')!.counts.requests).toBe(17);
    expect(scans()).toHaveLength(1);
    // And one by this release after it: its entry does not follow the version held, read whole again, exactly.
    await redis.sendCommand(['HINCRBYFLOAT', bucket52, 'key:new\u001frequests', '10']);
    await redis.sendCommand(['INCR', `${bucket52}:version`]);
    await store.addAbuseTallies(52, 60_000, [delta('key:new', 1)]);
    sent.length = 0;
    expect((await store.abuseTallies([52])).get('key:new')!.counts.requests).toBe(28);
    expect(scans()).toHaveLength(1);
    // A write without an entry, the reader's version read after it, then entries written before its log is read: as
    // many entries as the version moved, but not the ones it moved by. Read whole, exactly.
    await redis.sendCommand(['HINCRBYFLOAT', bucket52, 'key:new\u001frequests', '10']);
    await redis.sendCommand(['INCR', `${bucket52}:version`]);
    const other = new RedisGuardStore({ sendCommand: redis.sendCommand, prefix: keyPrefix });
    beforeLogRead = async () => {
      await other.addAbuseTallies(52, 60_000, [delta('key:new', 1)]);
      await other.addAbuseTallies(52, 60_000, [delta('key:new', 1)]);
    };
    sent.length = 0;
    expect((await store.abuseTallies([52])).get('key:new')!.counts.requests).toBe(40);
    expect(scans()).toHaveLength(1);

    // The bucket lost with its Redis and written again, to the same number of writes: read whole, nothing left over.
    await redis.sendCommand(['DEL', bucket52, `${bucket52}:version`, `${bucket52}:log`]);
    const writes = Number(await redis.sendCommand(['GET', `${bucket52}:version`]));
    expect(writes).toBe(0);
    await store.addAbuseTallies(52, 60_000, [delta('key:new', 1)]);
    sent.length = 0;
    const lost = await store.abuseTallies([52]);
    expect(scans()).toHaveLength(1);
    expect(rowsOf(lost)).toEqual({
      'key:new': expect.objectContaining({ counts: expect.objectContaining({ requests: 1 }) }),
    });

    // A bucket with no version (written by a release before versions): read at every read, never taken as unchanged.
    const unversioned = `${keyPrefix}guard:abuse:{bucket:53}`;
    await redis.sendCommand(['HSET', unversioned, 'key:plain\u001frequests', '2']);
    await redis.sendCommand(['PEXPIRE', unversioned, '60000']);
    sent.length = 0;
    expect((await store.abuseTallies([53])).get('key:plain')!.counts.requests).toBe(2);
    await redis.sendCommand(['HINCRBYFLOAT', unversioned, 'key:plain\u001frequests', '3']);
    expect((await store.abuseTallies([53])).get('key:plain')!.counts.requests).toBe(5);
    expect(scans()).toHaveLength(2);
    await store.close();
  });

  it("keeps a bucket's log to about TALLY_LOG_ENTRIES writes, and a reader further behind reads the bucket whole", async () => {
    const sent: string[][] = [];
    const keyPrefix = `${prefix}log-bound:`;
    const reader = new RedisGuardStore({
      sendCommand: ((command: string[]) => {
        sent.push(command);
        return redis.sendCommand(command);
      }) as typeof redis.sendCommand,
      prefix: keyPrefix,
    });
    const writer = new RedisGuardStore({ sendCommand: redis.sendCommand, prefix: keyPrefix });
    await writer.addAbuseTallies(81, 60_000, [delta('key:first', 1)]);
    await reader.abuseTallies([81]);
    for (let i = 0; i < 600; i++) await writer.addAbuseTallies(81, 60_000, [delta(`key:s${i % 50}`, 1)]);
    // Redis trims whole nodes of the stream (at most 100 entries a node): about 256, never the 601 written.
    const length = Number(await redis.sendCommand(['XLEN', `${keyPrefix}guard:abuse:{bucket:81}:log`]));
    expect(length).toBeGreaterThanOrEqual(256);
    expect(length).toBeLessThan(400);
    sent.length = 0;
    const read = await reader.abuseTallies([81]);
    expect(sent.filter(([name]) => name === 'HSCAN').length).toBeGreaterThan(0);
    expect(read.get('key:s0')!.counts.requests).toBe(12);
    expect(read.get('key:first')!.counts.requests).toBe(1);
    expect(rowsOf(read)).toEqual(
      rowsOf(await new RedisGuardStore({ sendCommand: redis.sendCommand, prefix: keyPrefix }).abuseTallies([81])),
    );
    await reader.close();
  });

  it('brings a kept Redis bucket up to date exactly while other processes write during the reads', async () => {
    const keyPrefix = `${prefix}racing:`;
    const read: Record<string, number> = {};
    const reader = new RedisGuardStore({
      sendCommand: ((command: string[]) => {
        read[command[0]!] = (read[command[0]!] ?? 0) + 1;
        return redis.sendCommand(command);
      }) as typeof redis.sendCommand,
      prefix: keyPrefix,
    });
    const writers = [0, 1, 2].map(() => new RedisGuardStore({ sendCommand: redis.sendCommand, prefix: keyPrefix }));
    const expected = new Map<string, number>();
    let stop = false;
    const writing = writers.map(async (writer, w) => {
      for (let round = 0; !stop; round++) {
        const deltas = Array.from({ length: 40 }, (_, i) =>
          delta(`key:w${w}s${(round * 7 + i) % 300}`, 1, [`route\u001fr${i % 3}`]),
        );
        for (const d of deltas) expected.set(d.subject, (expected.get(d.subject) ?? 0) + 1);
        await writer.addAbuseTallies(61, 60_000, deltas);
      }
    });
    for (let i = 0; i < 30; i++) await reader.abuseTallies([61]);
    stop = true;
    await Promise.all(writing);
    const last = await reader.abuseTallies([61]);
    const truth = await new RedisGuardStore({ sendCommand: redis.sendCommand, prefix: keyPrefix }).abuseTallies([61]);
    expect(rowsOf(last)).toEqual(rowsOf(truth));
    // After the first read, from the log.
    expect(read.XRANGE).toBeGreaterThan(10);
    expect(read.HSCAN ?? 0).toBeLessThan(read.XRANGE!);
    for (const [subject, requests] of expected)
      expect(last.get(subject as AbuseSubject)!.counts.requests).toBe(requests);
    await reader.close();
  });

  it('starts afresh once more rows are stale than live (and more than a few thousand)', () => {
    const table = new AbuseTallyTable();
    table.renew();
    for (let i = 0; i < 10_000; i++) table.addDelta(table.rowOf(`address:10.0.${i}`), delta(`address:10.0.${i}`, 1));
    table.renew();
    table.addDelta(table.rowOf('key:only'), delta('key:only', 4));
    expect(table.size).toBe(10_001);
    // 10,000 stale against 1 live: the next round's table holds only what it is given.
    table.renew();
    expect(table.size).toBe(0);
    table.addDelta(table.rowOf('key:only'), delta('key:only', 1, ['model\u001fm']));
    expect(table.size).toBe(1);
    expect(table.get('key:only')).toEqual({
      counts: expect.objectContaining({ requests: 1 }),
      marks: { peer: 0, agent: 0, model: 1, route: 0 },
    });
  });
});

describe('scoring in the worker thread', () => {
  it('gives every subject the score, reasons and evidence the synchronous scoring gave, in its order', async () => {
    let state = 3;
    const random = () => (state = (state * 48271) % 2147483647) / 2147483647;
    const subjects: AbuseSubject[] = [];
    const rows: number[][] = [];
    for (let i = 0; i < 400; i++) {
      const address = i % 3 === 0;
      subjects.push(address ? `address:10.0.${i}` : `key:k${i}`);
      // A crowd, and every 50th subject far out in a few features.
      rows.push(
        FEATURE_NAMES.map((name, f) =>
          name === 'subjectKind' ? (address ? 1 : 0) : random() * 10 * (i % 50 === 0 && f % 4 === 0 ? 40 : 1),
        ),
      );
    }
    const model = { version: 1, trainedAt: 0, subjects: 400, partial: false, ...trainAbuseForest(rows, 1) };

    // What the watch computed on its own event loop before the worker.
    const expected: { subject: AbuseSubject; score: number; distance: number; reasons: unknown }[] = [];
    const features = subjects.map((subject, i): [AbuseSubject, number[]] => [subject, rows[i]!]);
    for (const group of byKind(features).values()) {
      const profile = populationProfile(group.map(([, row]) => row));
      for (const [subject, row] of group) {
        const { reasons, distance } = abuseEvidence(row, profile);
        expected.push({ subject, score: Number(abuseScore(model, row).toFixed(4)), distance, reasons });
      }
    }
    expected.sort((a, b) => b.score - a.score);

    const worker = new AbuseWorker();
    try {
      expect(await worker.use(JSON.stringify(model), new TimeSlice(2))).toMatchObject({ version: 1, partial: false });
      const flat = new Float64Array(rows.length * FEATURE_COUNT);
      rows.forEach((row, i) => flat.set(row, i * FEATURE_COUNT));
      await worker.load({ rows: flat, requests: new Float64Array(rows.length).fill(10), count: rows.length });
      const { scored } = await worker.score();
      // Columns across: each row's index, score, distance and reasons as they were.
      const crossed = Array.from({ length: scored.count }, (_, i) => ({
        subject: subjects[scored.index[i]!],
        score: scored.score[i],
        distance: scored.distance[i],
        reasons: reasonsAt(scored, i),
      }));
      expect(crossed).toEqual(expected);
      // A row's reasons equal to earlier ones are those earlier ones (nothing made), and new ones when they differ.
      const earlier = reasonsAt(scored, 0);
      expect(reasonsAt(scored, 0, earlier)).toBe(earlier);
      const moved = [{ ...earlier[0]!, value: earlier[0]!.value + 1 }, ...earlier.slice(1)];
      expect(reasonsAt(scored, 0, moved)).toEqual(earlier);
      expect(reasonsAt(scored, 0, moved)).not.toBe(moved);
      expect(expected[0]!.score).toBeGreaterThan(0.65);
    } finally {
      await worker.close();
    }
  });
});

describe('a long text crossing to the worker in parts', () => {
  // 262,144 characters a part: a surrogate pair at the cut stays whole, multi-byte characters anywhere.
  const PART = 262_144;
  it.each([
    ['empty', '', 0],
    ['shorter than a part', 'é😀 ascii', 1],
    ['a surrogate pair across the cut', `${'a'.repeat(PART - 1)}😀${'é'.repeat(10)}`, 2],
    ['exactly two parts of two-byte characters', 'ß'.repeat(2 * PART), 2],
    ['a pair at the very end', `${'a'.repeat(PART - 1)}😀`, 1],
  ])('reads back exactly: %s', async (_, text, count) => {
    const parts = await textParts(text, new TimeSlice(2));
    expect(parts).toHaveLength(count);
    expect(partsText(parts)).toBe(text);
    for (const part of parts) expect(new TextDecoder('utf-8', { fatal: true }).decode(part).length).toBeGreaterThan(0);
  });
});

describe('scoring a large window at once', () => {
  let state = 11;
  const random = () => (state = (state * 48271) % 2147483647) / 2147483647;
  const crowd = (count: number) =>
    Array.from({ length: count }, (_, i) =>
      FEATURE_NAMES.map((name, f) => {
        if (name === 'subjectKind') return i % 2;
        // Few distinct values (ties everywhere), a crowd of rows alike, and rows that differ from them in one value.
        if (i % 3 === 0) return f % 5;
        if (i % 3 === 1) return (f % 5) + (f === i % FEATURE_COUNT ? 1e-12 : 0);
        return Math.floor(random() * 4) * (f % 3 === 0 ? -1 : 1);
      }),
    );

  it("gives each row the score abuseScore gives it alone, rows alike or not, and each kind's medians", () => {
    const rows = crowd(901);
    const model = trainAbuseForest(rows, 2);
    const flat = new Float64Array(rows.length * FEATURE_COUNT);
    rows.forEach((row, i) => flat.set(row, i * FEATURE_COUNT));
    const scored = scoreWindow(model, {
      rows: flat,
      requests: new Float64Array(rows.length).fill(9),
      count: rows.length,
    });
    expect(scored.length).toBe(rows.length);
    const expected = rows.map((row) => Number(abuseScore(model, row).toFixed(4)));
    for (const { index, score } of scored) expect(score).toBe(expected[index]);
    // The rows that differ from the crowd's in one value by 1e-12 are scored apart from it, not as one of it.
    expect(new Set(scored.map(({ score }) => score)).size).toBeGreaterThan(3);

    // Medians by selection, against medians by sorting: odd and even counts, ties, negative values.
    const sortedMedian = (values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b);
      const middle = sorted.length >> 1;
      return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
    };
    for (const count of [1, 2, 7, 8, 400, 401]) {
      const some = rows.slice(0, count);
      const profile = populationProfile(some);
      // (+ 0: a zero's sign depends on which of -0 and 0 an order puts in the middle; both read as 0.)
      FEATURE_NAMES.forEach((_, f) =>
        expect(profile.medians[f]! + 0).toBe(sortedMedian(some.map((row) => row[f]!)) + 0),
      );
    }
  });
});

describe("the shared scoring's JSON, written in parts", () => {
  const entry = (i: number): AbuseEntry => ({
    subject: `address:10.0.${i >> 8}.${i & 255}` as AbuseSubject,
    score: 1 - i / 1000,
    requests: i,
    action: i % 3 === 0 ? 'block' : 'none',
    ...(i % 3 === 0 ? { until: 1_700_000_000_000 + i } : {}),
    reasons: [{ feature: 'requestsPerMinute', value: i / 7, population: 1.5 }],
  });

  it.each([0, 1, 256, 257, 2000])(
    'reads back as JSON.stringify writes it (%i entries), pausing between parts',
    async (n) => {
      const scoring: Scoring = {
        at: 1_700_000_000_000,
        modelVersion: n === 0 ? null : 7,
        entries: Array.from({ length: n }, (_, i) => entry(i)),
      };
      // A slice always used up: every part pauses.
      const slice = new TimeSlice(0);
      const json = await scoringJson(scoring, slice);
      expect(json).toBe(JSON.stringify(scoring));
      expect(slice.pauses).toBe(Math.ceil(n / 256));
    },
  );
});
