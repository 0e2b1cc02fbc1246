// Durations ("30s", "1m", "1h", "1d") and UTC calendar periods (hour, day, month).
import { TollgateError } from './errors.js';

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

export type CalendarPeriod = 'hour' | 'day' | 'month';
export const CALENDAR_PERIODS: readonly CalendarPeriod[] = ['hour', 'day', 'month'];

export interface PeriodWindow {
  period: CalendarPeriod;
  /** Epoch ms of the period's first instant (UTC). */
  start: number;
  /** Epoch ms of the next period's first instant (UTC). */
  end: number;
  /** Suffix that names this period in store keys: `2026-11`, `2026-11-22`, `2026-11-22T08`. */
  suffix: string;
}

export function isCalendarPeriod(value: unknown): value is CalendarPeriod {
  return typeof value === 'string' && (CALENDAR_PERIODS as readonly string[]).includes(value);
}

/** The UTC calendar period containing `nowMs`. */
export function periodWindow(period: CalendarPeriod, nowMs: number): PeriodWindow {
  const d = new Date(nowMs);
  const y = d.getUTCFullYear();
  const mo = d.getUTCMonth();
  const day = d.getUTCDate();
  const h = d.getUTCHours();
  const pad = (n: number) => String(n).padStart(2, '0');
  switch (period) {
    case 'hour': {
      const start = Date.UTC(y, mo, day, h);
      return { period, start, end: start + UNIT_MS.h, suffix: `${y}-${pad(mo + 1)}-${pad(day)}T${pad(h)}` };
    }
    case 'day': {
      const start = Date.UTC(y, mo, day);
      return { period, start, end: Date.UTC(y, mo, day + 1), suffix: `${y}-${pad(mo + 1)}-${pad(day)}` };
    }
    case 'month':
      return { period, start: Date.UTC(y, mo, 1), end: Date.UTC(y, mo + 1, 1), suffix: `${y}-${pad(mo + 1)}` };
    default:
      throw new TollgateError(
        'ERR_TG_CORE_INVALID_PERIOD',
        `period must be one of ${CALENDAR_PERIODS.join(', ')}; got ${JSON.stringify(period)}`,
      );
  }
}
