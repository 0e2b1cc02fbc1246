// Behavioural abuse: the isolation forest, prompt traits, options, the store's sums, and the watch acting on scores.
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import express, { type Express } from 'express';
import request from 'supertest';
import { apiErrorHandler, createMemoryStores } from '@tollgate/core';
import { providerCall } from '@tollgate/providers';
import { createRedisStores } from '@tollgate/redis';
import { abuseAdminRouter, createGuard, type Guard, type GuardEvent, type GuardStore } from '@tollgate/guard';
import {
  promptTraits,
  featuresOf,
  emptyTally,
  FEATURE_NAMES,
  modelInput,
  type AbuseSubject,
  type RequestTraits,
} from '../src/abuse-features.js';
import { HISTORY_REQUESTS, LocalTallies } from '../src/local-tallies.js';
import { abuseScore, trainAbuseForest } from '../src/abuse-model.js';
import { resolveAbuseOptions } from '../src/abuse-options.js';
import { averagePathLength, isolationScore, trainIsolationForest } from '../src/isolation-forest.js';
import { MemoryGuardStore } from '../src/memory-guard-store.js';
import { RedisGuardStore } from '../src/redis-guard-store.js';
import { deleteKeys, fakeAuth, REDIS_URL, uniquePrefix } from './helpers.js';

describe('isolationScore', () => {
  const random = (() => {
    let state = 7;
    return () => (state = (state * 48271) % 2147483647) / 2147483647;
  })();
  const inliers = Array.from({ length: 300 }, () => [random(), random(), random()]);

  it('c(n) is the published average path length (c(256) ≈ 10.24; c(2) = 1)', () => {
    expect(averagePathLength(2)).toBe(1);
    expect(averagePathLength(256)).toBeCloseTo(10.24, 2);
  });

  it('scores a far point near 1 and the crowd near or below 0.5, the same for the same seed', () => {
    const forest = trainIsolationForest([...inliers, [5, 5, 5]], { seed: 3 });
    const outlier = isolationScore(forest, [5, 5, 5]);
    const crowd = inliers.slice(0, 50).map((point) => isolationScore(forest, point));
    expect(outlier).toBeGreaterThan(0.75);
    expect(Math.max(...crowd)).toBeLessThan(0.65);
    expect(crowd.reduce((sum, s) => sum + s, 0) / crowd.length).toBeLessThan(0.5);
    const again = trainIsolationForest([...inliers, [5, 5, 5]], { seed: 3 });
    expect(isolationScore(again, [5, 5, 5])).toBe(outlier);
    expect(forest.trees).toHaveLength(100);
    expect(forest.sampleSize).toBe(256);
  });

  it('sets apart a point unlike a crowd whose points are all alike in a tree, the further the more', () => {
    // 2,000 ordinary points at (0, 0), a few at (1, 0): most trees' samples hold (0, 0) alone and cannot split.
    const points = [...Array.from({ length: 2000 }, () => [0, 0]), ...Array.from({ length: 3 }, () => [1, 0])];
    const forest = trainIsolationForest(points, { seed: 5 });
    expect(forest.trees.some((tree) => tree.alike?.[0]?.join() === '0,0')).toBe(true);
    const ordinary = isolationScore(forest, [0, 0]);
    const half = isolationScore(forest, [0.5, 0]);
    const whole = isolationScore(forest, [0, 1]);
    expect(ordinary).toBeLessThan(0.5);
    expect(half).toBeGreaterThan(ordinary + 0.1);
    expect(whole).toBeGreaterThan(half);
    expect(whole).toBeGreaterThan(0.75);
  });
});

describe('promptTraits', () => {
  it('reads the entropy in bits per character and fingerprints that see through numbers and spacing', () => {
    expect(promptTraits(['aaaa'])!.entropy).toBe(0);
    expect(promptTraits(['abcd'])!.entropy).toBe(2);
    const one = promptTraits(['Price of item 1234, please'])!;
    const other = promptTraits(['price of item 98,   please!'])!;
    expect(one.fingerprint).not.toBe(other.fingerprint);
    expect(one.nearFingerprint).toBe(other.nearFingerprint);
    expect(promptTraits([])).toBeUndefined();
    expect(promptTraits(['x'.repeat(100_000)])!.chars).toBe(100_000);
  });
});

