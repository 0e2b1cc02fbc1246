// Alert events to one webhook, JSON or Slack-shaped and HMAC-signed, over core's one webhook delivery (retries, backoff, deadlines).
import { createHmac } from 'node:crypto';
import { parseDuration, TollgateError } from '@tollgate/core';
import { webhookDelivery, webhookUrl } from '@tollgate/core/webhook';
import type { GuardEvent } from './types.js';

export interface WebhookOptions {
  /** Where events are POSTed. */
  url: string;
  /**
   * The name of the environment variable holding the signing secret (the proxy config's
   * `secretEnv`): each body is signed with `x-tollgate-signature: sha256=<hex HMAC-SHA256 of the body>`.
   * Read once, at construction; a name that is not set is an error there.
   */
  secretEnv?: string;
  /** The signing secret itself, instead of `secretEnv`. */
  secret?: string;
  /**
   * `json`: the event as it is; `slack`: a Slack incoming-webhook message (`text` and `blocks`).
   * @default 'json'
   */
  format?: 'json' | 'slack';
  /** Extra request headers. */
  headers?: Record<string, string>;
  /**
   * Tries per event, the first included; 5xx, 408, 425, 429 and network errors are retried.
   * @default 5
   */
  attempts?: number;
  /**
   * The backoff's base: a retry waits a random time up to base × 2^(retry - 1), at most `maxDelay`.
   * @default '1s'
   */
  initialDelay?: number | string;
  /** @default '1m' */
  maxDelay?: number | string;
  /**
   * Time limit of one attempt.
   * @default '5s'
   */
  timeout?: number | string;
}

export interface WebhookSender {
  readonly url: string;
  /** Queues a delivery; never throws, never waits. */
  send(event: GuardEvent): void;
  /** Resolves once every delivery queued so far succeeded or was given up. */
  flush(): Promise<void>;
  /** Stops retrying: pending retries give up at once. */
  close(): void;
}

const CODE = 'ERR_TG_GUARD_INVALID_WEBHOOK';
const KNOWN = [
  'url',
  'secretEnv',
  'secret',
  'format',
  'headers',
  'attempts',
  'initialDelay',
  'maxDelay',
  'timeout',
] as const;

/** `sha256=<hex>`: the value of `x-tollgate-signature` for `body` (receivers compute the same and compare). */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** A Slack incoming-webhook message: one line of text, and blocks that name the scope. */
function slackMessage(event: GuardEvent): Record<string, unknown> {
  const scope = [
    event.tenantId && `tenant \`${event.tenantId}\``,
    event.keyId && `key \`${event.keyId}\``,
    event.address && `address \`${event.address}\``,
  ]
    .filter(Boolean)
    .join(' · ');
  const text = `tollgate ${event.type.replace('_', ' ')}: ${event.message}`;
  return {
    text,
    blocks: [
      {
        type: 'section',
        text: { type: 'mrkdwn', text: `*tollgate ${event.type.replace('_', ' ')}*\n${event.message}` },
      },
      {
        type: 'context',
        elements: [{ type: 'mrkdwn', text: [scope, event.at, `id ${event.id}`].filter(Boolean).join(' · ') }],
      },
    ],
  };
}

function delayOption(value: number | string | undefined, fallback: string, what: string): number {
  try {
    return parseDuration(value ?? fallback, `alerts.webhooks[].${what}`);
  } catch (error) {
    throw new TollgateError(CODE, (error as Error).message.replace(/ \(ERR_.*$/, ''), { cause: error });
  }
}

/** Checks a webhook's options and reads its secret, once; the sender it returns does only deliveries. */
export function createWebhookSender(
  options: WebhookOptions,
  onFailure: (error: unknown, event: GuardEvent, url: string) => void,
): WebhookSender {
  if (typeof options !== 'object' || options === null)
    throw new TollgateError(CODE, 'alerts.webhooks[] entries must be objects with a url');
  for (const name of Object.keys(options)) {
    if (!(KNOWN as readonly string[]).includes(name))
      throw new TollgateError(
        'ERR_TG_GUARD_UNKNOWN_OPTION',
        `alerts.webhooks[] has no option "${name}". Known options: ${KNOWN.join(', ')}`,
      );
  }
  const url = webhookUrl(options.url, CODE, 'alerts.webhooks[].url');
  const format = options.format ?? 'json';
  if (format !== 'json' && format !== 'slack')
    throw new TollgateError(CODE, `alerts.webhooks[].format must be "json" or "slack"; got ${JSON.stringify(format)}`);
  const attempts = options.attempts ?? 5;
  if (!Number.isSafeInteger(attempts) || attempts < 1)
    throw new TollgateError(
      CODE,
      `alerts.webhooks[].attempts must be a positive integer; got ${JSON.stringify(attempts)}`,
    );
  let secret = options.secret;
  if (options.secretEnv !== undefined) {
    secret = process.env[options.secretEnv];
    if (!secret)
      throw new TollgateError(
        'ERR_TG_GUARD_MISSING_SECRET',
        `alerts.webhooks[].secretEnv names ${JSON.stringify(options.secretEnv)}, which is not set in the environment`,
      );
  }
  const initialDelayMs = delayOption(options.initialDelay, '1s', 'initialDelay');
  const maxDelayMs = delayOption(options.maxDelay, '1m', 'maxDelay');
  const timeoutMs = delayOption(options.timeout, '5s', 'timeout');
  const delivery = webhookDelivery<GuardEvent>({
    url,
    headers: { 'user-agent': 'tollgate-guard', ...options.headers },
    attempts,
    initialDelayMs,
    maxDelayMs,
    timeoutMs,
    onFailure: (error, event) => onFailure(error, event, url.origin),
  });

  return {
    url: delivery.origin,
    send(event) {
      const body = JSON.stringify(format === 'slack' ? slackMessage(event) : event);
      const headers: Record<string, string> = { 'x-tollgate-event': event.type, 'x-tollgate-event-id': event.id };
      if (secret) headers['x-tollgate-signature'] = signBody(secret, body);
      delivery.send(event, body, headers);
    },
    flush: () => delivery.flush(),
    close: () => delivery.close(),
  };
}
