// Delivers alert events to a webhook: POST JSON, retried with exponential backoff, never in a request's way.
import { TollgateError, parseDuration } from '@tollgate/core';

export interface WebhookOptions {
  /** Where events are POSTed as JSON. */
  url: string;
  /** Extra request headers (e.g. a shared secret). */
  headers?: Record<string, string>;
  /**
   * Tries per event, the first included.
   * @default 5
   */
  attempts?: number;
  /**
   * Wait before the first retry, in ms or as `"1s"`; each later retry waits twice as long.
   * @default '1s'
   */
  initialDelay?: number | string;
  /**
   * Time limit of one attempt, in ms or as `"5s"`.
   * @default '5s'
   */
  timeout?: number | string;
  /** Called when an event could not be delivered after every attempt. */
  onFailure?: (error: unknown, event: unknown) => void;
}

export interface WebhookSender {
  send(event: unknown): void;
  /** Resolves once every event sent so far is delivered or given up on. */
  flush(): Promise<void>;
  /** Stops retrying: pending retries give up at once. */
  close(): void;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

/** Status codes worth another try: the receiver may recover. */
const retryable = (status: number) => status === 408 || status === 425 || status === 429 || status >= 500;

export function createWebhookSender(input: string | WebhookOptions): WebhookSender {
  const options: WebhookOptions = typeof input === 'string' ? { url: input } : input;
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TollgateError(
      'ERR_TG_BUDGET_INVALID_WEBHOOK',
      `webhook.url must be an absolute http(s) URL; got ${JSON.stringify(options.url)}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TollgateError('ERR_TG_BUDGET_INVALID_WEBHOOK', `webhook.url must be http or https; got ${url.protocol}`);
  const attempts = options.attempts ?? 5;
  if (!Number.isSafeInteger(attempts) || attempts < 1)
    throw new TollgateError(
      'ERR_TG_BUDGET_INVALID_WEBHOOK',
      `webhook.attempts must be a positive integer; got ${JSON.stringify(options.attempts)}`,
    );
  const initialDelayMs = parseDuration(options.initialDelay ?? '1s', 'webhook.initialDelay');
  const timeoutMs = parseDuration(options.timeout ?? '5s', 'webhook.timeout');
  const headers = { 'content-type': 'application/json', ...options.headers };
  const onFailure =
    options.onFailure ??
    ((error: unknown) =>
      process.emitWarning(
        `tollgate budget: webhook delivery to ${url.origin} failed: ${error instanceof Error ? error.message : String(error)}`,
      ));
  const pending = new Set<Promise<void>>();
  const closing = new AbortController();

  async function deliver(event: unknown): Promise<void> {
    const body = JSON.stringify(event);
    let lastError: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(initialDelayMs * 2 ** (attempt - 1), closing.signal);
      if (closing.signal.aborted) break;
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), closing.signal]),
        });
        // Drain the body so the connection is reused.
        await response.arrayBuffer().catch(() => undefined);
        if (response.ok) return;
        lastError = new Error(`HTTP ${response.status}`);
        if (!retryable(response.status)) break;
      } catch (error) {
        lastError = error;
      }
    }
    // After close() the caller chose to stop; only real give-ups are reported.
    if (!closing.signal.aborted) onFailure(lastError, event);
  }

  return {
    send(event) {
      const delivery = deliver(event).catch((error: unknown) => onFailure(error, event));
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
