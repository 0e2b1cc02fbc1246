// Soft-limit events to a webhook: the budget's options over core's one webhook delivery (retries, backoff, deadlines).
import { TollgateError, parseDuration } from '@tollgate/core';
import { webhookDelivery, webhookUrl } from '@tollgate/core/webhook';

export interface WebhookOptions {
  /** Where events are POSTed as JSON. */
  url: string;
  /** Extra request headers (e.g. a shared secret). */
  headers?: Record<string, string>;
  /**
   * Tries per event, the first included; 5xx, 408, 425, 429 and network errors are retried.
   * @default 5
   */
  attempts?: number;
  /**
   * The backoff's base, in ms or as `"1s"`: retry n waits a random time up to base × 2^(n-1), at most `maxDelay`.
   * @default '1s'
   */
  initialDelay?: number | string;
  /** @default '1m' */
  maxDelay?: number | string;
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

const CODE = 'ERR_TG_BUDGET_INVALID_WEBHOOK';

export function createWebhookSender(input: string | WebhookOptions): WebhookSender {
  const options: WebhookOptions = typeof input === 'string' ? { url: input } : input;
  const url = webhookUrl(options.url, CODE, 'webhook.url');
  const attempts = options.attempts ?? 5;
  if (!Number.isSafeInteger(attempts) || attempts < 1)
    throw new TollgateError(
      CODE,
      `webhook.attempts must be a positive integer; got ${JSON.stringify(options.attempts)}`,
    );
  const onFailure =
    options.onFailure ??
    ((error: unknown) =>
      process.emitWarning(
        `tollgate budget: webhook delivery to ${url.origin} failed: ${error instanceof Error ? error.message : String(error)}`,
      ));
  const delivery = webhookDelivery<unknown>({
    url,
    ...(options.headers ? { headers: options.headers } : {}),
    attempts,
    initialDelayMs: parseDuration(options.initialDelay ?? '1s', 'webhook.initialDelay'),
    maxDelayMs: parseDuration(options.maxDelay ?? '1m', 'webhook.maxDelay'),
    timeoutMs: parseDuration(options.timeout ?? '5s', 'webhook.timeout'),
    onFailure,
  });
  return {
    send: (event) => delivery.send(event, JSON.stringify(event)),
    flush: () => delivery.flush(),
    close: () => delivery.close(),
  };
}
