// ShardedMap: a Map from strings over 64 Maps, so that none grows by rehashing all of a large map's keys at once.
import { describe, expect, it } from '@jest/globals';
import { ShardedMap } from '@tollgate/core/store-contracts';

describe('ShardedMap', () => {
  it('answers as a Map does: set, get, has, delete, size, clear, iteration', () => {
    const map = new ShardedMap<number>();
    const plain = new Map<string, number>();
    for (let i = 0; i < 5_000; i++) {
      const key = `budget:tenant:t${i}:usd:month:2026-11`;
      map.set(key, i);
      plain.set(key, i);
    }
    map.set('', -1).set('budget:tenant:t7:usd:month:2026-11', 70);
    plain.set('', -1).set('budget:tenant:t7:usd:month:2026-11', 70);
    for (let i = 0; i < 5_000; i += 3) {
      const key = `budget:tenant:t${i}:usd:month:2026-11`;
      expect(map.delete(key)).toBe(plain.delete(key));
    }
    expect(map.delete('never set')).toBe(false);
    expect(map.size).toBe(plain.size);
    expect(map.get('budget:tenant:t7:usd:month:2026-11')).toBe(70);
    expect(map.get('budget:tenant:t9:usd:month:2026-11')).toBeUndefined();
    expect(map.has('')).toBe(true);
    expect(new Map(map)).toEqual(plain);
    expect([...map.keys()].sort()).toEqual([...plain.keys()].sort());
    expect([...map.values()].sort()).toEqual([...plain.values()].sort());
    map.clear();
    expect(map.size).toBe(0);
    expect([...map]).toEqual([]);
  });

  it('skips a key deleted while its keys are walked, as a Map does (a sweep that forgets what expired)', () => {
    const map = new ShardedMap<number>();
    for (let i = 0; i < 1_000; i++) map.set(`scope:${i}`, i);
    const seen: string[] = [];
    for (const key of map.keys()) {
      seen.push(key);
      if (map.get(key)! % 2 === 0) map.delete(key);
      // Deleting keys not walked yet: they are not visited.
      map.delete(`scope:${999 - Number(key.slice(6))}`);
    }
    for (const key of seen) expect(seen.filter((other) => other === key)).toHaveLength(1);
    expect(seen.length).toBeLessThan(1_000);
    for (const [key, value] of map) {
      expect(value % 2).toBe(1);
      expect(key).toBe(`scope:${value}`);
    }
  });

  it('spreads keys that differ only in their middle, or only at their end, over its maps', () => {
    // 100,000 keys in 64 maps: about 1,563 each; a hash of the ends alone would put the first kind in one map.
    for (const keyOf of [(i: number) => `budget:tenant:t${i}:usd:month:2026-11`, (i: number) => `address:10.0.${i}`]) {
      const map = new ShardedMap<number>();
      for (let i = 0; i < 100_000; i++) map.set(keyOf(i), i);
      const sizes = map.shardSizes();
      expect(sizes).toHaveLength(64);
      expect(Math.max(...sizes)).toBeLessThan(1_563 * 1.25);
      expect(Math.min(...sizes)).toBeGreaterThan(1_563 * 0.75);
    }
  });
});
