// How numbers, money and times read on the pages (the JSON keeps them raw).

/** `$12.50`, `-$0.000001`: nano-USD at a fixed number of decimals, rounded half up in integers (no float between). */
function fixedUsd(nano: number, decimals: number): string {
  const unit = 10 ** (9 - decimals);
  const abs = Math.abs(nano);
  const units = Math.round(abs / unit);
  const whole = Math.floor(units / 10 ** decimals);
  const fraction = decimals === 0 ? '' : `.${String(units % 10 ** decimals).padStart(decimals, '0')}`;
  return `${nano < 0 && units > 0 ? '-' : ''}$${whole}${fraction}`;
}

/**
 * The one rule for amounts read side by side (a table's column, a bar's "spent of cap"): one number of decimals for
 * all of them, so every row reads alike and they line up: cents, or more when the smallest amount that is not zero
 * needs them to show two significant digits (a request often costs less than a cent), at most six (micro-USD).
 */
export function moneyColumn(nanos: readonly number[]): (nano: number) => string {
  const smallest = Math.min(...nanos.filter((nano) => nano !== 0).map(Math.abs));
  let decimals = 2;
  while (decimals < 6 && smallest < 10 ** (10 - decimals)) decimals++;
  return function formatColumn(nano: number): string {
    return fixedUsd(nano, decimals);
  };
}

/** One amount on its own, by the same rule as a column of one. */
export function money(nano: number): string {
  return moneyColumn([nano])(nano);
}

/**
 * A formatter for amounts that must add up (a budget's spent, credit, held, remaining and cap, over every row of a
 * table): one number of decimals for all, the fewest (at least 2) at which each is exact, so that the sum they make
 * on the page is exact too; `moneyColumn()` rounds, and rounded figures need not add up.
 */
export function exactMoney(nanos: readonly number[]): (nano: number) => string {
  let decimals = 2;
  while (decimals < 9 && nanos.some((nano) => nano % 10 ** (9 - decimals) !== 0)) decimals++;
  return function formatExactly(nano: number): string {
    return fixedUsd(nano, decimals);
  };
}

export function count(value: number): string {
  return value.toLocaleString('en-US');
}

export function percent(fraction: number): string {
  return `${Math.round(fraction * 100)}%`;
}

/** `2026-11-22 18:05:09 UTC`: one zone for everyone reading the page, the one periods are cut in; to the second. */
export function utcTime(iso: string | number | undefined | null): string {
  if (iso === undefined || iso === null) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
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
