// A reserve whose reply never came: Redis may have run it or not. The ledger finds out once Redis answers again and gives
// back what it holds, so a lost reply costs nothing; a reserve that never ran gives back nothing (others' holds stay).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { StoreTimeoutError } from '@tollgate/core';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { RedisReservationLedger } from '../src/reservation-ledger.js';
import { deleteKeys, eventually, keysWithPrefix, REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';
import { ReplyFaultRelay } from '../../../test/helpers/redis-relay.js';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeAll(() => void process.on('unhandledRejection', onUnhandled));
afterAll(() => void process.off('unhandledRejection', onUnhandled));

const TTL_MS = 60_000;
/** What a reserve's bytes hold (it goes as an EVALSHA of the script bundle): only they take a fault. */
const RESERVE = 'EVALSHA';
const scope = () => ({ key: 'tenant:acme', limit: 1_000_000, expiresAt: Date.now() + 3_600_000 });

let relay: ReplyFaultRelay;
let relayUrl: string;
let prefix: string;
/** Through the relay: the ledger under test. */
let stores: RedisStores;
/** Straight to Redis: another process, and the one that reads the balance. */
let other: RedisStores;

beforeAll(async () => {
  await requireRedis();
  relay = new ReplyFaultRelay(new URL(REDIS_URL));
  relayUrl = await relay.listen();
});

beforeEach(async () => {
  prefix = uniquePrefix();
  stores = createRedisStores({ url: relayUrl, prefix, timeoutMs: 300 });
  other = createRedisStores({ url: REDIS_URL, prefix, timeoutMs: 2_000 });
  // Connected and the scripts loaded before a fault is armed.
  expect(await stores.ledger.usage([scope()])).toEqual([{ key: 'tenant:acme', spent: 0, reserved: 0, credit: 0 }]);
});

afterEach(async () => {
  await stores.close();
  await other.close();
  await deleteKeys(prefix);
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(unhandled).toEqual([]);
});

afterAll(async () => {
  await relay.close();
});

const balance = async () => (await other.ledger.usage([scope()]))[0];

describe('a reserve whose reply never came', () => {
  it('Redis ran it and the connection broke before the reply: what it holds goes back once Redis answers again', async () => {
    relay.arm({ kind: 'cut' }, RESERVE);
    await expect(
      stores.ledger.reserve({ id: 'lost', amount: 700, scopes: [scope()], ttlMs: TTL_MS }),
    ).rejects.toThrow();
    expect(relay.applied).toBeGreaterThan(0);
    await eventually(async () =>
      expect(await balance()).toEqual({ key: 'tenant:acme', spent: 0, reserved: 0, credit: 0 }),
    );
    // The ledger goes on as before: a reservation settled is charged what it spent, once.
    expect(await stores.ledger.reserve({ id: 'next', amount: 500, scopes: [scope()], ttlMs: TTL_MS })).toMatchObject({
      ok: true,
      amount: 500,
    });
    await stores.ledger.settle('next', 123);
    expect(await balance()).toEqual({ key: 'tenant:acme', spent: 123, reserved: 0, credit: 0 });
  });

  it('Redis answered after the deadline, on a connection still open: what it holds goes back', async () => {
    relay.arm({ kind: 'hold', holdMs: 800 }, RESERVE);
    await expect(
      stores.ledger.reserve({ id: 'late', amount: 900, scopes: [scope()], ttlMs: TTL_MS }),
    ).rejects.toBeInstanceOf(StoreTimeoutError);
    await eventually(async () =>
      expect(await balance()).toEqual({ key: 'tenant:acme', spent: 0, reserved: 0, credit: 0 }),
    );
  });

  it('Redis never got it: nothing goes back, and what others hold in the same bucket stays held', async () => {
    expect(await other.ledger.reserve({ id: 'theirs', amount: 400, scopes: [scope()], ttlMs: TTL_MS })).toMatchObject({
      ok: true,
    });
    relay.arm({ kind: 'drop' }, RESERVE);
    await expect(
      stores.ledger.reserve({ id: 'never', amount: 600, scopes: [scope()], ttlMs: TTL_MS }),
    ).rejects.toThrow();
    // The ledger looked its receipt up and found none: nothing of its own to give back.
    const ledger = stores.ledger as RedisReservationLedger;
    expect(ledger).toBeInstanceOf(RedisReservationLedger);
    await eventually(async () => expect(ledger.reservesInDoubt).toBe(0));
    await eventually(async () => expect(ledger.idle).toBe(true));
    expect(await balance()).toEqual({ key: 'tenant:acme', spent: 0, reserved: 400, credit: 0 });
    await other.ledger.settle('theirs', 400);
    expect(await balance()).toEqual({ key: 'tenant:acme', spent: 400, reserved: 0, credit: 0 });
  });

  it('a reserve made again under the same id after the lost reply holds once', async () => {
    relay.arm({ kind: 'cut' }, RESERVE);
    await expect(
      stores.ledger.reserve({ id: 'again', amount: 300, scopes: [scope()], ttlMs: TTL_MS }),
    ).rejects.toThrow();
    await eventually(() => stores.ledger.reserve({ id: 'again', amount: 300, scopes: [scope()], ttlMs: TTL_MS }));
    await eventually(async () =>
      expect(await balance()).toEqual({ key: 'tenant:acme', spent: 0, reserved: 300, credit: 0 }),
    );
    await stores.ledger.settle('again', 250);
    expect(await balance()).toEqual({ key: 'tenant:acme', spent: 250, reserved: 0, credit: 0 });
  });

  it('a lookup that keeps failing holds no settle up, and what it could not look up stays held (charged at expiry)', async () => {
    expect(await stores.ledger.reserve({ id: 'first', amount: 100, scopes: [scope()], ttlMs: TTL_MS })).toMatchObject({
      ok: true,
    });
    // Someone wrote over the ledger's receipts: the next reserve holds its amount, then fails at its receipt, and every
    // lookup of that receipt fails too.
    const [receipts] = (await keysWithPrefix(prefix)).filter((key) => key.includes(':receipts:'));
    await other.sendCommand(['SET', receipts!, 'not a hash']);
    await expect(
      stores.ledger.reserve({ id: 'clobbered', amount: 200, scopes: [scope()], ttlMs: TTL_MS }),
    ).rejects.toThrow(/WRONGTYPE/);
    const ledger = stores.ledger as RedisReservationLedger;
    expect(ledger.reservesInDoubt).toBe(1);
    // Several lookups failed by now, the next one hundreds of ms away: a settle does not wait for it.
    await new Promise((resolve) => setTimeout(resolve, 850));
    const started = Date.now();
    await stores.ledger.settle('first', 60);
    expect(Date.now() - started).toBeLessThan(300);
    expect(await balance()).toEqual({ key: 'tenant:acme', spent: 60, reserved: 200, credit: 0 });
    expect(ledger.reservesInDoubt).toBe(1);
    await other.sendCommand(['DEL', receipts!]);
  });

  it('a receipt whose field 4,096 later reserves reused is no longer known: that reserve stays held (charged at expiry), with a warning', async () => {
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      // Redis runs every reserve at once; their replies come 1.5 s late, after every deadline: all of them are in doubt,
      // and by the time the first one's receipt is read, the 4,096th after it (the last) has written over its field.
      relay.arm({ kind: 'hold', holdMs: 1_500 }, RESERVE);
      const first = stores.ledger.reserve({ id: 'overwritten', amount: 7, scopes: [scope()], ttlMs: TTL_MS });
      const later = Array.from({ length: 4_096 }, (_, i) =>
        stores.ledger.reserve({ id: `later-${i}`, amount: 1, scopes: [scope()], ttlMs: TTL_MS }),
      );
      const outcomes = await Promise.allSettled([first, ...later]);
      expect(outcomes.every((outcome) => outcome.status === 'rejected')).toBe(true);
      const ledger = stores.ledger as RedisReservationLedger;
      await eventually(async () => expect(ledger.reservesInDoubt).toBe(0), 20_000);
      // The later ones' receipts were theirs: given back. The first one's is gone: it stays held.
      await eventually(async () =>
        expect(await balance()).toEqual({ key: 'tenant:acme', spent: 0, reserved: 7, credit: 0 }),
      );
      const inDoubt = warn.mock.calls.filter(
        ([, options]) => (options as { code?: string } | undefined)?.code === 'TOLLGATE_RESERVE_IN_DOUBT',
      );
      expect(inDoubt.map(([message]) => String(message))).toEqual([expect.stringContaining('overwritten')]);
    } finally {
      warn.mockRestore();
    }
  }, 30_000);
});
