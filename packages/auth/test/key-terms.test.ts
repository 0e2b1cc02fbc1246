// The terms a person types for a key: when it expires, and what a rotation does with the old one.
import { describe, expect, it } from '@jest/globals';
import { KeyTermError, keyExpiry, rotationGrace } from '../src/index.js';

const now = Date.UTC(2026, 10, 20, 12, 0);
const HOUR = 3_600_000;

describe('keyExpiry', () => {
  it('reads a duration from now, an ISO date in the future, or never', () => {
    expect(keyExpiry('30d', now)).toBe(new Date(now + 30 * 24 * HOUR).toISOString());
    expect(keyExpiry('90m', now)).toBe(new Date(now + 1.5 * HOUR).toISOString());
    expect(keyExpiry('2027-01-01', now)).toBe('2027-01-01T00:00:00.000Z');
    expect(keyExpiry('2026-11-20T13:00:00Z', now)).toBe('2026-11-20T13:00:00.000Z');
    expect(keyExpiry('never', now)).toBeUndefined();
    expect(keyExpiry(undefined, now)).toBeUndefined();
  });

  it('refuses a past time, no time at all, and dates Date.parse would guess', () => {
    expect(() => keyExpiry('2026-01-01', now, '--expires')).toThrow(
      new KeyTermError('--expires must be in the future; got "2026-01-01"'),
    );
    for (const value of ['0d', 'soon', '7', 'May 5', '-1d'])
      expect(() => keyExpiry(value, now, 'expires')).toThrow(
        /^expires must be a duration like 30d, an ISO 8601 date, or never/,
      );
  });
});

describe('rotationGrace', () => {
  it('reads 0 as "stop the old key now", a duration as its end, keep or nothing as "until revoked"', () => {
    expect(rotationGrace('0', now)).toEqual({ oldKey: 'revoke' });
    expect(rotationGrace('0s', now)).toEqual({ oldKey: 'revoke' });
    expect(rotationGrace('1h', now)).toEqual({ oldKey: 'expire', at: new Date(now + HOUR).toISOString() });
    expect(rotationGrace('keep', now)).toEqual({ oldKey: 'keep' });
    expect(rotationGrace(undefined, now)).toEqual({ oldKey: 'keep' });
  });

  it('refuses anything else, naming the field as the caller does', () => {
    for (const value of ['soon', '-1h', 'forever', '1 fortnight'])
      expect(() => rotationGrace(value, now, '--grace')).toThrow(
        /^--grace must be 0 \(stop the old key now\), a duration like 1h, or keep/,
      );
  });
});
