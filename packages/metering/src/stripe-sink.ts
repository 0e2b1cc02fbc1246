// Stripe billing meter events from usage records: one event per priced record of a tenant mapped to a Stripe customer,
// identified by the record's id, sent through the official `stripe` package, retried until accepted, never sent twice.
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TollgateError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/kit';
import { retryableStatus, retryBackoff } from '@tollgate/core/webhook';
import type { IBackoff } from '@tollgate/core/webhook';
import type StripeClient from 'stripe';
import { loadOptionalPeer } from './optional-peer.js';
import { logOnce } from './sink.js';
import type { SinkErrorHandler, UsageSink } from './sink.js';

export interface StripeMeterSinkOptions {
  /** The secret key (`sk_...`) of the Stripe account. Required unless `client` is given. */
  apiKey?: string;
  /** The meter's `event_name`. Required. */
  eventName: string;
  /** Tenant id → Stripe customer id (`cus_...`): records of other tenants are not billed. Required. */
  customers: Readonly<Record<string, string>>;
  /**
   * A directory of its own on a local disk: the ids Stripe accepted, so that records written again after a crash
   * (the usage spool's replay) are not sent again. Required.
   */
  directory: string;
  /** The API's address, for a test double or a proxy. @default https://api.stripe.com */
  baseUrl?: string;
  /** A Stripe client you made (its own key, agent, retries), instead of `apiKey` and `baseUrl`. */
  client?: StripeClient;
  /** Events sent at once. @default 8 */
  concurrency?: number;
  /** The wait after a round that left events unaccepted: exponential with full jitter from this, in ms. @default 1000 */
  retryDelayMs?: number;
  /** The longest wait between rounds, in ms. @default 60000 */
  maxRetryDelayMs?: number;
  /** How often queued events are sent without being asked (a flush, the spool's checkpoint), in ms; 0 never. @default 1000 */
  flushIntervalMs?: number;
  /** Hears failures: a round that left events unaccepted, an event Stripe refused for good (then dropped). */
  onError?: SinkErrorHandler;
}

export interface StripeMeterSink extends UsageSink {
  /** Events waiting to be accepted. */
  readonly pending: number;
  /** Events Stripe refused for good (a customer it does not know, an event too old), reported and dropped. */
  readonly rejected: number;
}

const KNOWN = [
  'apiKey',
  'eventName',
  'customers',
  'directory',
  'baseUrl',
  'client',
  'concurrency',
  'retryDelayMs',
  'maxRetryDelayMs',
  'flushIntervalMs',
  'onError',
] as const satisfies readonly (keyof StripeMeterSinkOptions)[];

/** Stripe keeps an identifier unique for at least a day; the journal remembers accepted ids a little longer. */
const REMEMBER_MS = 36 * 60 * 60 * 1000;
/** Past this many lines the journal is rewritten with the ids still remembered. */
const JOURNAL_COMPACT_LINES = 100_000;

interface MeterEvent {
  identifier: string;
  customer: string;
  /** USD micro-units (millionths of a dollar), a whole number. */
  value: number;
  /** Seconds since the epoch. */
  timestamp: number;
}

function invalid(message: string): TollgateError {
  return new TollgateError('ERR_TG_METERING_INVALID_OPTION', `stripeMeterSink(): ${message}`);
}

/** The event of a record, or undefined when it bills nothing (another tenant, no cost). */
function eventOf(record: UsageRecord, customers: Readonly<Record<string, string>>): MeterEvent | undefined {
  const tenant = record.tenantId;
  if (tenant === null || tenant === undefined || !Object.hasOwn(customers, tenant)) return undefined;
  // nano-USD to micro-USD, rounded half up: a whole number, as a meter's value must be.
  const value = Math.floor((record.costNanoUsd + 500) / 1000);
  if (value <= 0) return undefined;
  return {
    identifier: record.id,
    customer: customers[tenant]!,
    value,
    timestamp: Math.floor(Date.parse(record.timestamp) / 1000),
  };
}

