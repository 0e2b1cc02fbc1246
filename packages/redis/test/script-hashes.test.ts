// Each Lua script's SHA1 is pinned: changing a script is a deliberate act (and old SHAs stay cached in Redis).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRedisStores, normaliseLua, SCRIPTS, type RedisStores } from '@tollgate/redis';
import { REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

const PINNED: Record<keyof typeof SCRIPTS, string> = {
  consumeWindow: 'cd8317ad2c97658c7fff7b3341b2d392fbad4413',
  adjustWindow: '66bcace5132da5e4bca013393a77c3b11f4fc013',
  peekWindow: '1e709b4f196923beb1241af5b3196e236780f70c',
  reserve: '02fab7815b5c4f59301eb2d02c6d5178ef03a169',
  settle: 'd4e39f6df610688b04648ddd3f585f26e9b5d232',
  ledgerUsage: 'e33d1e0529b13e93a5a94d88860694d0af4b785b',
  adjustSpent: '9791c8c45546583f6f80dda1fadb9eea418813c5',
  resetScope: 'c5f0239bc40befc9a92dbf650e6c88b72fc155a7',
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
