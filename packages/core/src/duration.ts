// Durations ("30s", "1m", "1h", "1d") and calendar periods (hour, day, ISO week, month, quarter) in a time zone.
import { didYouMean, TollgateError } from './errors.js';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$/;

/** A duration as milliseconds: a number is taken as ms, a string like `"30s"`, `"1m"`, `"1h"`, `"1d"`. */
export function parseDuration(input: number | string, what = 'duration'): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input > 0) return input;
  } else if (typeof input === 'string') {
    const match = DURATION.exec(input.trim());
    // "0s" matches the pattern but is no more a window than the number 0.
    const ms = match ? Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS] : 0;
    if (ms > 0) return ms;
  }
  throw new TollgateError(
    'ERR_TG_CORE_INVALID_DURATION',
    `${what} must be a positive number of ms or a string like "30s", "1m", "1h", "1d"; got ${JSON.stringify(input)}`,
  );
}

export type CalendarPeriod = 'hour' | 'day' | 'week' | 'month' | 'quarter';
export const CALENDAR_PERIODS: readonly CalendarPeriod[] = ['hour', 'day', 'week', 'month', 'quarter'];

export interface PeriodWindow {
  period: CalendarPeriod;
  /** Epoch ms of the period's first instant. */
  start: number;
  /** Epoch ms of the next period's first instant. */
  end: number;
  /**
   * Names this period in store keys, in the zone's local calendar: `2026-11-22T08` (hour), `2026-11-22` (day),
   * `2026-W47` (ISO week), `2026-11` (month), `2026-Q4` (quarter). Each names one period of a zone.
   */
  suffix: string;
}

export function isCalendarPeriod(value: unknown): value is CalendarPeriod {
  return typeof value === 'string' && (CALENDAR_PERIODS as readonly string[]).includes(value);
}

/**
 * A time zone's clock. Local times are handled as "wall" ms: the local date and time written as if it were UTC
 * (`Date.UTC(y, m, d, h)`), so calendar arithmetic is plain `Date.UTC` arithmetic.
 */
interface ZoneClock {
  /** The local wall time at `instant`. */
  wallAt(instant: number): number;
  /**
   * The first instant whose local time is at or past `wall`. Where clocks go back, a repeated time counts from
   * its first occurrence; where they jump forward over `wall` (a local midnight that does not exist), the jump.
   */
  firstInstantAt(wall: number): number;
}

const UTC_CLOCK: ZoneClock = { wallAt: (instant) => instant, firstInstantAt: (wall) => wall };

/** The en-US reading of a wall time, month first. */
const WALL_TEXT = /^(\d+)\/(\d+)\/(\d+), (\d+):(\d+):(\d+)$/;

/** Clocks made once per zone name: a formatter costs far more to make than to ask. */
const zoneClocks = new Map<string, ZoneClock>([['UTC', UTC_CLOCK]]);

/** A zone Intl knows (an IANA name such as `Europe/Berlin`, or `UTC`). */
export function isTimeZone(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0) return false;
  if (zoneClocks.has(value)) return true;
  try {
    zoneClocks.set(value, intlClock(value));
    return true;
  } catch {
    return false;
  }
}

/**
 * What is wrong with `value` as a time zone, for a message that names the field first (`timezone must be an IANA
 * time zone ...; got "Europe/Berlim"; did you mean "Europe/Berlin"?`); undefined when `isTimeZone(value)`.
 */
export function timeZoneProblem(value: unknown): string | undefined {
  if (isTimeZone(value)) return undefined;
  const hint = typeof value === 'string' ? didYouMean(value, ['UTC', ...Intl.supportedValuesOf('timeZone')]) : '';
  return `must be an IANA time zone like "Europe/Berlin" or "UTC"; got ${JSON.stringify(value)}${hint}`;
}

function zoneClock(timezone: string): ZoneClock {
  const problem = timeZoneProblem(timezone);
  if (problem !== undefined) throw new TollgateError('ERR_TG_CORE_INVALID_TIMEZONE', `timezone ${problem}`);
  return zoneClocks.get(timezone)!;
}

