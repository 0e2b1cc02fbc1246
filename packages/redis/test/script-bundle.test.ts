// Store scripts by EVALSHA, bundled per turn, on a redis-server of the test's own (SCRIPT FLUSH is never sent to a shared one): one command per turn, errors kept per operation, NOSCRIPT recovered, one bundle per slot.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import calculateSlot from 'cluster-key-slot';
import { createClient } from 'redis';
import { BundledScriptError, ScriptBundle } from '../src/script-bundle.js';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { hitFixedWindow, SCRIPTS } from '../src/scripts.js';
import { ScriptBatcher } from '../src/script-batcher.js';
import { StoreTimeoutError } from '@tollgate/core';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { RedisClientLike } from '../src/connection.js';
import { freePort, PrivateRedis } from './helpers.js';

type Client = ReturnType<typeof createClient>;
const BUNDLE = new ScriptBundle(SCRIPTS).script;
let redis: PrivateRedis;
let raw: Client;
/** Every command the stores under test sent, as sent. */
const sent: string[][] = [];
const opened: RedisStores[] = [];
const clients: Client[] = [];

/** Stores on a node-redis client of their own (one bundle per turn), recording what they send. */
function clientStores(prefix: string, options: { batch?: boolean } = {}): RedisStores {
  const client = raw.duplicate();
  client.on('error', () => undefined);
  clients.push(client);
  const recording: RedisClientLike = {
    sendCommand: (args) => {
      sent.push(args);
      return client.sendCommand(args);
    },
    get isOpen() {
      return client.isOpen;
    },
    get isReady() {
      return client.isReady;
    },
    connect: () => client.connect(),
    on: (event, listener) => client.on(event, listener),
  };
  const stores = createRedisStores({ client: recording, prefix, keyCache: false, ...options });
  opened.push(stores);
  return stores;
}

/** Stores on a bare sendCommand (one bundle per Cluster slot), recording what they send. */
function sendCommandStores(prefix: string): RedisStores {
  const stores = createRedisStores({
    prefix,
    sendCommand: (args) => {
      sent.push(args);
      return raw.sendCommand(args);
    },
  });
  opened.push(stores);
  return stores;
}

const names = () =>
  sent.map((args) =>
    args[0] === 'EVALSHA' && args[1] === BUNDLE.sha1
      ? 'EVALSHA(bundle)'
      : args[0] === 'EVAL' && args[1] === BUNDLE.source
        ? 'EVAL(bundle)'
        : args[0],
  );

async function commandCalls(name: string): Promise<number> {
  const stats = await raw.info('commandstats');
  return Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0);
}

const window = { limit: 10, windowMs: 60_000 };

/** Loads the bundle (the first call on a fresh server goes by EVAL), then forgets what was sent. */
async function warm(stores: RedisStores): Promise<void> {
  await stores.counter.consume('warm-up', 1, window);
  sent.length = 0;
}
const scope = (key: string) => ({ key, limit: 1_000, expiresAt: Date.now() + 3_600_000 });

beforeAll(async () => {
  redis = new PrivateRedis(await freePort());
  await redis.start();
  raw = createClient({ url: redis.url });
  raw.on('error', () => undefined);
  await raw.connect();
});

afterAll(async () => {
  await Promise.all(opened.map((stores) => stores.close()));
  await Promise.all(clients.map((client) => client.close()));
  await raw.close();
  await redis.stop();
});

beforeEach(() => {
  sent.length = 0;
});