describe('resolveAbuseOptions', () => {
  it('takes the documented defaults and refuses what cannot work', () => {
    const config = resolveAbuseOptions({});
    expect(config).toMatchObject({ windowMs: 300_000, trainEveryMs: 600_000, minSubjects: 50, shadow: false });
    expect(config).toMatchObject({ throttleAt: 0.65, blockAt: 0.75, throttleFactor: 0.1, blockMs: 900_000 });
    expect([...config.subjects]).toEqual(['key', 'address']);
    expect(() => resolveAbuseOptions({ thresholds: { throttle: 0.8, block: 0.7 } })).toThrow(/must not be below/);
    expect(() => resolveAbuseOptions({ subjects: ['ip' as 'key'] })).toThrow(/abuse.subjects/);
    expect(() => resolveAbuseOptions({ train: { evry: '1m' } as never })).toThrow(/evry/);
    expect(() => resolveAbuseOptions({ throttle: { factor: 1 } })).toThrow(/between 0 and 1/);
  });
});

describe('featuresOf', () => {
  it('turns a window of sums into rates, shares and counts in FEATURE_NAMES order', () => {
    const tally = emptyTally();
    Object.assign(tally.counts, { requests: 30, status401: 15, gaps: 29, gapSum: 29, gapSquares: 29 });
    tally.marks.add('peer\u001fa').add('peer\u001fb').add('agent\u001fcurl');
    const features = featuresOf('address:10.0.0.1', tally, 60_000);
    const named = Object.fromEntries(FEATURE_NAMES.map((name, i) => [name, features[i]]));
    expect(named).toMatchObject({ requestsPerMinute: 30, share401: 0.5, peers: 2, userAgents: 1, subjectKind: 1 });
    // 29 gaps of one second: no variation, drawn a little towards random arrivals (5 gaps of variation 1).
    expect(named.gapVariation).toBeCloseTo(5 / 34, 5);
  });
});

const stores: { name: string; make: () => GuardStore; prefix?: string }[] = [
  { name: 'memory', make: () => new MemoryGuardStore() },
];
const redisPrefix = uniquePrefix();
const listedPrefix = uniquePrefix();
const redisStores = createRedisStores({ url: REDIS_URL, prefix: redisPrefix });
stores.push({
  name: 'redis',
  make: () => new RedisGuardStore({ sendCommand: redisStores.sendCommand, prefix: redisPrefix }),
});
afterAll(async () => {
  await deleteKeys(redisPrefix);
  await redisStores.close();
});

