// When to retry: which failures are worth another try, and how long to wait first (cockatiel's exponential backoff
// with full jitter, provider hints).
import { noJitterGenerator } from 'cockatiel';

/** Statuses worth another try: the request was fine, the provider was not (or not yet). */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** A header value as undici or Node hand it over. */
type HeaderValue = string | string[] | undefined;

/**
 * The provider's own wait, when it named one: `retry-after-ms` (OpenAI, milliseconds) wins over
 * `retry-after` (seconds, or an HTTP date). Undefined when neither is there or readable.
 */
export function retryAfterMs(headers: Record<string, HeaderValue>, now = Date.now()): number | undefined {
  const first = (value: HeaderValue) => (Array.isArray(value) ? value[0] : value);
  const ms = first(headers['retry-after-ms']);
  if (ms !== undefined) {
    const value = Number(ms);
    if (Number.isFinite(value) && value >= 0) return value;
  }
  const after = first(headers['retry-after']);
  if (after === undefined) return undefined;
  const seconds = Number(after);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(after);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * The wait before retry number `retry` (1 for the first) of one target: a random time up to
 * `baseDelayMs * 2^(retry-1)` (full jitter, so that clients failed together do not come back
 * together), capped at `maxDelayMs`. A provider's hint replaces it, within the same cap.
 */
export function retryDelayMs(
  retry: number,
  baseDelayMs: number,
  maxDelayMs: number,
  hintMs: number | undefined,
  random: () => number = Math.random,
): number {
  if (hintMs !== undefined) return Math.min(hintMs, maxDelayMs);
  // cockatiel's exponential step for this retry, jittered here so that a test can choose the random draw.
  const [ceiling] = noJitterGenerator(Math.max(0, retry - 1), {
    initialDelay: baseDelayMs,
    maxDelay: maxDelayMs,
    exponent: 2,
    generator: noJitterGenerator,
  });
  return Math.floor(random() * ceiling);
}