describe('store operations started in one turn', () => {
  it('go out as one EVALSHA of the bundle, each answered as if it had run alone', async () => {
    const stores = clientStores('turn:');
    await warm(stores);
    const [consumed, hit, reserved, usage, missing] = await Promise.all([
      stores.counter.consume('k', 3, window),
      stores.fixedWindow.hit('turn:rl:k', 60_000),
      stores.ledger.reserve({ id: 'r1', amount: 100, scopes: [scope('tenant:acme'), scope('global')], ttlMs: 60_000 }),
      stores.ledger.usage(['tenant:acme']),
      stores.keys.findByHash('f'.repeat(64)),
    ]);
    expect(names()).toEqual(['EVALSHA(bundle)']);
    expect(consumed).toMatchObject({ allowed: true, limit: 10, remaining: 7 });
    expect(hit.hits).toBe(1);
    expect(hit.resetAt).toBeGreaterThan(Date.now() + 59_000);
    expect(reserved).toMatchObject({ ok: true, amount: 100 });
    // In order: the usage read runs after the reserve, and sees it.
    expect(usage).toEqual([{ key: 'tenant:acme', spent: 0, reserved: 100, credit: 0 }]);
    expect(missing).toBeUndefined();
  });

  it('run in the order they were made, and read TIME once for all', async () => {
    const stores = clientStores('order:');
    await warm(stores);
    await raw.sendCommand(['CONFIG', 'RESETSTAT']);
    const results = await Promise.all([1, 2, 3, 4].map(() => stores.counter.consume('k', 1, window)));
    expect(results.map((r) => r.remaining)).toEqual([9, 8, 7, 6]);
    expect(await commandCalls('evalsha')).toBe(1);
    expect(await commandCalls('time')).toBe(1);
  });

  it('include operations made a few awaits later in the same turn', async () => {
    const stores = clientStores('later:');
    await warm(stores);
    const later = async () => {
      for (let i = 0; i < 5; i++) await Promise.resolve();
      return stores.counter.consume('k', 1, window);
    };
    await Promise.all([stores.counter.consume('k', 1, window), later()]);
    expect(names()).toEqual(['EVALSHA(bundle)']);
  });

  it('fail one by one: an operation that errs does not fail the others', async () => {
    const stores = clientStores('errors:');
    await warm(stores);
    await raw.set('errors:{ledger}:scope:wrong-type', 'x');
    const [usage, consumed] = await Promise.allSettled([
      stores.ledger.usage(['wrong-type']),
      stores.counter.consume('k', 1, window),
    ]);
    expect(names()).toEqual(['EVALSHA(bundle)']);
    expect(usage.status).toBe('rejected');
    const error = (usage as PromiseRejectedResult).reason as BundledScriptError;
    expect(error).toBeInstanceOf(BundledScriptError);
    expect(error.script).toBe('ledgerUsage');
    expect(error.message).toMatch(/WRONGTYPE/);
    expect(consumed).toMatchObject({ status: 'fulfilled', value: { allowed: true, remaining: 9 } });
  });

  it('go out in bundles of at most 128 operations', async () => {
    const stores = clientStores('burst:');
    await warm(stores);
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) => stores.counter.consume(`k${i % 3}`, 1, { limit: 1_000, windowMs: 60_000 })),
    );
    expect(names()).toEqual(['EVALSHA(bundle)', 'EVALSHA(bundle)', 'EVALSHA(bundle)']);
    expect(results.filter((r) => r.allowed)).toHaveLength(300);
    expect(Math.min(...results.map((r) => r.remaining))).toBe(900);
  });
});

describe('every store operation', () => {
  it.each([true, false])('runs (batch: %s), one command each once the scripts are cached', async (batch) => {
    const stores = clientStores(`each-${batch}:`, { batch });
    const run = async () => {
      const { windowStart } = await stores.counter.consume('k', 1, window);
      await stores.counter.adjust('k', 1, { windowMs: 60_000, windowStart });
      await stores.counter.peek('k', { windowMs: 60_000 });
      await stores.fixedWindow.hit(`each-${batch}:rl:k`, 60_000);
      await stores.fixedWindow.giveBack(`each-${batch}:rl:k`);
      await stores.ledger.reserve({
        id: randomUUID(),
        amount: 1,
        scopes: [scope('tenant:acme'), scope('global')],
        ttlMs: 60_000,
      });
      await stores.ledger.usage(['tenant:acme', 'global']);
      await stores.ledger.adjustSpent('global', 1, Date.now() + 60_000);
      await stores.ledger.resetScope('global');
      const record = { id: 'k1', sha256: 'a'.repeat(64), scopes: [], createdAt: new Date().toISOString() };
      await stores.keys.put(record);
      expect(await stores.keys.findByHash(record.sha256)).toEqual(record);
      expect(await stores.keys.disable(record.id)).toBe(true);
      expect(await stores.keys.list()).toHaveLength(1);
      expect(await stores.keys.delete(record.id)).toBe(true);
    };
    await run();
    sent.length = 0;
    await run();
    // Each operation alone in its turn: one command each (the settle of a budget goes with the next batch of settles).
    expect(sent.map((args) => args[0])).toEqual(Array(14).fill('EVALSHA'));
    expect(new Set(sent.map((args) => args[1])).has(BUNDLE.sha1)).toBe(batch);
  });
});

describe('a large operation', () => {
  it("gets all its keys, ten thousand of them (more than Lua's unpack() can hand over)", async () => {
    const stores = clientStores('large:');
    await warm(stores);
    const keys = Array.from({ length: 10_000 }, (_, i) => `scope-${i}`);
    const [usage, consumed] = await Promise.all([stores.ledger.usage(keys), stores.counter.consume('k', 1, window)]);
    expect(names()).toEqual(['EVALSHA(bundle)']);
    expect(usage).toHaveLength(10_000);
    expect(usage[9_999]).toEqual({ key: 'scope-9999', spent: 0, reserved: 0, credit: 0 });
    expect(consumed.allowed).toBe(true);
  });
});

describe('NOSCRIPT', () => {
  it('after SCRIPT FLUSH (or a restart), the bundle goes by EVAL once, then by EVALSHA again', async () => {
    const stores = clientStores('noscript:');
    await stores.counter.consume('k', 1, window);
    await raw.sendCommand(['SCRIPT', 'FLUSH']);
    sent.length = 0;
    const [consumed, reserved] = await Promise.all([
      stores.counter.consume('k', 1, window),
      stores.ledger.reserve({ id: 'r1', amount: 5, scopes: [scope('global')], ttlMs: 60_000 }),
    ]);
    expect(consumed).toMatchObject({ allowed: true, remaining: 8 });
    expect(reserved).toMatchObject({ ok: true, amount: 5 });
    expect(names()).toEqual(['EVALSHA(bundle)', 'EVAL(bundle)']);
    sent.length = 0;
    await stores.counter.consume('k', 1, window);
    expect(names()).toEqual(['EVALSHA(bundle)']);
  });
});