describe('values new to a subject', () => {
  const WINDOW = 60_000;
  const request = (at: number, agent: string, model = 'small'): RequestTraits => ({
    at,
    status: 200,
    refusedBy: undefined,
    prompt: undefined,
    model,
    route: '/v1/chat/completions',
    agent,
  });

  /** One subject's row of a table of its own, observed and taken by name. */
  const subject = (name: AbuseSubject, tallies = new LocalTallies()) => {
    const row = tallies.rowOf(name);
    return {
      observe: (traits: RequestTraits, peer: string) =>
        tallies.observe(row, traits, WINDOW, peer, Math.floor(traits.at / WINDOW)),
      take: () => tallies.take(name)?.counts ?? {},
    };
  };

  it('counts a request from an address or a user agent new to a key with a window of history, not its first', () => {
    const tally = subject('key:k');
    // Its first window and HISTORY_REQUESTS requests: everything is its history, nothing new.
    for (let at = 1_000; at <= 61_000; at += 5_000) tally.observe(request(at, 'OpenAI/Python'), '10.0.0.1');
    const first = tally.take();
    expect(first.requests).toBeGreaterThanOrEqual(HISTORY_REQUESTS);
    expect(first.newPeers).toBeUndefined();
    // A key of a few requests has not shown its habits yet: a second address then is not new.
    const young = subject('key:y');
    for (let i = 0; i < HISTORY_REQUESTS - 1; i++) young.observe(request(i, 'a'), '10.0.0.1');
    young.observe(request(2 * WINDOW, 'a'), '10.0.0.2');
    expect(young.take().newPeers).toBeUndefined();
    tally.observe(request(70_000, 'OpenAI/Python'), '10.0.0.1');
    tally.observe(request(71_000, 'python-requests'), '172.18.0.1');
    tally.observe(request(72_000, 'python-requests'), '172.18.0.1');
    const counts = tally.take();
    expect(counts).toMatchObject({ requests: 3, newPeers: 2, newAgents: 2 });
    expect(counts.newUses).toBeUndefined();
    // A window after it was first seen, the address is the key's own.
    tally.observe(request(132_000, 'python-requests'), '172.18.0.1');
    expect(tally.take().newPeers).toBeUndefined();
  });

  it('counts a model or route new to the subject against its own history, and forgets past REMEMBERED_PER_KIND', () => {
    const tally = subject('key:k');
    for (let i = 0; i < HISTORY_REQUESTS; i++) tally.observe(request(i, 'a', 'small'), 'p');
    tally.observe(request(WINDOW, 'a', 'small'), 'p');
    tally.observe(request(WINDOW + 1, 'a', 'large'), 'p');
    expect(tally.take()).toMatchObject({ requests: HISTORY_REQUESTS + 2, newUses: 1 });
    // Ten addresses in turn: eight remembered, so the first comes back new.
    for (let i = 0; i < 10; i++) tally.observe(request(3 * WINDOW + i, 'a', 'small'), `10.0.0.${i}`);
    tally.observe(request(4 * WINDOW + 100, 'a', 'small'), '10.0.0.0');
    expect(tally.take().newPeers).toBe(11);
  });

  it('reads the new values as shares of the requests, in FEATURE_NAMES order', () => {
    const tally = emptyTally();
    Object.assign(tally.counts, { requests: 20, newPeers: 15, newAgents: 10, newUses: 5 });
    const features = featuresOf('key:k', tally, 60_000);
    const named = Object.fromEntries(FEATURE_NAMES.map((name, i) => [name, features[i]]));
    expect(named).toMatchObject({ newPeerShare: 0.75, newAgentShare: 0.5, newUseShare: 0.25 });
  });
});
describe("LocalTallies: one process's sums per subject, in rows it reuses", () => {
  const WINDOW = 60_000;
  const traits = (at: number, fingerprint = 7): RequestTraits => ({
    at,
    status: 401,
    refusedBy: undefined,
    prompt: { chars: 10, entropy: 2, fingerprint, nearFingerprint: fingerprint },
    model: 'small',
    route: '/v1/chat/completions',
    agent: 'curl',
  });

  const MARKS = ['peer', 'agent', 'route', 'model'];
  const marksOf = (peer: string) => [
    `peer\u001f${peer}`,
    'agent\u001fcurl',
    'route\u001f/v1/chat/completions',
    'model\u001fsmall',
  ];

  it('pushes out the least recently seen subject when full, its sums sent, its row handed on as new', () => {
    const tallies = new LocalTallies(2);
    const [a, b] = [tallies.rowOf('address:a'), tallies.rowOf('address:b')];
    tallies.observe(a, traits(1_000), WINDOW, 'k1', 0);
    tallies.observe(b, traits(1_000), WINDOW, 'k2', 0);
    tallies.rowOf('address:a');
    expect(tallies.takeTouched()).toEqual({ touched: new Set(['address:a', 'address:b']), evicted: [] });
    // `b` is the least recently seen: `c` takes its row, and `b`'s unsent sums and marks come with the next flush.
    const c = tallies.rowOf('address:c');
    expect(c).toBe(b);
    expect(tallies.size).toBe(2);
    const { touched, evicted } = tallies.takeTouched();
    expect([...touched]).toEqual(['address:c']);
    expect(evicted).toEqual([
      { subject: 'address:b', counts: expect.objectContaining({ requests: 1, status401: 1 }), marks: marksOf('k2') },
    ]);
    expect(tallies.take('address:b')).toBeUndefined();
    // The row is new to `c`: no gap from `b`'s request, no repeat of its prompt, and the marks `b` sent in this bucket
    // are `c`'s to send.
    tallies.observe(c, traits(2_000), WINDOW, 'k2', 0);
    const delta = tallies.take('address:c')!;
    expect(delta.counts).toEqual({
      requests: 1,
      status401: 1,
      prompts: 1,
      chars: 10,
      charSquares: 100,
      entropy: 2,
      entropySquares: 4,
    });
    expect(delta.marks).toEqual(marksOf('k2'));
    // `a` kept its own: its gap and its repeated prompt, and its marks of this bucket are not sent twice.
    tallies.take('address:a');
    tallies.observe(a, traits(3_000), WINDOW, 'k1', 0);
    expect(tallies.take('address:a')).toEqual({
      subject: 'address:a',
      counts: expect.objectContaining({ requests: 1, gaps: 1, gapSum: 2, repeats: 1, nearRepeats: 1 }),
      marks: [],
    });
  });

  it('sends a mark once a bucket, at most MARKS_PER_KIND of a kind, and again in the next bucket', () => {
    const tallies = new LocalTallies();
    const row = tallies.rowOf('key:k');
    for (let i = 0; i < 100; i++) tallies.observe(row, traits(1_000 + i), WINDOW, `10.0.0.${i % 80}`, 5);
    const first = tallies.take('key:k')!.marks;
    expect(first.filter((mark) => mark.startsWith('peer'))).toHaveLength(64);
    for (const kind of MARKS.slice(1)) expect(first.filter((mark) => mark.startsWith(kind))).toHaveLength(1);
    tallies.observe(row, traits(2_000), WINDOW, '10.0.0.1', 5);
    expect(tallies.take('key:k')!.marks).toEqual([]);
    tallies.observe(row, traits(3_000), WINDOW, '10.0.0.1', 6);
    expect(tallies.take('key:k')!.marks).toEqual(marksOf('10.0.0.1'));
  });
});