function intlClock(timeZone: string): ZoneClock {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  const wallAt = (instant: number): number => {
    // `format` is several times cheaper than `formatToParts`; en-US with h23 reads "11/22/2026, 08:05:09".
    const [, month, day, year, hour, minute, second] = WALL_TEXT.exec(format.format(instant))!.map(Number);
    const wholeSeconds = Date.UTC(year!, month! - 1, day!, hour!, minute!, second!);
    return wholeSeconds + (((instant % 1000) + 1000) % 1000);
  };
  const offsetAt = (instant: number) => wallAt(instant) - instant;
  const firstInstantAt = (wall: number): number => {
    const early = offsetAt(wall - UNIT_MS.d);
    const late = offsetAt(wall + UNIT_MS.d);
    // Most days: one offset all around `wall`.
    if (early === late && offsetAt(wall - early) === early) return wall - early;
    // Else the offsets either side of a change of the zone's clocks.
    const offsets = [...new Set([early, offsetAt(wall), late])];
    let first = Infinity;
    for (const offset of offsets) if (offsetAt(wall - offset) === offset) first = Math.min(first, wall - offset);
    if (first !== Infinity) return first;
    // The clocks jumped over `wall`: the instant of the jump, searched for between the offsets' two readings.
    let before = wall - Math.max(...offsets);
    let after = wall - Math.min(...offsets);
    while (after - before > 1) {
      const middle = Math.floor((before + after) / 2);
      if (wallAt(middle) >= wall) after = middle;
      else before = middle;
    }
    return after;
  };
  return { wallAt, firstInstantAt };
}

const pad = (n: number) => String(n).padStart(2, '0');

/** The local period holding `wall`: its name and its first and next wall times. */
function localPeriod(period: CalendarPeriod, wall: number): { suffix: string; from: number; to: number } {
  const d = new Date(wall);
  const y = d.getUTCFullYear();
  const mo = d.getUTCMonth();
  const day = d.getUTCDate();
  const date = `${y}-${pad(mo + 1)}-${pad(day)}`;
  switch (period) {
    case 'hour': {
      const h = d.getUTCHours();
      return { suffix: `${date}T${pad(h)}`, from: Date.UTC(y, mo, day, h), to: Date.UTC(y, mo, day, h + 1) };
    }
    case 'day':
      return { suffix: date, from: Date.UTC(y, mo, day), to: Date.UTC(y, mo, day + 1) };
    case 'week': {
      const monday = Date.UTC(y, mo, day - ((d.getUTCDay() + 6) % 7));
      // ISO 8601: a week belongs to the year of its Thursday, and week 1 holds the year's first Thursday.
      const thursday = new Date(monday + 3 * UNIT_MS.d);
      const year = thursday.getUTCFullYear();
      const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / UNIT_MS.w) + 1;
      return { suffix: `${year}-W${pad(week)}`, from: monday, to: monday + UNIT_MS.w };
    }
    case 'month':
      return { suffix: `${y}-${pad(mo + 1)}`, from: Date.UTC(y, mo, 1), to: Date.UTC(y, mo + 1, 1) };
    case 'quarter': {
      const first = mo - (mo % 3);
      return { suffix: `${y}-Q${first / 3 + 1}`, from: Date.UTC(y, first, 1), to: Date.UTC(y, first + 3, 1) };
    }
    default:
      throw new TollgateError(
        'ERR_TG_CORE_INVALID_PERIOD',
        `period must be one of ${CALENDAR_PERIODS.join(', ')}; got ${JSON.stringify(period)}`,
      );
  }
}

/**
 * The window last made per period and zone (only zones found valid get one): nearly every call falls in the period
 * the last one did, and a zone's window costs a few `Intl` readings to make.
 */
const lastWindows = new Map<string, Readonly<PeriodWindow>>();

/**
 * The calendar period containing `nowMs`, at the local boundaries of `timezone` (an IANA name; default UTC).
 * A period starts the first time the zone's clock reaches its boundary: a day with a change of the clocks lasts 23
 * or 25 hours, a repeated hour belongs to the period the clock first reached, a boundary the clocks skip falls on
 * the jump.
 */
export function periodWindow(period: CalendarPeriod, nowMs: number, timezone = 'UTC'): PeriodWindow {
  const memo = `${period} ${timezone}`;
  const last = lastWindows.get(memo);
  if (last && nowMs >= last.start && nowMs < last.end) return last;
  const clock = zoneClock(timezone);
  let local = localPeriod(period, clock.wallAt(nowMs));
  let start = clock.firstInstantAt(local.from);
  let end = clock.firstInstantAt(local.to);
  // Clocks set back over a boundary: the next period began when they first reached it and holds the repeated time.
  while (end <= nowMs) {
    local = localPeriod(period, local.to);
    start = end;
    end = clock.firstInstantAt(local.to);
  }
  const window = Object.freeze({ period, start, end, suffix: local.suffix });
  lastWindows.set(memo, window);
  return window;
}
