// Each Lua script's SHA1 is pinned: changing a script is a deliberate act (and old SHAs stay cached in Redis).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRedisStores, normaliseLua, SCRIPTS, type RedisStores } from '@tollgate/redis';
import { REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

const PINNED: Record<keyof typeof SCRIPTS, string> = {
  consumeWindow: '8167c48d8dddcb52db743b347438e175ab7ba37a',
  adjustWindow: '3a43625098077d9ba41de85e67105355be8d5016',
  peekWindow: 'ff846b103d2c36f83fab32c84fa9d3e8a34b86e4',
  reserve: 'c8ac91fc14087d22e67d313b45e410473a2def7e',
  settleBatch: 'b63131403c6e30eb4cf4a5b2895fe17d7dca4392',
  ledgerUsage: '454e81581337c0086f1216d6426e3b2603af7043',
  adjustSpent: '35829f0df52ec0482029a53b95e657eb8ac42274',
  resetScope: 'c7aeb2a1abb4ccd5a3b5542c8678d3e5574febbf',
  putKey: '221d0f5db8aa10e22ed7a61b6ea8a5cb53630564',
  findKeyByHash: 'e6862feff81a37c3c818e8013a5f0e99f9fe79d3',
  disableKey: '4021ceca2952214c3e9c6fe8abeec975c9e55cd1',
  deleteKey: 'c45724e240f81a08733ad85647728da5e7c7a696',
  listKeys: '240e92191cdc433267fab765bcc2e1d035b97d1c',
};

describe('Lua scripts', () => {
  let stores: RedisStores;
  beforeAll(async () => {
    await requireRedis();
    stores = createRedisStores({ url: REDIS_URL, prefix: uniquePrefix() });
  });
  afterAll(() => stores.close());

  it.each(Object.entries(SCRIPTS))('%s has its pinned SHA1', (name, script) => {
    expect(script.sha1).toBe(PINNED[name as keyof typeof SCRIPTS]);
  });

  it('pins every script there is', () => {
    expect(Object.keys(PINNED).sort()).toEqual(Object.keys(SCRIPTS).sort());
  });

  it.each(Object.entries(SCRIPTS))('%s: Redis computes the same SHA1 for the source sent', async (_name, script) => {
    expect(await stores.sendCommand(['SCRIPT', 'LOAD', script.source])).toBe(script.sha1);
  });

  it('normalises whitespace and comment lines, not code', () => {
    expect(normaliseLua('\n  local a = 1  \n\n    -- why\n  return a -- keep\n')).toBe('local a = 1\nreturn a -- keep');
    for (const script of Object.values(SCRIPTS)) {
      expect(script.source).not.toMatch(/^\s|\s$|\n\s|\s\n|\n\n/);
    }
  });
});
