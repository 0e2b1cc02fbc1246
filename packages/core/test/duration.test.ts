// Durations ("30s", "1m", ...) and calendar periods in UTC and in time zones: boundaries, DST days, ISO weeks, quarters, key suffixes.
import { describe, expect, it } from '@jest/globals';
import { parseDuration, periodWindow, TollgateError } from '@tollgate/core';
import { isCalendarPeriod } from '@tollgate/core/options';
import { isTimeZone } from '../src/duration.js';

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
    expect(() => periodWindow('fortnight' as never, 0)).toThrow(/ERR_TG_CORE_INVALID_PERIOD/);
    expect(isCalendarPeriod('month')).toBe(true);
    expect(isCalendarPeriod('week')).toBe(true);
    expect(isCalendarPeriod('quarter')).toBe(true);
    expect(isCalendarPeriod('year')).toBe(false);
    expect(isCalendarPeriod(1)).toBe(false);
  });
});

describe('periodWindow: ISO weeks and quarters', () => {
  const minute = (ms: number) => new Date(ms).toISOString().slice(0, 16);

  // [why, period, instant, zone, `start/end suffix` in UTC to the minute]
  it.each([
    ['Sunday ends week 47', 'week', '2026-11-22T23:59:59.999Z', 'UTC', '2026-11-16T00:00/2026-11-23T00:00 2026-W47'],
    [
      'Monday 00:00 starts week 48',
      'week',
      '2026-11-23T00:00:00Z',
      'UTC',
      '2026-11-23T00:00/2026-11-30T00:00 2026-W48',
    ],
    // 2026 starts on a Thursday: it has 53 ISO weeks, the last running into 2027.
    ['week 53', 'week', '2026-12-31T12:00:00Z', 'UTC', '2026-12-28T00:00/2027-01-04T00:00 2026-W53'],
    ['week 53 in the next year', 'week', '2027-01-03T23:00:00Z', 'UTC', '2026-12-28T00:00/2027-01-04T00:00 2026-W53'],
    ['the week after week 53', 'week', '2027-01-04T00:00:00Z', 'UTC', '2027-01-04T00:00/2027-01-11T00:00 2027-W01'],
    // Monday 2024-12-30 starts week 1 of 2025; Sunday 2021-01-03 still belongs to 2020's week 53.
    ['week 1 in the year before', 'week', '2024-12-31T12:00:00Z', 'UTC', '2024-12-30T00:00/2025-01-06T00:00 2025-W01'],
    ['week 53 of 2020', 'week', '2021-01-03T12:00:00Z', 'UTC', '2020-12-28T00:00/2021-01-04T00:00 2020-W53'],
    ['Q1', 'quarter', '2026-02-14T00:00:00Z', 'UTC', '2026-01-01T00:00/2026-04-01T00:00 2026-Q1'],
    ['the end of Q2', 'quarter', '2026-06-30T23:59:59.999Z', 'UTC', '2026-04-01T00:00/2026-07-01T00:00 2026-Q2'],
    ['Q3 from July 1st', 'quarter', '2026-07-01T00:00:00Z', 'UTC', '2026-07-01T00:00/2026-10-01T00:00 2026-Q3'],
    ['Q4 to the year end', 'quarter', '2026-12-31T23:59:59.999Z', 'UTC', '2026-10-01T00:00/2027-01-01T00:00 2026-Q4'],
    ['Q1 of the next year', 'quarter', '2027-01-01T00:00:00Z', 'UTC', '2027-01-01T00:00/2027-04-01T00:00 2027-Q1'],
    // Sunday 23:30 UTC is already Monday 00:30 in Berlin (UTC+1 in November).
    ['a Berlin week', 'week', '2026-11-22T23:30:00Z', 'Europe/Berlin', '2026-11-22T23:00/2026-11-29T23:00 2026-W48'],
    // New Year's Eve 23:30 UTC: the new quarter in Berlin, not yet in UTC, still Q4 in New York.
    [
      'a Berlin quarter',
      'quarter',
      '2026-12-31T23:30:00Z',
      'Europe/Berlin',
      '2026-12-31T23:00/2027-03-31T22:00 2027-Q1',
    ],
    [
      'a New York quarter',
      'quarter',
      '2026-12-31T23:30:00Z',
      'America/New_York',
      '2026-10-01T04:00/2027-01-01T05:00 2026-Q4',
    ],
  ] as const)('%s', (_why, period, instant, zone, expected) => {
    const window = periodWindow(period, Date.parse(instant), zone);
    expect(`${minute(window.start)}/${minute(window.end)} ${window.suffix}`).toBe(expected);
  });
});

