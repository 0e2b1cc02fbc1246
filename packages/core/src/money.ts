// Money is an integer count of nano-USD (1e-9 USD): exact sums, one rounding per request.

export const NANO_PER_USD = 1_000_000_000;

/**
 * The most any amount given in USD may be: a budget, a top-up, a cost. nano-USD are exact while
 * they stay integers under 2^53 (about $9,007,199); a period's spend, holds and credits add up
 * to a few budgets at most, so one amount is kept well under that.
 */
export const MAX_USD = 1_000_000;

/** The most a price may be, in USD per million tokens (the dearest models cost a few hundred). */
export const MAX_USD_PER_MILLION_TOKENS = 10_000;

/**
 * Why `value` is not an amount of USD this project takes, or undefined when it is: a finite
 * number, above 0 (or at 0 with `zero`), at most `max` (MAX_USD). The one rule of every door
 * money comes in by: admin top-ups, budgets in config and code, prices.
 */
export function usdAmountProblem(value: unknown, options: { zero?: boolean; max?: number } = {}): string | undefined {
  const max = options.max ?? MAX_USD;
  const least = options.zero ? 'a number of USD >= 0' : 'a positive number of USD';
  if (typeof value !== 'number' || !Number.isFinite(value))
    return `must be ${least}, at most ${max.toLocaleString('en-US')}; got ${JSON.stringify(value) ?? String(value)}`;
  if (options.zero ? value < 0 : value <= 0)
    return `must be ${least}, at most ${max.toLocaleString('en-US')}; got ${value}`;
  if (value > max)
    return `must be at most ${max.toLocaleString('en-US')} USD (amounts are counted in exact nano-USD); got ${value}`;
  return undefined;
}

/** USD (a display or config value) to nano-USD, rounded to the nearest nano; never past exact integers. */
export function usdToNano(usd: number): number {
  if (!Number.isFinite(usd)) throw new RangeError(`not a finite USD amount: ${usd}`);
  const nano = Math.round(usd * NANO_PER_USD);
  if (!Number.isSafeInteger(nano))
    throw new RangeError(`USD amount out of range (at most ${MAX_USD.toLocaleString('en-US')}): ${usd}`);
  return nano;
}

/** nano-USD to USD, for display only. */
export function nanoToUsd(nano: number): number {
  return nano / NANO_PER_USD;
}

/** `$1.234567` style rendering with up to 6 decimals, for messages and reports. */
export function formatUsd(nano: number): string {
  const usd = nanoToUsd(nano);
  const digits = Math.abs(usd) >= 1 ? 2 : 6;
  return `$${usd.toFixed(digits)}`;
}

/**
 * nano-USD as a decimal number of USD with 6 places (`12.345678`), rounded half away from zero to
 * the micro-USD in integer arithmetic, so that it is exact: what the command line prints.
 */
export function usdDecimal(nano: number): string {
  if (!Number.isSafeInteger(nano)) throw new RangeError(`not an integer of nano-USD: ${nano}`);
  const abs = Math.abs(nano);
  const rest = abs % 1000;
  const micro = (abs - rest) / 1000 + (rest >= 500 ? 1 : 0);
  const sign = nano < 0 && micro > 0 ? '-' : '';
  return `${sign}${(micro - (micro % 1_000_000)) / 1_000_000}.${String(micro % 1_000_000).padStart(6, '0')}`;
}

/**
 * nano-USD as the exact decimal number of USD it is (`0.000123456`, `12.5`, `0`): up to 9 places, no
 * trailing zeros, no exponent, made from the integer alone (no float in between). What answers tell
 * clients a call cost (`x-tollgate-cost-usd`, `cost_usd`), so that it is the ledger's number to the nano.
 */
export function exactUsd(nano: number): string {
  if (!Number.isSafeInteger(nano)) throw new RangeError(`not an integer of nano-USD: ${nano}`);
  const abs = Math.abs(nano);
  const fraction = String(abs % NANO_PER_USD)
    .padStart(9, '0')
    .replace(/0+$/, '');
  const whole = (abs - (abs % NANO_PER_USD)) / NANO_PER_USD;
  return `${nano < 0 ? '-' : ''}${whole}${fraction === '' ? '' : `.${fraction}`}`;
}
