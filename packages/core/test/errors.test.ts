// TollgateError codes and docs anchors; unknown option names rejected with "did you mean".
import { describe, expect, it } from '@jest/globals';
import { TollgateError } from '@tollgate/core';
import { assertKnownOptions, closestName } from '@tollgate/core/options';

const KNOWN = ['windowMs', 'limit', 'keyGenerator', 'failOpen'] as const;

describe('TollgateError', () => {
  it('carries a stable code and a docs anchor named after it', () => {
    const error = new TollgateError('ERR_TG_CORE_SOMETHING', 'bad thing', { cause: 'why' });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('TollgateError');
    expect(error.code).toBe('ERR_TG_CORE_SOMETHING');
    expect(error.docs).toMatch(/#err-tg-core-something$/);
    expect(error.message).toContain('bad thing');
    expect(error.message).toContain('ERR_TG_CORE_SOMETHING');
    expect(error.cause).toBe('why');
  });
});

describe('closestName', () => {
  it('finds typos, ignoring case', () => {
    expect(closestName('windowMS', KNOWN)).toBe('windowMs');
    expect(closestName('limt', KNOWN)).toBe('limit');
    expect(closestName('keyGen', KNOWN)).toBeUndefined();
    expect(closestName('failopen', KNOWN)).toBe('failOpen');
  });

  it('does not suggest unrelated names', () => {
    expect(closestName('zzz', KNOWN)).toBeUndefined();
    expect(closestName('redisUrl', KNOWN)).toBeUndefined();
  });
});

describe('assertKnownOptions', () => {
  const check = (options: unknown) =>
    assertKnownOptions(options as object, KNOWN, 'ERR_TG_TEST_UNKNOWN_OPTION', 'testFactory');

  it('accepts known names and absent options', () => {
    expect(() => check({ windowMs: 1, limit: 2 })).not.toThrow();
    expect(() => check(undefined)).not.toThrow();
    expect(() => check({})).not.toThrow();
  });

  it('rejects an unknown name with a hint', () => {
    expect(() => check({ windowMS: 1 })).toThrow(/testFactory\(\) has no option "windowMS"; did you mean "windowMs"\?/);
    try {
      check({ limt: 1 });
    } catch (error) {
      expect(error).toBeInstanceOf(TollgateError);
      expect((error as TollgateError).code).toBe('ERR_TG_TEST_UNKNOWN_OPTION');
    }
  });

  it('rejects an unknown name without a hint when nothing is close, listing the known ones', () => {
    expect(() => check({ colour: 'red' })).toThrow(
      /has no option "colour"\. Known options: windowMs, limit, keyGenerator, failOpen/,
    );
  });

  it('rejects a non-object', () => {
    expect(() => check('fast')).toThrow(/takes an options object; got string/);
  });
});
