// Durations ("30s", "1m", ...) and UTC calendar periods: boundaries, month roll-over, key suffixes.
import { describe, expect, it } from '@jest/globals';
import { parseDuration, periodWindow, TollgateError } from '@tollgate/core';
import { isCalendarPeriod } from '@tollgate/core/kit';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['1.5s', 1_500],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['2w', 1_209_600_000],
    [' 10 s ', 10_000],
  ])('parses %j', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it('takes a positive number as ms', () => {
    expect(parseDuration(1234)).toBe(1234);
  });

  it.each(['', '10', '-1s', '1y', '1 minute', 'abc'])('rejects %j with a stable code', (input) => {
    expect(() => parseDuration(input)).toThrow(TollgateError);
    try {
      parseDuration(input, 'windowMs');
    } catch (error) {
      expect((error as TollgateError).code).toBe('ERR_TG_CORE_INVALID_DURATION');
      expect((error as Error).message).toMatch(/^windowMs must be/);
    }
  });

  it.each([0, -5, Number.NaN, Number.POSITIVE_INFINITY])('rejects the number %p', (input) => {
    expect(() => parseDuration(input)).toThrow(TollgateError);
  });
});

describe('periodWindow (UTC)', () => {
  const at = (iso: string) => Date.parse(iso);

  it('hour: start, end and suffix', () => {
    expect(periodWindow('hour', at('2026-11-22T08:59:59.999Z'))).toEqual({
      period: 'hour',
      start: at('2026-11-22T08:00:00Z'),
      end: at('2026-11-22T09:00:00Z'),
      suffix: '2026-11-22T08',
    });
  });

  it('day: start, end and suffix', () => {
    expect(periodWindow('day', at('2026-11-22T23:59:59.999Z'))).toEqual({
      period: 'day',
      start: at('2026-11-22T00:00:00Z'),
      end: at('2026-11-23T00:00:00Z'),
      suffix: '2026-11-22',
    });
  });

  it('month: start, end and suffix', () => {
    expect(periodWindow('month', at('2026-11-30T12:00:00Z'))).toEqual({
      period: 'month',
      start: at('2026-11-01T00:00:00Z'),
      end: at('2026-12-01T00:00:00Z'),
      suffix: '2026-11',
    });
  });

  it('rolls over years and month lengths', () => {
    expect(periodWindow('month', at('2026-12-31T23:59:59Z'))).toMatchObject({
      end: at('2027-01-01T00:00:00Z'),
      suffix: '2026-12',
    });
    expect(periodWindow('day', at('2026-12-31T10:00:00Z'))).toMatchObject({
      end: at('2027-01-01T00:00:00Z'),
      suffix: '2026-12-31',
    });
    expect(periodWindow('hour', at('2026-12-31T23:30:00Z'))).toMatchObject({
      end: at('2027-01-01T00:00:00Z'),
      suffix: '2026-12-31T23',
    });
    expect(periodWindow('month', at('2028-02-10T00:00:00Z'))).toMatchObject({ end: at('2028-03-01T00:00:00Z') });
    expect(periodWindow('day', at('2028-02-28T05:00:00Z'))).toMatchObject({ end: at('2028-02-29T00:00:00Z') });
    expect(
      periodWindow('month', at('2027-02-10T00:00:00Z')).end - periodWindow('month', at('2027-02-10T00:00:00Z')).start,
    ).toBe(28 * 86_400_000);
  });

  it('is half-open: the end instant belongs to the next period', () => {
    const first = periodWindow('day', at('2026-11-22T08:00:00Z'));
    const next = periodWindow('day', first.end);
    expect(next.start).toBe(first.end);
    expect(next.suffix).toBe('2026-11-23');
    expect(periodWindow('day', first.end - 1).suffix).toBe('2026-11-22');
  });

  it('ignores the local time zone', () => {
    const suffix = periodWindow('day', at('2026-11-22T23:30:00-05:00')).suffix;
    expect(suffix).toBe('2026-11-23');
  });

  it('rejects unknown periods', () => {
    expect(() => periodWindow('week' as never, 0)).toThrow(/ERR_TG_CORE_INVALID_PERIOD/);
    expect(isCalendarPeriod('month')).toBe(true);
    expect(isCalendarPeriod('week')).toBe(false);
    expect(isCalendarPeriod(1)).toBe(false);
  });
});

describe('parseDuration on input a config file can hold', () => {
  // "0s" is not a positive duration: a zero window would divide by zero in every store.
  it.each(['0s', '0ms', '0.0m', '0 h'])('rejects the zero string %j', (input) => {
    expect(() => parseDuration(input)).toThrow(TollgateError);
  });

  // JSON config may hold null, true, an object: the answer must be the coded error, not a TypeError.
  it.each([null, true, {}, ['1s']])('rejects %j with a TollgateError', (input) => {
    expect(() => parseDuration(input as never, 'window')).toThrow(TollgateError);
    expect(() => parseDuration(input as never, 'window')).toThrow(/^window must be/);
  });
});