describe('the model', () => {
  it('reads gap variation on a log scale, and isolates a subject set apart by rhythm and entropy alone', () => {
    const at = (features: number[], name: string) => features[FEATURE_NAMES.indexOf(name as never)]!;
    expect(at(modelInput(FEATURE_NAMES.map(() => 1)), 'gapVariation')).toBe(0);
    let state = 11;
    const random = () => (state = (state * 48271) % 2147483647) / 2147483647;
    const crowd = Array.from({ length: 300 }, () =>
      FEATURE_NAMES.map((name) =>
        name === 'subjectKind'
          ? 0
          : name === 'gapVariation'
            ? 0.7 + random() * 2
            : name === 'promptEntropy'
              ? 3.6 + random()
              : random() * 50,
      ),
    );
    const scraper = crowd[0]!.map((value, i) =>
      FEATURE_NAMES[i] === 'gapVariation' ? 0.08 : FEATURE_NAMES[i] === 'promptEntropy' ? 6.4 : value,
    );
    const model = trainAbuseForest([...crowd, scraper], 1);
    expect(model.views.length).toBeGreaterThan(1);
    const crowdScores = crowd.slice(1, 60).map((row) => abuseScore(model, row));
    expect(abuseScore(model, scraper)).toBeGreaterThan(0.65);
    expect(abuseScore(model, scraper)).toBeGreaterThan(Math.max(...crowdScores));
  });
});

describe.each(stores)('the $name guard store', ({ make }) => {
  it('adds the sums of every process per subject and bucket, and merges the buckets asked for', async () => {
    const store = make();
    await store.addAbuseTallies(10, 60_000, [
      { subject: 'key:k1', counts: { requests: 2, chars: 40 }, marks: ['peer\u001f10.0.0.1'] },
      { subject: 'address:10.0.0.1', counts: { requests: 2, status401: 1 }, marks: [] },
    ]);
    await store.addAbuseTallies(10, 60_000, [
      { subject: 'key:k1', counts: { requests: 1.5 }, marks: ['peer\u001f10.0.0.1', 'peer\u001f10.0.0.2'] },
    ]);
    await store.addAbuseTallies(11, 60_000, [{ subject: 'key:k1', counts: { requests: 1 }, marks: [] }]);
    const merged = await store.abuseTallies([10, 11, 12]);
    expect(merged.get('key:k1')!.counts).toMatchObject({ requests: 4.5, chars: 40 });
    // 10.0.0.1 came from both processes: counted once.
    expect(merged.get('key:k1')!.marks).toEqual({ peer: 2, agent: 0, model: 0, route: 0 });
    expect(merged.get('address:10.0.0.1')!.counts).toMatchObject({ requests: 2, status401: 1 });
    expect((await store.abuseTallies([11])).get('key:k1')!.counts.requests).toBe(1);
  });

  it('keeps named values, with an end when given', async () => {
    const store = make();
    await store.putAbuseState('model', '{"version":1}');
    await store.putAbuseState('cleared:key:k1', '1', 300);
    expect(await store.abuseState('model')).toBe('{"version":1}');
    expect(await store.abuseState('cleared:key:k1')).toBe('1');
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await store.abuseState('cleared:key:k1')).toBeUndefined();
    expect(await store.deleteAbuseState('model')).toBe(true);
    expect(await store.deleteAbuseState('model')).toBe(false);
  });
});

