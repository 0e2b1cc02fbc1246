// Money is an integer count of nano-USD (1e-9 USD): exact sums, one rounding per request.

export const NANO_PER_USD = 1_000_000_000;

/** USD (a display or config value) to nano-USD, rounded to the nearest nano. */
export function usdToNano(usd: number): number {
  if (!Number.isFinite(usd)) throw new RangeError(`not a finite USD amount: ${usd}`);
  return Math.round(usd * NANO_PER_USD);
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
