// One event stream for everything a person must hear about: delivered to a log, a callback and webhooks, once per period across processes.
import { parseDuration, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import { GUARD_EVENT_TYPES, type GuardEvent, type GuardEventInput } from './types.js';
import { createWebhookSender, type WebhookOptions, type WebhookSender } from './webhook-sender.js';

/** Where once-per-period claims are made: a guard store (`GuardStore.claim`) shares them between processes. */
export interface AlertClaims {
  claim(id: string, ttlMs: number): Promise<boolean>;
}

export interface AlertsOptions {
  /** Webhooks every event is POSTed to (the proxy config's `alerts.webhooks`). */
  webhooks?: WebhookOptions[];
  /**
   * `true`: one JSON line on stderr per event; a function: called with each event.
   * @default true when there is neither a webhook nor `onEvent`
   */
  log?: boolean | ((event: GuardEvent) => void);
  /** Called with each event; a rejection or a throw is reported, never passed on. */
  onEvent?: (event: GuardEvent) => void | Promise<void>;
  /**
   * An event id is delivered once per this period, in every process that shares `claims`.
   * Ms or `"1h"`.
   * @default '1h'
   */
  dedupe?: number | string;
  /**
   * Where the claims are made (`createGuard` passes its store: Redis `SET NX PX`, so one process
   * delivers each event). When the store cannot answer, the event is delivered anyway: twice is
   * better than never.
   * @default this process only
   */
  claims?: AlertClaims;
  /** Told when a webhook gave up on an event (after its last attempt). @default a process warning */
  onFailure?: (error: unknown, event: GuardEvent, url: string) => void;
}

export interface Alerts {
  /** Queues an event for every channel; never throws for a channel's failure, never waits. */
  emit(event: GuardEventInput): void;
  /** Resolves once every event emitted so far went through every channel (or was given up). */
  flush(): Promise<void>;
  /** Flushes, then stops retries. */
  close(): Promise<void>;
}

const OPTION_NAMES = ['webhooks', 'log', 'onEvent', 'dedupe', 'claims', 'onFailure'] as const;
/** Ids remembered in the process; past this many the expired ones are dropped. */
const MAX_REMEMBERED = 10_000;

function warn(what: string, error: unknown): void {
  process.emitWarning(`tollgate guard: ${what}: ${error instanceof Error ? error.message : String(error)}`);
}

function logLine(event: GuardEvent): void {
  process.stderr.write(`${JSON.stringify({ level: 'warn', msg: 'tollgate alert', ...event })}\n`);
}

/** A memory-only claim store, for one process. */
function localClaims(): AlertClaims {
  const until = new Map<string, number>();
  return {
    async claim(id, ttlMs) {
      const now = Date.now();
      if ((until.get(id) ?? 0) > now) return false;
      until.set(id, now + ttlMs);
      return true;
    },
  };
}

export function createAlerts(options: AlertsOptions = {}): Alerts {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_GUARD_UNKNOWN_OPTION', 'createAlerts');
  if (options.webhooks !== undefined && !Array.isArray(options.webhooks))
    throw new TollgateError('ERR_TG_GUARD_INVALID_WEBHOOK', 'alerts.webhooks must be an array');
  const onFailure =
    options.onFailure ??
    ((error: unknown, event: GuardEvent, url: string) =>
      warn(`alert ${event.id} could not be delivered to ${url}`, error));
  const webhooks: WebhookSender[] = (options.webhooks ?? []).map((webhook) => createWebhookSender(webhook, onFailure));
  const onEvent = options.onEvent;
  const log =
    options.log === false
      ? undefined
      : typeof options.log === 'function'
        ? options.log
        : options.log === true || (webhooks.length === 0 && !onEvent)
          ? logLine
          : undefined;
  let dedupeMs: number;
  try {
    dedupeMs = parseDuration(options.dedupe ?? '1h', 'alerts.dedupe');
  } catch (error) {
    throw new TollgateError('ERR_TG_GUARD_INVALID_OPTION', (error as Error).message.replace(/ \(ERR_.*$/, ''), {
      cause: error,
    });
  }
  const claims = options.claims ?? localClaims();
  const remembered = new Map<string, number>();
  const pending = new Set<Promise<void>>();

  /** This process's own memory: the same id again within the period costs no store call. */
  function seenRecently(id: string, now: number): boolean {
    if ((remembered.get(id) ?? 0) > now) return true;
    if (remembered.size >= MAX_REMEMBERED)
      for (const [known, until] of remembered) if (until <= now) remembered.delete(known);
    remembered.set(id, now + dedupeMs);
    return false;
  }

  function deliver(event: GuardEvent): void {
    if (log) {
      try {
        log(event);
      } catch (error) {
        warn('the alert log failed', error);
      }
    }
    for (const webhook of webhooks) webhook.send(event);
    if (onEvent) {
      try {
        const result = onEvent(event);
        if (result instanceof Promise) track(result.catch((error: unknown) => warn('onEvent failed', error)));
      } catch (error) {
        warn('onEvent failed', error);
      }
    }
  }

  function track(work: Promise<void>): void {
    pending.add(work);
    void work.finally(() => pending.delete(work));
  }

  async function flush(): Promise<void> {
    while (pending.size > 0) await Promise.all(pending);
    await Promise.all(webhooks.map((webhook) => webhook.flush()));
  }

  return {
    emit(input) {
      if (!GUARD_EVENT_TYPES.includes(input.type))
        throw new TypeError(`unknown alert type ${JSON.stringify(input.type)}; one of ${GUARD_EVENT_TYPES.join(', ')}`);
      const now = Date.now();
      if (seenRecently(input.id, now)) return;
      const event: GuardEvent = { ...input, at: input.at ?? new Date(now).toISOString() };
      track(
        claims.claim(`alert:${event.id}`, dedupeMs).then(
          (mine) => {
            if (mine) deliver(event);
          },
          () => deliver(event),
        ),
      );
    },
    flush,
    async close() {
      await flush();
      for (const webhook of webhooks) webhook.close();
    },
  };
}
