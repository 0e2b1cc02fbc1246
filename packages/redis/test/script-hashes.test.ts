// Each Lua script's SHA1 is pinned: changing a script is a deliberate act (and old SHAs stay cached in Redis).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { LuaScript } from '../src/lua.js';
import { ScriptBundle } from '../src/script-bundle.js';
import { SCRIPTS } from '../src/scripts.js';
import { REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

const PINNED: Record<keyof typeof SCRIPTS, string> = {
  consumeWindow: '4205753d7765e06aa48b18f3cbbea766c86af3f7',
  adjustWindow: 'bfd44d0a491606031363aa055b3f4cbcf126523e',
  peekWindow: 'c333de306dd6de180a7ed2e4b71328dba8e355ad',
  hitFixedWindow: '4b26a7fd499397b0372eebbed5600cafdfd14102',
  returnFixedWindowHit: '47524adddfb01229bd4cae1ba9801a634894a241',
  hitFixedWindowBy: '3e9b943bf830324cb8d41359b536499838e50fb4',
  returnFixedWindowHits: 'a254afa07c68e04c142e1025fba6e9ecd8cf2fc3',
  peekFixedWindow: '76a5468507689f891fde3785bbdb242e5cfa306a',
  reserve: '379de5e6f5585155939c45c89e0b38cea0b0af5d',
  reserveReceipts: '1e31507ae86ff56f4c3bacc5a47e742c07b64b92',
  settleBatch: '7b4e29acc94c55db47bc79f0aefd8a2a71a284ff',
  ledgerUsage: 'ed9469d18d114c467ac4f3b4d31944a13f466639',
  ledgerHolds: 'e9d80087d65db38fce866a27f0c43c6cff3bc009',
  addToScope: '89f1406b3a03b57aaaf5f066ccded8ebf7d7e3e9',
  restoreSpent: '2565c7cb5894003778b057c083916b38ba07fd37',
  correctSpent: 'a4f9bafcc270ae1e4af751a3058c5e9936086efd',
  recordCut: 'bfc915e3d300318291a41fde220faa7ecef84f56',
  resetScope: '4127bf631ce6424c429acdce9afddd6686163c70',
  putKey: '31785ba8c39fda3e75d5fa17a5b4bf9ff19f4e48',
  findKeyByHash: 'e6862feff81a37c3c818e8013a5f0e99f9fe79d3',
  disableKey: '4021ceca2952214c3e9c6fe8abeec975c9e55cd1',
  changeKey: '3427b23e8a73fac9e87e60bfc999e04268a78988',
  deleteKey: '6abb9f5b35837c40ed692595f1ae28aaee534590',
  listKeys: '240e92191cdc433267fab765bcc2e1d035b97d1c',
  listBudgetedKeys: '773b36228faf4259f898236a79fb71b03dfcd384',
  buildKeyIndexes: '4cfec8fc92abcce6f928e7f63f2612781fe8d406',
  pageKeys: '722880fbba1a9915084002cffd119a15c3d75556',
  expiringKeys: '62d132ca834281f941567edc7f2ac8ff0d383482',
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

  it('bundles every script (script-bundle.ts), in a source Redis compiles to the same SHA1', async () => {
    const bundle = new ScriptBundle(SCRIPTS).script;
    for (const script of Object.values(SCRIPTS))
      expect(bundle.source).toContain(`local function ${script.name}(KEYS, ARGV)\n${script.source}\nend`);
    expect(await stores.sendCommand(['SCRIPT', 'LOAD', bundle.source])).toBe(bundle.sha1);
  });

  it('normalises whitespace and comment lines, not code', () => {
    expect(new LuaScript('t', '\n  local a = 1  \n\n    -- why\n  return a -- keep\n').source).toBe(
      'local a = 1\nreturn a -- keep',
    );
    for (const script of Object.values(SCRIPTS)) {
      expect(script.source).not.toMatch(/^\s|\s$|\n\s|\s\n|\n\n/);
    }
  });
});