describe('calls with a deadline', () => {
  setFlagsFromString('--expose-gc');
  const collect = runInNewContext('gc') as () => void;
  const bundle = new ScriptBundle(SCRIPTS);
  const position = bundle.positionOf(hitFixedWindow.sha1)!;

  it('are let go once answered, not kept until their deadline; one not answered by then fails at it', async () => {
    const batcher = new ScriptBatcher(
      bundle,
      { send: (args) => raw.sendCommand(args), connecting: () => undefined },
      { group: 'none', timeoutMs: 60_000 },
    );
    // A call's arguments, answered, with a minute left before its deadline.
    const refs: WeakRef<object>[] = [];
    const answer = await (async () => {
      const args = ['60000'];
      refs.push(new WeakRef(args));
      return batcher.queue(position, [`deadline:${randomUUID()}`], args, 'hit');
    })();
    expect(answer).toEqual([1, 60_000]);
    await new Promise((resolve) => setImmediate(resolve));
    collect();
    expect(refs[0]!.deref()).toBeUndefined();

    // Deadlines still hold behind answered calls: a call whose bundle hangs fails at its own, the next ones answer.
    let hold: (() => void) | undefined;
    const held = new Promise<void>((resolve) => void (hold = resolve));
    let holdNext = false;
    const quick = new ScriptBatcher(
      bundle,
      {
        send: async (args) => {
          if (holdNext) {
            holdNext = false;
            await held;
          }
          return raw.sendCommand(args);
        },
        connecting: () => undefined,
      },
      { group: 'none', timeoutMs: 200 },
    );
    await quick.queue(position, [`deadline:${randomUUID()}`], ['60000'], 'hit');
    holdNext = true;
    const hung = quick.queue(position, [`deadline:${randomUUID()}`], ['60000'], 'hit');
    await new Promise((resolve) => setImmediate(resolve));
    const after = quick.queue(position, [`deadline:${randomUUID()}`], ['60000'], 'hit');
    await expect(after).resolves.toEqual([1, 60_000]);
    await expect(hung).rejects.toBeInstanceOf(StoreTimeoutError);
    hold!();
  });
});

describe('a bare sendCommand (maybe a Cluster router)', () => {
  it('gets one bundle per hash slot, each holding only operations of its slot', async () => {
    const stores = sendCommandStores('slots:');
    await warm(stores);
    await Promise.all([
      stores.counter.consume('a', 1, window),
      stores.counter.consume('a', 1, window),
      stores.counter.consume('b', 1, window),
      stores.ledger.reserve({ id: 'r1', amount: 5, scopes: [scope('global')], ttlMs: 60_000 }),
    ]);
    expect(names()).toEqual(['EVALSHA(bundle)', 'EVALSHA(bundle)', 'EVALSHA(bundle)']);
    for (const command of sent) {
      const keys = command.slice(3, 3 + Number(command[2]));
      expect(new Set(keys.map((key) => calculateSlot(key))).size).toBe(1);
    }
    // The reserve's keys: its scope and its ledger's receipts.
    expect(sent.map((command) => Number(command[2]))).toEqual([2, 1, 2]);
  });
});

describe('batch: false', () => {
  it('sends one EVALSHA per operation, each script falling back to EVAL once after SCRIPT FLUSH', async () => {
    const stores = clientStores('unbatched:', { batch: false });
    await stores.counter.consume('k', 1, window);
    await raw.sendCommand(['SCRIPT', 'FLUSH']);
    sent.length = 0;
    await Promise.all([stores.counter.consume('k', 1, window), stores.fixedWindow.hit('unbatched:rl:k', 60_000)]);
    expect(sent.map((args) => args[0])).toEqual(['EVALSHA', 'EVALSHA', 'EVAL', 'EVAL']);
    expect(sent.map((args) => args[1])).toEqual([
      SCRIPTS.consumeWindow.sha1,
      SCRIPTS.hitFixedWindow.sha1,
      SCRIPTS.consumeWindow.source,
      SCRIPTS.hitFixedWindow.source,
    ]);
    sent.length = 0;
    await stores.counter.consume('k', 1, window);
    expect(sent.map((args) => args[0])).toEqual(['EVALSHA']);
  });

  it('passes script errors through without retrying', async () => {
    const stores = clientStores('unbatched-errors:', { batch: false });
    await raw.set('unbatched-errors:{ledger}:scope:wrong-type', 'x');
    await stores.ledger.usage(['global']);
    sent.length = 0;
    await expect(stores.ledger.usage(['wrong-type'])).rejects.toThrow(/WRONGTYPE/);
    expect(sent.map((args) => args[0])).toEqual(['EVALSHA']);
  });
});
