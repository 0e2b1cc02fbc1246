import { describe, expect, it } from '@jest/globals';
import { exactUsd, usdDecimal } from '@tollgate/core/costs';
import { NANO_PER_USD } from '../src/money.js';

describe('exactUsd', () => {
  it('writes nano-USD as the exact decimal of USD it is: no rounding, no trailing zeros, no exponent', () => {
    expect(exactUsd(0)).toBe('0');
    expect(exactUsd(1)).toBe('0.000000001');
    expect(exactUsd(100)).toBe('0.0000001');
    expect(exactUsd(123_456)).toBe('0.000123456');
    expect(exactUsd(1_500_000_000)).toBe('1.5');
    expect(exactUsd(12_000_000_000)).toBe('12');
    expect(exactUsd(-1)).toBe('-0.000000001');
    expect(exactUsd(Number.MAX_SAFE_INTEGER)).toBe('9007199.254740991');
    expect(() => exactUsd(1.5)).toThrow(RangeError);
  });

  it('reads back as the nearest number to the amount, as a JSON parser does', () => {
    for (const nano of [1, 7, 100, 384_000, 2_999_983_950, 123_456_789_012])
      expect(Number(exactUsd(nano))).toBe(nano / NANO_PER_USD);
  });
});

describe('usdDecimal', () => {
  it('prints nano-USD as USD with 6 decimals, rounded half away from zero, exactly', () => {
    expect(usdDecimal(0)).toBe('0.000000');
    expect(usdDecimal(12_345_678_901)).toBe('12.345679');
    expect(usdDecimal(12_345_678_499)).toBe('12.345678');
    expect(usdDecimal(499)).toBe('0.000000');
    expect(usdDecimal(500)).toBe('0.000001');
    expect(usdDecimal(-1_500)).toBe('-0.000002');
    expect(usdDecimal(-400)).toBe('0.000000');
    expect(usdDecimal(1_000_000_000_000_000)).toBe('1000000.000000');
    expect(usdDecimal(Number.MAX_SAFE_INTEGER)).toBe('9007199.254741');
    expect(() => usdDecimal(1.5)).toThrow(RangeError);
  });
});