describe('periodWindow in a time zone', () => {
  const at = (iso: string) => Date.parse(iso);
  const hours = (window: { start: number; end: number }) => (window.end - window.start) / 3_600_000;

  it('starts the day at local midnight', () => {
    expect(periodWindow('day', at('2026-11-22T22:59:59.999Z'), 'Europe/Berlin')).toEqual({
      period: 'day',
      start: at('2026-11-21T23:00:00Z'),
      end: at('2026-11-22T23:00:00Z'),
      suffix: '2026-11-22',
    });
    expect(periodWindow('day', at('2026-11-22T23:00:00Z'), 'Europe/Berlin').suffix).toBe('2026-11-23');
    expect(periodWindow('month', at('2026-11-30T23:30:00Z'), 'Europe/Berlin')).toMatchObject({
      start: at('2026-11-30T23:00:00Z'),
      suffix: '2026-12',
    });
  });

  const minute = (ms: number) => new Date(ms).toISOString().slice(0, 16);
  const span = (window: { start: number; end: number }) => `${minute(window.start)}/${minute(window.end)}`;

  it.each([
    {
      zone: 'Europe/Berlin',
      spring: ['2026-03-29T12:00:00Z', '2026-03-28T23:00/2026-03-29T22:00'],
      autumn: ['2026-10-25T12:00:00Z', '2026-10-24T22:00/2026-10-25T23:00'],
    },
    {
      zone: 'America/New_York',
      spring: ['2026-03-08T12:00:00Z', '2026-03-08T05:00/2026-03-09T04:00'],
      autumn: ['2026-11-01T12:00:00Z', '2026-11-01T04:00/2026-11-02T05:00'],
    },
  ])('makes the days on which clocks change 23 and 25 hours long ($zone)', ({ zone, spring, autumn }) => {
    const short = periodWindow('day', at(spring[0]!), zone);
    expect([span(short), hours(short)]).toEqual([spring[1], 23]);
    const long = periodWindow('day', at(autumn[0]!), zone);
    expect([span(long), hours(long)]).toEqual([autumn[1], 25]);
    // The weeks holding the changes: one hour short, one hour long.
    expect(hours(periodWindow('week', short.start, zone))).toBe(167);
    expect(hours(periodWindow('week', long.start, zone))).toBe(169);
  });

  it('starts quarters at local midnight on either side of a change of the clocks (America/New_York)', () => {
    // Q1 2027 starts at midnight EST, Q2 at midnight EDT.
    expect(periodWindow('quarter', at('2027-02-01T00:00:00Z'), 'America/New_York')).toMatchObject({
      start: at('2027-01-01T05:00:00Z'),
      end: at('2027-04-01T04:00:00Z'),
      suffix: '2027-Q1',
    });
  });

  it('skips the hour clocks jump over and makes the repeated hour one period of two hours', () => {
    // Berlin, 2026-03-29: 02:00 does not exist, 01:59:59 CET is followed by 03:00 CEST (01:00Z).
    expect(periodWindow('hour', at('2026-03-29T00:59:59Z'), 'Europe/Berlin').suffix).toBe('2026-03-29T01');
    expect(periodWindow('hour', at('2026-03-29T01:00:00Z'), 'Europe/Berlin')).toMatchObject({
      start: at('2026-03-29T01:00:00Z'),
      end: at('2026-03-29T02:00:00Z'),
      suffix: '2026-03-29T03',
    });
    // Berlin, 2026-10-25: 02:00-03:00 runs twice (CEST, then CET); its period runs from the first 02:00 to 03:00 CET.
    for (const when of ['2026-10-25T00:30:00Z', '2026-10-25T01:30:00Z'])
      expect(periodWindow('hour', at(when), 'Europe/Berlin')).toEqual({
        period: 'hour',
        start: at('2026-10-25T00:00:00Z'),
        end: at('2026-10-25T02:00:00Z'),
        suffix: '2026-10-25T02',
      });
    expect(periodWindow('hour', at('2026-10-25T02:00:00Z'), 'Europe/Berlin').suffix).toBe('2026-10-25T03');
  });

  it('is well defined when local midnight does not exist or repeats (America/Sao_Paulo, 2018)', () => {
    // 2018-11-04: clocks jumped from 00:00 to 01:00; the day starts at the jump and lasts 23 hours.
    const skipped = periodWindow('day', at('2018-11-04T12:00:00Z'), 'America/Sao_Paulo');
    expect(skipped).toMatchObject({ start: at('2018-11-04T03:00:00Z'), end: at('2018-11-05T02:00:00Z') });
    expect(hours(skipped)).toBe(23);
    expect(periodWindow('day', at('2018-11-04T02:59:59.999Z'), 'America/Sao_Paulo').suffix).toBe('2018-11-03');
    // 2018-02-18: at midnight clocks went back to 23:00 of the 17th, which ran twice: the 17th lasted 25 hours.
    const repeated = periodWindow('day', at('2018-02-18T02:30:00Z'), 'America/Sao_Paulo');
    expect(repeated).toMatchObject({
      start: at('2018-02-17T02:00:00Z'),
      end: at('2018-02-18T03:00:00Z'),
      suffix: '2018-02-17',
    });
    expect(periodWindow('day', at('2018-02-18T03:00:00Z'), 'America/Sao_Paulo').suffix).toBe('2018-02-18');
  });

  it('cuts hours and days on a zone offset that is not whole hours (Asia/Kolkata, UTC+5:30)', () => {
    expect(periodWindow('hour', at('2026-11-22T08:45:00Z'), 'Asia/Kolkata')).toEqual({
      period: 'hour',
      start: at('2026-11-22T08:30:00Z'),
      end: at('2026-11-22T09:30:00Z'),
      suffix: '2026-11-22T14',
    });
    expect(periodWindow('day', at('2026-11-22T18:29:59.999Z'), 'Asia/Kolkata')).toMatchObject({
      start: at('2026-11-21T18:30:00Z'),
      end: at('2026-11-22T18:30:00Z'),
      suffix: '2026-11-22',
    });
    expect(periodWindow('week', at('2026-11-22T18:30:00Z'), 'Asia/Kolkata')).toMatchObject({
      start: at('2026-11-22T18:30:00Z'),
      suffix: '2026-W48',
    });
  });

  it('tiles time: every instant in exactly one period, each named once, across years of clock changes', () => {
    // Lord Howe moves its clocks by 30 minutes; São Paulo changed them at midnight until 2019.
    const zones = ['Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'America/Sao_Paulo', 'Australia/Lord_Howe'];
    const problems: string[] = [];
    for (const timezone of zones) {
      for (const period of ['hour', 'day', 'week', 'month', 'quarter'] as const) {
        const seen = new Set<string>();
        const until = at(period === 'hour' ? '2019-01-01T00:00:00Z' : '2020-01-10T00:00:00Z');
        let window = periodWindow(period, at('2017-12-25T00:00:00Z'), timezone);
        while (window.end < until) {
          const next = periodWindow(period, window.end, timezone);
          const last = periodWindow(period, next.start - 1, timezone);
          if (next.start !== window.end || last.suffix !== window.suffix || seen.has(next.suffix))
            problems.push(`${timezone} ${period} ${window.suffix} -> ${next.suffix}`);
          seen.add(next.suffix);
          window = next;
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('knows IANA zones and refuses others', () => {
    expect(isTimeZone('Europe/Berlin')).toBe(true);
    expect(isTimeZone('UTC')).toBe(true);
    expect(isTimeZone('Europe/Berlim')).toBe(false);
    expect(isTimeZone('')).toBe(false);
    expect(isTimeZone(3)).toBe(false);
    expect(() => periodWindow('day', 0, 'Mars/Olympus')).toThrow(/ERR_TG_CORE_INVALID_TIMEZONE/);
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
