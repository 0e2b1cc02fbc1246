// What a process remembers of scopes' spend: the last figure learned, for the 10,000 scopes learned most recently.
import { describe, expect, it } from '@jest/globals';
import { KnownSpend } from '../src/known-spend.js';

const learnScopes = (known: KnownSpend, from: number, to: number) => {
  for (let i = from; i < to; i++) known.learn([{ key: `scope-${i}`, spent: i, reserved: 0, credit: 0 }]);
};

describe('KnownSpend', () => {
  it('answers the spend last learned of a scope, and nothing for a scope never seen', () => {
    const known = new KnownSpend();
    known.learn([
      { key: 'tenant:acme', spent: 1.5, reserved: 0, credit: 0 },
      { key: 'global', spent: 9, reserved: 2, credit: 0 },
    ]);
    known.learn([{ key: 'tenant:acme', spent: 2.25, reserved: 0, credit: 0 }]);
    known.learn(undefined);
    expect(known.spentOf('tenant:acme')).toBe(2.25);
    expect(known.spentOf('global')).toBe(9);
    expect(known.spentOf('tenant:other')).toBeUndefined();
  });

  it('keeps the 10,000 scopes learned most recently: reading a figure does not keep it, learning it again does', () => {
    const known = new KnownSpend();
    learnScopes(known, 0, 10_000);
    // Read, not learned: scope-0 stays the least recently learned. Learned again: scope-1 is the most recent.
    expect(known.spentOf('scope-0')).toBe(0);
    known.learn([{ key: 'scope-1', spent: 100, reserved: 0, credit: 0 }]);
    learnScopes(known, 10_000, 10_002);
    expect(known.spentOf('scope-0')).toBeUndefined();
    expect(known.spentOf('scope-1')).toBe(100);
    expect(known.spentOf('scope-2')).toBeUndefined();
    expect(known.spentOf('scope-3')).toBe(3);
    expect(known.spentOf('scope-10001')).toBe(10_001);
  });

  it('forgets everything when cleared', () => {
    const known = new KnownSpend();
    learnScopes(known, 0, 3);
    known.clear();
    expect(known.spentOf('scope-1')).toBeUndefined();
  });
});
