// Scripts go by EVALSHA, one round trip per operation; after SCRIPT FLUSH (or a restart) EVAL takes over once.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createClient } from 'redis';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { deleteKeys, REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

describe('EVALSHA with NOSCRIPT fallback', () => {
  const prefix = uniquePrefix();
  const client = createClient({ url: REDIS_URL });
  const sent: string[] = [];
  let stores: RedisStores;

  beforeAll(async () => {
    await requireRedis();
    client.on('error', () => undefined);
    await client.connect();
    // Record the command names the stores send through a real client.
    stores = createRedisStores({
      prefix,
      sendCommand: (args) => {
        sent.push(args[0]!);
        return client.sendCommand(args);
      },
    });
  });

  afterAll(async () => {
    await stores.close();
    await client.close();
    await deleteKeys(prefix);
  });

  const scope = () => ({ key: 'tenant:acme', limit: 1000, expiresAt: Date.now() + 60_000 });

  it('keeps working after SCRIPT FLUSH, falling back to EVAL once per script', async () => {
    await stores.ledger.reserve({ id: 'warm', amount: 1, scopes: [scope()], ttlMs: 60_000 });
    await client.sendCommand(['SCRIPT', 'FLUSH']);
    sent.length = 0;

    expect(await stores.ledger.reserve({ id: 'r1', amount: 10, scopes: [scope()], ttlMs: 60_000 })).toMatchObject({ ok: true, amount: 10 });
    expect(sent).toEqual(['EVALSHA', 'EVAL']);

    sent.length = 0;
    expect(await stores.ledger.reserve({ id: 'r2', amount: 10, scopes: [scope()], ttlMs: 60_000 })).toMatchObject({ ok: true });
    expect(await stores.ledger.settle('r1', 5)).toMatchObject({ settled: true, reserved: 10 });
    // A second settle of one id is answered by this process, which no longer holds it: nothing is sent.
    expect(await stores.ledger.settle('r1', 5)).toEqual({ settled: false, reserved: 0 });
    expect(sent).toEqual(['EVALSHA', 'EVALSHA', 'EVAL']);
  });

  it('sends exactly one command per operation once the scripts are cached', async () => {
    const windowOpts = { limit: 10, windowMs: 60_000 };
    const { windowStart } = await stores.counter.consume('k', 1, windowOpts);
    await stores.counter.adjust('k', 1, { windowMs: 60_000, windowStart });
    await stores.counter.peek('k', { windowMs: 60_000 });
    await stores.ledger.reserve({ id: 'x', amount: 1, scopes: [scope(), { ...scope(), key: 'global' }], ttlMs: 60_000 });
    await stores.ledger.settle('x', 1);
    await stores.ledger.usage(['tenant:acme', 'global']);
    await stores.ledger.adjustSpent('global', 1, Date.now() + 60_000);
    await stores.ledger.resetScope('global');
    const record = { id: 'k1', sha256: 'a'.repeat(64), scopes: [], createdAt: new Date().toISOString() };
    await stores.keys.put(record);
    await stores.keys.findByHash(record.sha256);
    await stores.keys.findById(record.id);
    await stores.keys.disable(record.id);
    await stores.keys.list();
    await stores.keys.delete(record.id);

    sent.length = 0;
    await stores.counter.consume('k', 1, windowOpts);
    await stores.ledger.reserve({ id: 'y', amount: 1, scopes: [scope(), { ...scope(), key: 'global' }], ttlMs: 60_000 });
    await stores.ledger.settle('y', 1);
    await stores.keys.findByHash(record.sha256);
    expect(sent).toEqual(['EVALSHA', 'EVALSHA', 'EVALSHA', 'EVALSHA']);
  });

  it('passes other script errors through without retrying', async () => {
    await client.sendCommand(['SET', `${prefix}{ledger}:scope:wrong-type`, 'x']);
    sent.length = 0;
    await expect(stores.ledger.usage(['wrong-type'])).rejects.toThrow(/WRONGTYPE/);
    expect(sent).toEqual(['EVALSHA']);
  });
});