/** An app with the abuse checks where the gateway puts them: before auth, and after it. */
function abuseApp(guard: Guard, keys: Record<string, { tenantId?: string }>): Express {
  const app = express();
  app.set('trust proxy', 'loopback');
  app.post(
    '/v1/chat',
    guard.abuseBeforeAuth,
    fakeAuth(keys),
    express.json(),
    providerCall('openai.chat'),
    guard.abuseAfterAuth,
    (req, res) => {
      res.json({ ok: true, abuseScore: req.tollgate.abuseScore ?? null });
    },
  );
  app.use('/admin/abuse', abuseAdminRouter(guard));
  app.use(apiErrorHandler());
  return app;
}

/** One chat call as `key` from `from`. */
const call = (app: Express, key: string, from: string, content = 'hello') =>
  request(app)
    .post('/v1/chat')
    .set('authorization', `Bearer ${key}`)
    .set('x-forwarded-for', from)
    .send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });

let guard: Guard | undefined;
afterEach(async () => {
  await guard?.close();
  guard = undefined;
});

describe('the abuse watch', () => {
  const keys = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, { tenantId: `t${i % 5}` }]));

  /** 40 keys, each from its own address, 2-6 calls; then an address trying 60 unknown keys (`round`: other ones). */
  async function traffic(app: Express, round = 0): Promise<void> {
    const words = ['question', 'request', 'prompt'][round]!;
    for (let i = 0; i < 40; i++)
      for (let n = 0; n < 2 + (i % 5); n++) await call(app, `k${i}`, `10.1.0.${i}`, `${words} ${n} of key ${i}`);
    for (let n = 0; n < 60; n++) await call(app, `stolen-${round}-${n}`, '10.9.9.9');
  }

  it('waits for minSubjects and a whole window, then blocks the stuffing address alone, says why, and an operator clears it', async () => {
    const events: GuardEvent[] = [];
    let now = Date.now();
    guard = createGuard({
      stores: createMemoryStores(),
      alerts: { log: false, onEvent: (event) => void events.push(event) },
      abuse: { window: '10s', train: { every: '1m', minSubjects: 30 } },
      clock: () => now,
    });
    const app = abuseApp(guard, keys);
    await call(app, 'k0', '10.1.0.0');
    await guard.flush();
    expect(guard.abuseModel()).toBeUndefined();
    await traffic(app);
    await guard.flush();
    expect(guard.abuseModel()).toMatchObject({ subjects: expect.any(Number) });
    // A model grown on the start's partly filled windows scores and acts on nobody.
    expect(guard.abuseEntries().length).toBeGreaterThan(40);
    expect(guard.abuseEntries().filter((entry) => entry.action !== 'none')).toEqual([]);
    now += 10_000;
    await traffic(app, 1);
    await guard.flush();
    // Past the thresholds now, acted on once it has stayed past them for a bucket.
    expect(guard.abuseEntries()[0]).toMatchObject({ subject: 'address:10.9.9.9', action: 'none', pastSince: now });
    now += 2_000;
    await guard.flush();
    const listed = await request(app).get('/admin/abuse');
    const stuffing = listed.body.subjects[0];
    expect(stuffing).toMatchObject({ subject: 'address:10.9.9.9', action: 'block' });
    expect(stuffing.score).toBeGreaterThanOrEqual(0.75);
    // Sixty credentials from one address, every one refused (which of the two ranks first depends on the gaps the
    // machine's timing gave the ordinary keys).
    const named = stuffing.reasons.map((reason: { feature: string }) => reason.feature);
    expect(named.filter((feature: string) => feature === 'peers' || feature === 'share401')).not.toEqual([]);
    const acted = listed.body.subjects.filter((entry: { action: string }) => entry.action !== 'none');
    expect(acted.map((entry: { subject: string }) => entry.subject)).toEqual(['address:10.9.9.9']);
    const refused = await call(app, 'k1', '10.9.9.9');
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('abuse_blocked');
    expect(refused.body.error.message).toMatch(
      /blocked for \d+s: its traffic scored 0\.\d+ as abuse .*An operator can clear it\./,
    );
    const served = await call(app, 'k3', '10.1.0.3', 'question 9 of key 3');
    expect(served.status).toBe(200);
    expect(served.body.abuseScore).toBeGreaterThan(0);
    expect(events).toEqual([
      expect.objectContaining({
        type: 'abuse.detected',
        address: '10.9.9.9',
        details: expect.objectContaining({ subject: 'address:10.9.9.9', action: 'block', reasons: stuffing.reasons }),
      }),
    ]);
    const cleared = await request(app).delete('/admin/abuse/address:10.9.9.9');
    expect(cleared.body).toMatchObject({
      cleared: 'address:10.9.9.9',
      lifted: [{ kind: 'block', subject: 'ip:10.9.9.9' }],
    });
    expect((await call(app, 'k1', '10.9.9.9')).status).toBe(200);
    // Cleared: still scored, left alone for the block's period.
    await guard.flush();
    expect(guard.mitigations()).toEqual([]);
    expect((await request(app).delete('/admin/abuse/nobody')).status).toBe(400);
  }, 120_000);

  it('shares its scoring at once when a model, an action or a spell changed, else every 10 s', async () => {
    let now = Date.now();
    guard = createGuard({
      stores: createMemoryStores(),
      alerts: { log: false },
      abuse: { window: '1m', train: { every: '1h', minSubjects: 30 } },
      clock: () => now,
    });
    const store = guard.store;
    const put = store.putAbuseState.bind(store);
    const shared: string[] = [];
    store.putAbuseState = async (name, value, ttlMs) => {
      if (name === 'scores') shared.push(value);
      return put(name, value, ttlMs);
    };
    const sharedEntries = () => JSON.parse(shared.at(-1)!).entries as unknown[];
    const app = abuseApp(guard, keys);
    await traffic(app);
    await guard.flush();
    // A flush grows the model again while the window holds a subject unlike what it was grown on: once here.
    await guard.flush();
    const version = guard.abuseModel()?.version;
    expect(version).toBeDefined();
    const first = shared.length;
    expect(first).toBeGreaterThan(0);
    expect(sharedEntries()).toEqual(JSON.parse(JSON.stringify(guard.abuseEntries())));
    // New traffic moves counts and scores, and nobody's action: listed here at once, shared later.
    const listed = guard.abuseEntries();
    await call(app, 'k0', '10.1.0.0', 'another question');
    await guard.flush();
    expect(guard.abuseModel()?.version).toBe(version);
    expect(guard.abuseEntries()).not.toEqual(listed);
    expect(shared.length).toBe(first);
    // A clear is shared at once.
    await request(app).delete(`/admin/abuse/${guard.abuseEntries()[0]!.subject}`);
    await guard.flush();
    expect(shared.length).toBe(first + 1);
    // 10 s on, the moved counts are shared, and what is shared is what this process lists.
    now += 10_000;
    await guard.flush();
    expect(shared.length).toBeGreaterThanOrEqual(first + 2);
    expect(sharedEntries()).toEqual(JSON.parse(JSON.stringify(guard.abuseEntries())));
  }, 120_000);

  it('is followed by another process on Redis, which reads and parses the scoring only when a new one is shared', async () => {
    const prefix = uniquePrefix();
    const now = Date.now();
    const options = {
      alerts: { log: false },
      abuse: { window: '1m', train: { every: '1h', minSubjects: 30 } },
      clock: () => now,
    } as const;
    const scorerStores = createRedisStores({ url: REDIS_URL, prefix });
    const followerStores = createRedisStores({ url: REDIS_URL, prefix });
    const scorer = createGuard({ ...options, stores: scorerStores });
    const follower = createGuard({ ...options, stores: followerStores });
    try {
      // The scorer holds every turn (its rounds and flushes): the follower's claims, which a frozen clock would let it
      // win again once a claim's second has passed in Redis, are refused.
      follower.store.claim = async () => false;
      const read = follower.store.abuseState.bind(follower.store);
      let parsed = 0;
      follower.store.abuseState = async (name) => {
        if (name === 'scores') parsed++;
        return read(name);
      };
      const app = abuseApp(scorer, keys);
      await traffic(app);
      await scorer.flush();
      await scorer.flush();
      // The follower's timer rounds (each second) find this second's scoring claimed, and follow it.
      const followed = async (entries: unknown) => {
        for (let i = 0; i < 60 && JSON.stringify(follower.abuseEntries()) !== JSON.stringify(entries); i++)
          await new Promise((resolve) => setTimeout(resolve, 100));
        expect(JSON.parse(JSON.stringify(follower.abuseEntries()))).toEqual(JSON.parse(JSON.stringify(entries)));
      };
      await followed(scorer.abuseEntries());
      const reads = parsed;
      expect(reads).toBeGreaterThan(0);
      // Rounds with nothing new shared read a few bytes, not the scoring.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(parsed).toBe(reads);
      // A clear is shared at once, and followed.
      await request(app).delete(`/admin/abuse/${scorer.abuseEntries()[0]!.subject}`);
      await scorer.flush();
      for (let i = 0; i < 60 && parsed === reads; i++) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(parsed).toBe(reads + 1);
      await followed(scorer.abuseEntries());
    } finally {
      await scorer.close();
      await follower.close();
      await deleteKeys(prefix);
      await scorerStores.close();
      await followerStores.close();
    }
  }, 120_000);

  it.each([
    { name: 'memory', make: () => createMemoryStores(), prefix: '' },
    { name: 'redis', make: () => createRedisStores({ url: REDIS_URL, prefix: listedPrefix }), prefix: listedPrefix },
  ])(
    'lists each subject with its requests in the window exactly, round after round, as subjects come and buckets turn ($name store)',
    async ({ make, prefix }) => {
      const given = make();
      let now = Math.ceil(Date.now() / 2_000) * 2_000;
      guard = createGuard({
        stores: given,
        alerts: { log: false },
        abuse: { window: '10s', subjects: ['key'], train: { every: '1m', minSubjects: 3 } },
        clock: () => now,
      });
      const app = abuseApp(guard, keys);
      const sent = new Map<string, number>();
      const send = async (key: string, times: number) => {
        for (let n = 0; n < times; n++) await call(app, key, '10.2.0.1', `note ${n}`);
        sent.set(`key:${key}`, (sent.get(`key:${key}`) ?? 0) + times);
      };
      const listed = () => Object.fromEntries(guard!.abuseEntries().map((entry) => [entry.subject, entry.requests]));
      // Round by round (ms since the last, keys and their calls): within one bucket (2 s) the window is summed again
      // only for the keys written since; in the next bucket it is merged whole, the earlier one's sums kept.
      const rounds: [number, [string, number][]][] = [
        [
          0,
          [
            ['k0', 2],
            ['k1', 1],
            ['k2', 3],
            ['k3', 1],
          ],
        ],
        [
          300,
          [
            ['k1', 2],
            ['k4', 1],
          ],
        ],
        [300, []],
        [
          2_000,
          [
            ['k0', 1],
            ['k5', 2],
          ],
        ],
        [300, [['k5', 1]]],
      ];
      for (const [later, calls] of rounds) {
        now += later;
        for (const [key, times] of calls) await send(key, times);
        await guard.flush();
        expect(listed()).toEqual(Object.fromEntries(sent));
      }
      await guard.close();
      guard = undefined;
      if (prefix) await deleteKeys(prefix);
      await given.close();
    },
    60_000,
  );

  it('blocks credential stuffing spread over twelve addresses, a guess every 20 s from each, within a minute', async () => {
    const events: GuardEvent[] = [];
    const start = Date.now();
    let now = start;
    guard = createGuard({
      stores: createMemoryStores(),
      alerts: { log: false, onEvent: (event) => void events.push(event) },
      abuse: {},
      clock: () => now,
    });
    const app = abuseApp(guard, keys);
    // Ordinary keys, and a person whose client sends the same wrong key again and again.
    for (let i = 0; i < 40; i++) await call(app, `k${i}`, `10.1.0.${i}`, `question of key ${i}`);
    const refusedAt = new Map<string, number>();
    let guess = 0;
    for (let second = 0; second <= 60; second++) {
      now = start + second * 1_000;
      if (second % 10 === 0) await call(app, 'old-key', '10.1.1.1');
      for (let a = 0; a < 12; a++) {
        const phase = Math.floor((a * 20) / 12);
        if (second < phase || (second - phase) % 20 !== 0) continue;
        const answer = await call(app, `guess-${guess++}`, `10.66.0.${a}`);
        if (answer.status === 403 && !refusedAt.has(`10.66.0.${a}`)) refusedAt.set(`10.66.0.${a}`, second);
      }
      await guard.flush();
    }
    const blocked = guard
      .mitigations()
      .filter((m) => m.kind === 'block' && m.anomalyId?.startsWith('abuse:'))
      .map((m) => m.subject)
      .sort();
    // Each address blocked once it had tried its second key (between 20 and 40 s in); nobody else.
    expect(blocked).toEqual(Array.from({ length: 12 }, (_, a) => `ip:10.66.0.${a}`).sort());
    expect(events.every((event) => /credential stuffing spread thin/.test(event.message))).toBe(true);
    expect(events).toHaveLength(12);
    // Its third guess came 20 s after the block: refused.
    expect(refusedAt.size).toBe(12);
    expect(Math.max(...refusedAt.values())).toBeLessThanOrEqual(60);
    expect((await call(app, 'k1', '10.1.0.1', 'question of key 1')).status).toBe(200);
  }, 120_000);

  it('in shadow records and alerts what it would do, and serves everything', async () => {
    const events: GuardEvent[] = [];
    let now = Date.now();
    guard = createGuard({
      stores: createMemoryStores(),
      alerts: { log: false, onEvent: (event) => void events.push(event) },
      abuse: { window: '10s', train: { every: '1m', minSubjects: 30 }, shadow: true },
      clock: () => now,
    });
    const app = abuseApp(guard, keys);
    await traffic(app);
    await guard.flush();
    now += 10_000;
    await traffic(app, 1);
    await guard.flush();
    now += 2_000;
    await guard.flush();
    expect(guard.abuseEntries()[0]).toMatchObject({ subject: 'address:10.9.9.9', action: 'block', shadow: true });
    expect(guard.mitigations()).toEqual([]);
    expect(events[0]).toMatchObject({ type: 'abuse.detected', details: { shadow: true, action: 'block' } });
    expect((await call(app, 'k1', '10.9.9.9')).status).toBe(200);
  }, 120_000);

  it('scores tenants only when asked, and blocks a tenant whose keys each stay too quiet to act on', async () => {
    // Twelve keys of one organization, each from its own address with three long prompts of random text: no key or
    // address has enough requests in the window to be acted on (MIN_REQUESTS_TO_ACT), their tenant has 36.
    const spread = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`x${i}`, { tenantId: 'tx' }]));
    const everyone = { ...keys, ...spread, newcomer: { tenantId: 'tx' } };
    let state = 5;
    const random = () => (state = (state * 48271) % 2147483647) / 2147483647;
    const noise = () =>
      Array.from({ length: 2000 }, () => String.fromCharCode(33 + Math.floor(random() * 93))).join('');
    const pattern = async (app: Express) => {
      for (let i = 0; i < 12; i++) for (let n = 0; n < 3; n++) await call(app, `x${i}`, `10.2.0.${i}`, noise());
    };
    const run = async (subjects: ('key' | 'address' | 'tenant')[]) => {
      let now = Date.now();
      guard = createGuard({
        stores: createMemoryStores(),
        alerts: { log: false },
        abuse: { subjects, window: '10s', train: { every: '1m', minSubjects: 30 } },
        clock: () => now,
      });
      const app = abuseApp(guard, everyone);
      for (const round of [0, 1]) {
        await traffic(app, round);
        await pattern(app);
        await guard.flush();
        now += 10_000;
      }
      now -= 8_000;
      await guard.flush();
      return app;
    };

    const app = await run(['key', 'address', 'tenant']);
    const entries = guard!.abuseEntries();
    // Throttled or blocked by its score (the request gaps are the machine's, so the score varies a little).
    const tenant = entries.find((entry) => entry.subject === 'tenant:tx');
    expect(tenant).toMatchObject({ action: expect.stringMatching(/^(throttle|block)$/), requests: 36 });
    // The tenant alone of its organization: its keys and their addresses had three requests each.
    const acted = entries.filter((entry) => entry.action !== 'none').map((entry) => entry.subject);
    expect(acted.filter((subject) => /^(key:x|address:10\.2\.)/.test(subject))).toEqual([]);
    expect(acted).toContain('tenant:tx');
    // Any key of the tenant is refused, one it never used too (a throttle lets the first of ten through); another
    // tenant's key is served.
    const answers = [await call(app, 'newcomer', '10.3.0.1', 'hello'), await call(app, 'newcomer', '10.3.0.1', 'hi')];
    const refused = answers.at(-1)!;
    expect(refused.status).toBe(tenant!.action === 'block' ? 403 : 429);
    expect(refused.body.error).toMatchObject({ code: `abuse_${tenant!.action === 'block' ? 'blocked' : 'throttled'}` });
    expect(refused.body.error.message).toMatch(/^Requests from this organization are (blocked|slowed)/);
    expect((await call(app, 'k1', '10.1.0.1', 'question 9 of key 1')).status).toBe(200);
    await guard!.close();

    // Without 'tenant' among the subjects no tenant is scored, and nothing of this pattern is acted on.
    await run(['key', 'address']);
    expect(guard!.abuseEntries().filter((entry) => entry.subject.startsWith('tenant:'))).toEqual([]);
    expect(
      guard!.abuseEntries().filter((entry) => entry.action !== 'none' && entry.subject !== 'address:10.9.9.9'),
    ).toEqual([]);
  }, 120_000);
});
