// One webhook delivery for every package that sends events (budget alerts, guard alerts): a POST with a deadline per
// attempt, retried on network errors and on statuses a receiver may recover from, waits from cockatiel's exponential
// backoff with full jitter, never in a request's way.
import { ExponentialBackoff, fullJitterGenerator, type IBackoff } from 'cockatiel';
import { TollgateError } from './errors.js';

export interface WebhookDeliveryOptions<Item> {
  url: URL;
  /** Sent with every delivery (a delivery's own headers are added to them). */
  headers?: Record<string, string>;
  /** Tries per delivery, the first included. */
  attempts: number;
  /** The backoff's base: retry n waits a random time below min(maxDelayMs, initialDelayMs × 2^(n-1)). */
  initialDelayMs: number;
  maxDelayMs: number;
  /** Time limit of one attempt. */
  timeoutMs: number;
  /** Told once per delivery given up on (not for those close() stopped). */
  onFailure(error: unknown, item: Item): void;
}

export interface WebhookDelivery<Item> {
  /** The URL's origin: what logs and errors may show (a path or query may hold a token, as Slack's do). */
  readonly origin: string;
  /** Queues the POST of `body` for `item`; never throws, never waits. */
  send(item: Item, body: string, headers?: Record<string, string>): void;
  /** Resolves once every delivery queued so far succeeded or was given up. */
  flush(): Promise<void>;
  /** Stops retrying: deliveries waiting for their next try give up at once. */
  close(): void;
}

/** Statuses worth another try: the receiver may recover. */
export const retryableStatus = (status: number): boolean =>
  status === 408 || status === 425 || status === 429 || status >= 500;

/** `value` as an absolute http(s) URL, or a TollgateError with `code` naming `field`. */
export function webhookUrl(value: unknown, code: string, field: string): URL {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new TollgateError(code, `${field} must be an absolute http(s) URL; got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TollgateError(code, `${field} must be http or https; got ${url.protocol}`);
  return url;
}

/**
 * The wait before each retry of a delivery that failed: cockatiel's exponential backoff with full jitter (retry n
 * waits a random time below min(maxDelayMs, initialDelayMs × 2^(n-1))), so processes that saw one failure do not
 * retry in step. `backoff.next()` is the first wait, each wait's `next(undefined)` the one after it.
 */
export function retryBackoff(options: { initialDelayMs: number; maxDelayMs: number }): ExponentialBackoff<unknown> {
  return new ExponentialBackoff({
    initialDelay: options.initialDelayMs,
    maxDelay: options.maxDelayMs,
    generator: fullJitterGenerator,
  });
}

export type { IBackoff };

export function webhookDelivery<Item>(options: WebhookDeliveryOptions<Item>): WebhookDelivery<Item> {
  const { url, attempts, timeoutMs, onFailure } = options;
  const origin = url.origin;
  const backoff = retryBackoff(options);
  const pending = new Set<Promise<void>>();
  const closing = new AbortController();
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      // Closed during the try that just failed: its abort event has gone by, and none will come again.
      if (closing.signal.aborted) return resolve();
      const timer = setTimeout(resolve, ms);
      closing.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });

  async function deliver(item: Item, body: string, headers: Record<string, string>): Promise<void> {
    let lastError: unknown;
    let delay: IBackoff<unknown> | undefined;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        // Full jitter: processes that all saw the receiver fail do not retry in step.
        delay = delay ? delay.next(undefined) : backoff.next();
        await wait(delay.duration);
      }
      if (closing.signal.aborted) return;
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), closing.signal]),
        });
        // Drained, so the connection is reused.
        await response.arrayBuffer().catch(() => undefined);
        if (response.ok) return;
        lastError = new Error(`HTTP ${response.status} from ${origin}`);
        if (!retryableStatus(response.status)) break;
      } catch (error) {
        lastError = error;
      }
    }
    // After close() the caller chose to stop; only real give-ups are reported.
    if (!closing.signal.aborted) onFailure(lastError, item);
  }

  return {
    origin,
    send(item, body, headers) {
      const all = { 'content-type': 'application/json', ...options.headers, ...headers };
      const delivery = deliver(item, body, all).catch((error: unknown) => onFailure(error, item));
      pending.add(delivery);
      void delivery.finally(() => pending.delete(delivery));
    },
    async flush() {
      while (pending.size > 0) await Promise.all(pending);
    },
    close() {
      closing.abort();
    },
  };
}