/** The ids Stripe accepted, kept on disk (one JSON line each: id and time) and in memory. */
class AcceptedJournal {
  readonly #path: string;
  readonly #accepted = new Map<string, number>();
  #lines = 0;

  constructor(directory: string) {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    this.#path = join(directory, 'accepted.jsonl');
    let text = '';
    try {
      text = readFileSync(this.#path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const since = Date.now() - REMEMBER_MS;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      this.#lines++;
      try {
        const [id, at] = JSON.parse(line) as [string, number];
        if (typeof id === 'string' && typeof at === 'number' && at >= since) this.#accepted.set(id, at);
      } catch {
        // A line cut by a crash: the id it was writing is sent again, and Stripe drops the duplicate.
      }
    }
  }

  has(id: string): boolean {
    return this.#accepted.has(id);
  }

  /** Written before anything else learns the id was accepted: a crash after this sends it no more. */
  add(ids: readonly string[]): void {
    if (ids.length === 0) return;
    const now = Date.now();
    appendFileSync(this.#path, ids.map((id) => `${JSON.stringify([id, now])}\n`).join(''), { mode: 0o600 });
    for (const id of ids) this.#accepted.set(id, now);
    this.#lines += ids.length;
    if (this.#lines > JOURNAL_COMPACT_LINES) this.#compact(now);
  }

  #compact(now: number): void {
    const since = now - REMEMBER_MS;
    for (const [id, at] of this.#accepted) if (at < since) this.#accepted.delete(id);
    const temp = `${this.#path}.tmp`;
    writeFileSync(temp, [...this.#accepted].map((entry) => `${JSON.stringify(entry)}\n`).join(''), { mode: 0o600 });
    renameSync(temp, this.#path);
    this.#lines = this.#accepted.size;
  }
}

/** Whether Stripe refused an event for good: a 4xx it would answer again (not 408, 409, 425 or 429). */
function refusedForGood(error: unknown): boolean {
  const status = (error as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' && status >= 400 && status < 500 && status !== 409 && !retryableStatus(status);
}

/** Stripe's answer to an identifier it already has: the event is in, as accepted as it will be. */
function alreadyAccepted(error: unknown): boolean {
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && /identifier/i.test(message) && /already|exists|duplicate/i.test(message);
}

function stripeClient(options: StripeMeterSinkOptions): StripeClient {
  if (options.client) return options.client;
  if (typeof options.apiKey !== 'string' || options.apiKey === '') throw invalid('apiKey (or client) is required');
  const Stripe = loadOptionalPeer<typeof StripeClient & { default?: typeof StripeClient }>(
    'stripe',
    'stripeMeterSink()',
  );
  const Constructor = Stripe.default ?? Stripe;
  const url = new URL(options.baseUrl ?? 'https://api.stripe.com');
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid('baseUrl must be an http(s) URL');
  return new Constructor(options.apiKey, {
    host: url.hostname,
    port: url.port || (url.protocol === 'https:' ? 443 : 80),
    protocol: url.protocol === 'https:' ? 'https' : 'http',
    // The sink retries itself, round after round, until Stripe accepts: the client's own retry is one quick try more.
    maxNetworkRetries: 1,
    timeout: 20_000,
    telemetry: false,
  });
}

/**
 * A usage sink that bills through Stripe's billing meters: for each record of a tenant in `customers` with a cost,
 * one meter event (`event_name`, `payload.stripe_customer_id`, `payload.value` = the cost in USD micro-units as a
 * whole number, `identifier` = the record's id, `timestamp` = the record's), sent by the official `stripe` package,
 * `concurrency` at a time. An event Stripe does not accept stays queued and is sent again at the next flush, after an
 * exponential wait with full jitter: `flushStored()` resolves true only once all are accepted, so under the usage
 * spool (`openUsageSpool`) nothing unaccepted is lost in a crash. Accepted ids are journaled in `directory` before
 * anything else, and records written again after a crash are not sent again; an id sent in the instant before a crash
 * is dropped by Stripe as a duplicate identifier. An event Stripe refuses for good (a 4xx it would repeat) is reported
 * and dropped.
 */
export function stripeMeterSink(options: StripeMeterSinkOptions): StripeMeterSink {
  assertKnownOptions(options, KNOWN, 'ERR_TG_METERING_UNKNOWN_OPTION', 'stripeMeterSink');
  if (typeof options.eventName !== 'string' || options.eventName === '' || options.eventName.length > 100)
    throw invalid('eventName must be a string of 1 to 100 characters');
  if (typeof options.customers !== 'object' || options.customers === null)
    throw invalid('customers must map tenant ids to Stripe customer ids');
  for (const [tenant, customer] of Object.entries(options.customers))
    if (typeof customer !== 'string' || customer === '') throw invalid(`customers.${tenant} must be a customer id`);
  if (typeof options.directory !== 'string' || options.directory === '') throw invalid('directory is required');
  const concurrency = options.concurrency ?? 8;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 100)
    throw invalid('concurrency must be a whole number from 1 to 100');
  const client = stripeClient(options);
  const journal = new AcceptedJournal(options.directory);
  const report = options.onError ?? logOnce('the Stripe meter sink');
  const backoff = retryBackoff({
    initialDelayMs: options.retryDelayMs ?? 1000,
    maxDelayMs: options.maxRetryDelayMs ?? 60_000,
  });
  /** Events by identifier, in the order written. */
  const queue = new Map<string, MeterEvent>();
  let rejected = 0;
  let delay: IBackoff<unknown> | undefined;
  /** No round starts before this (ms since the epoch): the backoff after a round that left events unaccepted. */
  let notBefore = 0;
  let round: Promise<boolean> | undefined;

  const send = async (event: MeterEvent): Promise<'accepted' | 'rejected' | 'later'> => {
    try {
      await client.billing.meterEvents.create({
        event_name: options.eventName,
        identifier: event.identifier,
        timestamp: event.timestamp,
        payload: { stripe_customer_id: event.customer, value: String(event.value) },
      });
      return 'accepted';
    } catch (error) {
      if (alreadyAccepted(error)) return 'accepted';
      if (refusedForGood(error)) {
        report(
          new Error(
            `Stripe refused the meter event ${event.identifier} for good (dropped): ${(error as Error).message}`,
          ),
        );
        return 'rejected';
      }
      report(error);
      return 'later';
    }
  };

  /** Sends every queued event once, `concurrency` at a time; resolves whether the queue is empty after. */
  const sendRound = async (): Promise<boolean> => {
    const events = [...queue.values()];
    let next = 0;
    const accepted: string[] = [];
    const worker = async () => {
      while (next < events.length) {
        const event = events[next++]!;
        const outcome = await send(event);
        if (outcome === 'later') continue;
        if (outcome === 'accepted') accepted.push(event.identifier);
        else rejected++;
        queue.delete(event.identifier);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, events.length) }, worker));
    journal.add(accepted);
    if (queue.size === 0) {
      delay = undefined;
      notBefore = 0;
      return true;
    }
    delay = delay ? delay.next(undefined) : backoff.next();
    notBefore = Date.now() + delay.duration;
    return false;
  };

  const flushStored = async (): Promise<boolean> => {
    // A round under way covers what was queued before it began: one more for what came since.
    if (round) await round;
    if (queue.size === 0) return true;
    if (Date.now() < notBefore) return false;
    round = sendRound().finally(() => {
      round = undefined;
    });
    return round;
  };

  const enqueue = (record: UsageRecord) => {
    const event = eventOf(record, options.customers);
    if (event && !journal.has(event.identifier)) queue.set(event.identifier, event);
  };

  const intervalMs = options.flushIntervalMs ?? 1000;
  const timer = intervalMs > 0 ? setInterval(() => void flushStored().catch(report), intervalMs) : undefined;
  timer?.unref();

  return {
    name: `stripe:${options.eventName}`,
    get pending() {
      return queue.size;
    },
    get rejected() {
      return rejected;
    },
    write: enqueue,
    flushStored,
    async flush() {
      await flushStored();
    },
    async replay(records) {
      for (const record of records) enqueue(record);
      return flushStored();
    },
    async close() {
      clearInterval(timer);
      await flushStored();
    },
  };
}
