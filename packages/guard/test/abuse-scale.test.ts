// The abuse watch at scale: bounded tallies in both stores (with their ends), and the worker scoring as the watch did.
import { afterAll, describe, expect, it } from '@jest/globals';
import { createRedisStores } from '@tollgate/redis';
import { FEATURE_NAMES, type AbuseSubject } from '../src/abuse-features.js';
import { abuseEvidence, abuseScore, byKind, populationProfile, trainAbuseForest } from '../src/abuse-model.js';
import { FEATURE_COUNT } from '../src/abuse-scoring.js';
import { AbuseWorker } from '../src/abuse-worker-client.js';
import { MAX_ABUSE_SUBJECTS, MAX_AUTH_FAILURE_ADDRESSES, MemoryGuardStore } from '../src/memory-guard-store.js';
import { RedisGuardStore, TALLY_SCAN_COUNT } from '../src/redis-guard-store.js';
import * as scripts from '../src/redis-scripts.js';
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

    // The script with a bound of 4 fields: the second call finds 3 and adds all it has; the third finds 5.
    const key = `${prefix}guard:abuse:{bucket:small}`;
    const add = (pairs: [string, number][], marks: string[]) =>
      scripts.addAbuseTallies.run(
        redis.sendCommand,
        [key],
        ['60000', '4', String(pairs.length), ...pairs.flatMap(([field, value]) => [field, String(value)]), ...marks],
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
      expect(await worker.use(JSON.stringify(model))).toMatchObject({ version: 1, partial: false });
      const flat = new Float64Array(rows.length * FEATURE_COUNT);
      rows.forEach((row, i) => flat.set(row, i * FEATURE_COUNT));
      await worker.load({ rows: flat, requests: new Float64Array(rows.length).fill(10), count: rows.length });
      const { scored } = await worker.score();
      expect(scored.map(({ index, ...rest }) => ({ subject: subjects[index], ...rest }))).toEqual(expected);
      expect(expected[0]!.score).toBeGreaterThan(0.65);
    } finally {
      await worker.close();
    }
  });
});
