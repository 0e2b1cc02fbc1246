// The memory key store's synchronous lookup: the answer findByHash promises, given at once.
import { createHash } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('MemoryKeyStore.findByHashSync', () => {
  it('answers what findByHash answers: either case, unknown, disabled, deleted', async () => {
    const { keys, close } = createMemoryStores({ sweepIntervalMs: 0 });
    const record: ApiKeyRecord = {
      id: 'k1',
      sha256: sha256('key one').toUpperCase(),
      scopes: ['chat'],
      createdAt: '2026-11-22T08:00:00.000Z',
    };
    await keys.put(record);
    const both = async (hash: string) => [keys.findByHashSync(hash), await keys.findByHash(hash)];

    const [sync, promised] = await both(sha256('key one'));
    expect(sync).toEqual(record);
    expect(sync).toBe(promised);
    expect((await both(record.sha256)).map((found) => found?.id)).toEqual(['k1', 'k1']);
    expect(await both(sha256('no such key'))).toEqual([undefined, undefined]);
    await keys.disable('k1');
    expect((await both(record.sha256)).map((found) => found?.disabled)).toEqual([true, true]);
    await keys.delete('k1');
    expect(await both(record.sha256)).toEqual([undefined, undefined]);
    await close();
  });
});
