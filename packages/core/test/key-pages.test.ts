// Key pages without a store's index: pages of several sources merged (config keys beside the store's, an operator's
// tenants), and keyPage's fallback for a store without `page`.
import { describe, expect, it } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import { keyPage, keyPageWith, mergeKeyPages } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord, KeyPage, KeyStore } from '@tollgate/core/store-contracts';

const record = (id: string, tenantId?: string): ApiKeyRecord => ({
  id,
  sha256: id.padEnd(64, '0'),
  scopes: [],
  createdAt: '2026-11-27T08:00:00.000Z',
  ...(tenantId === undefined ? {} : { tenantId }),
});

/** Every page of a merged source, by its cursor. */
async function walk(read: (after?: string) => Promise<KeyPage>): Promise<string[]> {
  const ids: string[] = [];
  let after: string | undefined;
  do {
    const page = await read(after);
    ids.push(...page.keys.map((key) => key.id));
    after = page.next;
  } while (after !== undefined);
  return ids;
}

describe('key pages merged', () => {
  it("walks config keys and the store's together, each once, in id order", async () => {
    const { keys } = createMemoryStores({ sweepIntervalMs: 0 });
    for (let i = 0; i < 30; i++) await keys.put(record(`s${String(i).padStart(2, '0')}`, i % 2 ? 'a' : 'b'));
    const config = [record('s05x', 'a'), record('a-first'), record('zz-last', 'b')];
    const every = await walk((after) => keyPageWith(keys, config, { limit: 4, ...(after ? { after } : {}) }));
    expect(every).toEqual([...config.map((key) => key.id), ...(await keys.list()).map((key) => key.id)].sort());
    // An operator of tenants a and b: one page of each, merged; never a key of neither.
    const ofTenants = await walk(async (after) =>
      mergeKeyPages(
        await Promise.all(
          ['a', 'b'].map((tenantId) => keyPageWith(keys, config, { tenantId, limit: 5, ...(after ? { after } : {}) })),
        ),
        5,
      ),
    );
    expect(ofTenants).toEqual(every.filter((id) => id !== 'a-first'));
  });

  it('cuts a page from list() for a store without page', async () => {
    const { keys } = createMemoryStores({ sweepIntervalMs: 0 });
    for (const id of ['c', 'a', 'b', 'ab']) await keys.put(record(id));
    const plain: KeyStore = {
      findByHash: (hash) => keys.findByHash(hash),
      findById: (id) => keys.findById(id),
      put: (key) => keys.put(key),
      disable: (id) => keys.disable(id),
      delete: (id) => keys.delete(id),
      list: () => keys.list(),
    };
    expect(await keyPage(plain, { limit: 2, prefix: 'a' })).toEqual({ keys: [record('a'), record('ab')] });
    expect(await keyPage(plain, { limit: 2, after: 'a' })).toEqual({ keys: [record('ab'), record('b')], next: 'b' });
  });
});
