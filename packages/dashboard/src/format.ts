// How numbers, money and times read on the pages (the JSON keeps them raw).
import { formatUsd, nanoToUsd } from '@tollgate/core';

/** Money as operators read it: cents from $1 up, six decimals below (a request often costs less than a cent). */
export function money(nano: number): string {
  return nano === 0 ? '$0.00' : formatUsd(nano);
}

/**
 * A formatter for amounts read together (a budget's spent, credit, held, remaining and cap): one number of
 * decimals for all, the fewest (at least 2) at which each is exact, so that the sum they make on the page is
 * exact too; `money()` rounds each on its own, to cents from $1 up, and rounded figures need not add up.
 */
export function exactMoney(nanos: readonly number[]): (nano: number) => string {
  let decimals = 2;
  while (decimals < 9 && nanos.some((nano) => nano % 10 ** (9 - decimals) !== 0)) decimals++;
  const unit = 10 ** (9 - decimals);
  return function formatExactly(nano: number): string {
    const abs = Math.abs(nano);
    const fraction = String(Math.round((abs % 1e9) / unit)).padStart(decimals, '0');
    return `${nano < 0 ? '-' : ''}$${Math.floor(abs / 1e9)}.${fraction}`;
  };
}

/** USD for a chart axis or a table cell that sorts: a plain number. */
export function usd(nano: number): number {
  return nanoToUsd(nano);
}

export function count(value: number): string {
  return value.toLocaleString('en-US');
}

export function percent(fraction: number): string {
  return `${Math.round(fraction * 100)}%`;
}

/** `2026-11-22 18:05 UTC`: one zone for everyone reading the page, the one periods are cut in. */
export function utcTime(iso: string | number | undefined | null): string {
  if (iso === undefined || iso === null) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** `in 3 d`, `2 h ago`: how far a time is from now, roughly. */
export function fromNow(iso: string | number, now: number): string {
  const ms = new Date(iso).getTime() - now;
  const abs = Math.abs(ms);
  const [value, unit] =
    abs >= 86_400_000
      ? [abs / 86_400_000, 'd']
      : abs >= 3_600_000
        ? [abs / 3_600_000, 'h']
        : abs >= 60_000
          ? [abs / 60_000, 'min']
          : [abs / 1000, 's'];
  const text = `${Math.floor(value)} ${unit}`;
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}
