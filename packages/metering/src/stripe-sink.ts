// Stripe billing meter events from usage records of tenants mapped to Stripe customers: whole micro-USD with the
// remainder carried per customer and month, identified by the record's id, retried until accepted, never sent twice.
import { TollgateError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import { retryableStatus, retryBackoff } from '@tollgate/core/webhook';
import type { IBackoff } from '@tollgate/core/webhook';
import type StripeClient from 'stripe';
import { loadOptionalPeer } from './optional-peer.js';
import { logOnce } from './sink.js';
import type { SinkErrorHandler, UsageSink } from './sink.js';
import { MeterJournal } from './stripe-journal.js';
import type { MeterEvent } from './stripe-journal.js';

export interface StripeMeterSinkOptions {
  /** The secret key (`sk_...`) of the Stripe account. Required unless `client` is given. */
  apiKey?: string;
  /** The meter's `event_name`. Required. */
  eventName: string;
  /** Tenant id → Stripe customer id (`cus_...`): records of other tenants are not billed. Required. */
  customers: Readonly<Record<string, string>>;
  /**
   * A directory of its own on a local disk: each record's event as assigned, the ids Stripe accepted and the
   * remainder carried per customer and month, so that records written again after a crash (the usage spool's
   * replay) are neither sent nor counted again. Required.
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

function invalid(message: string): TollgateError {
  return new TollgateError('ERR_TG_METERING_INVALID_OPTION', `stripeMeterSink(): ${message}`);
}

/** The customer a record bills, or undefined when it bills nothing (another tenant, no cost). */
function customerOf(record: UsageRecord, customers: Readonly<Record<string, string>>): string | undefined {
  const tenant = record.tenantId;
  if (tenant === null || tenant === undefined || !Object.hasOwn(customers, tenant)) return undefined;
  return record.costNanoUsd > 0 ? customers[tenant] : undefined;
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
 * A usage sink that bills through Stripe's billing meters, one event per record, each nano-USD billed once across
 * restarts (docs/architecture.md, "Stripe billing: each nano-USD once").
 */
export function stripeMeterSink(options: StripeMeterSinkOptions): StripeMeterSink {
  const config = resolveStripeOptions(options);
  const events = new MeterEventQueue(config);
  const flushStored = (): Promise<boolean> => events.flushStored();
  const enqueue = (record: UsageRecord): void => events.enqueue(record);
  const timer =
    config.flushIntervalMs > 0
      ? setInterval(() => void flushStored().catch(config.report), config.flushIntervalMs)
      : undefined;
  timer?.unref();

  return {
    name: `stripe:${config.eventName}`,
    get pending() {
      return events.pending;
    },
    get rejected() {
      return events.rejected;
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

/** The sink's options checked, with their defaults filled in and the Stripe client made. */
interface ResolvedStripeOptions {
  readonly eventName: string;
  readonly customers: Readonly<Record<string, string>>;
  readonly directory: string;
  readonly concurrency: number;
  readonly client: StripeClient;
  readonly report: SinkErrorHandler;
  readonly backoff: ReturnType<typeof retryBackoff>;
  readonly flushIntervalMs: number;
}

function resolveStripeOptions(options: StripeMeterSinkOptions): ResolvedStripeOptions {
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
  return {
    eventName: options.eventName,
    customers: options.customers,
    directory: options.directory,
    concurrency,
    client: stripeClient(options),
    report: options.onError ?? logOnce('the Stripe meter sink'),
    backoff: retryBackoff({
      initialDelayMs: options.retryDelayMs ?? 1000,
      maxDelayMs: options.maxRetryDelayMs ?? 60_000,
    }),
    flushIntervalMs: options.flushIntervalMs ?? 1000,
  };
}

/** The meter events the sink owes Stripe: assigned and journaled as records come, sent in rounds until accepted. */
class MeterEventQueue {
  /** Events Stripe refused for good, reported and dropped. */
  rejected = 0;
  private readonly journal: MeterJournal;
  /** Events by identifier, in the order written: first those the last process left unaccepted. */
  private readonly queue: Map<string, MeterEvent>;
  private delay: IBackoff<unknown> | undefined = undefined;
  /** No round starts before this (ms since the epoch): the backoff after a round that left events unaccepted. */
  private notBefore = 0;
  /** The flush under way: flushes take turns, so no two rounds send the same events. */
  private flushing: Promise<unknown> = Promise.resolve();

  constructor(private readonly config: ResolvedStripeOptions) {
    this.journal = new MeterJournal(config.directory);
    // Filled at each sync: this process's events, and those a sender that died (an earlier life of it) left unaccepted.
    this.queue = new Map();
  }

  /** Events waiting to be accepted (and records waiting to be assigned theirs). */
  get pending(): number {
    return this.queue.size + this.journal.waiting;
  }

  /** A record for its event: assigned (journaled) at the next flush, against the total of every process. */
  enqueue(record: UsageRecord): void {
    const customer = customerOf(record, this.config.customers);
    if (customer === undefined || this.journal.has(record.id)) return;
    const { id, timestamp, costNanoUsd } = record;
    this.journal.add({ id, customer, timestamp, costNanoUsd });
  }

  flushStored(): Promise<boolean> {
    // A flush under way covers what was queued before it began: one more, after it, for what came since.
    const flush = this.flushing.then(() => this.flushOnce());
    this.flushing = flush.catch(() => undefined);
    return flush;
  }

  private async flushOnce(): Promise<boolean> {
    // Each value is on disk before it is sent, and a record whose cost is carried without an event is stored once its
    // total is: the spool may forget it then.
    for (const event of await this.journal.sync(Date.now())) this.queue.set(event.identifier, event);
    if (this.queue.size === 0) return true;
    if (Date.now() < this.notBefore) return false;
    return this.sendRound();
  }

  /** Sends every queued event once, `concurrency` at a time; resolves whether the queue is empty after. */
  private async sendRound(): Promise<boolean> {
    const { journal, queue } = this;
    const events = [...queue.values()];
    let next = 0;
    const accepted: string[] = [];
    const worker = async () => {
      while (next < events.length) {
        const event = events[next++]!;
        const outcome = await sendEvent(this.config, event);
        if (outcome === 'later') continue;
        if (outcome === 'accepted') accepted.push(event.identifier);
        else this.rejected++;
        queue.delete(event.identifier);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.config.concurrency, events.length) }, worker));
    await journal.accept(accepted, Date.now());
    if (queue.size === 0) {
      this.delay = undefined;
      this.notBefore = 0;
      return true;
    }
    this.delay = this.delay ? this.delay.next(undefined) : this.config.backoff.next();
    this.notBefore = Date.now() + this.delay.duration;
    return false;
  }
}

/** Sends one meter event: accepted (now or before), rejected for good (reported), or to be sent again later. */
async function sendEvent(
  { client, eventName, report }: ResolvedStripeOptions,
  event: MeterEvent,
): Promise<'accepted' | 'rejected' | 'later'> {
  try {
    await client.billing.meterEvents.create({
      event_name: eventName,
      identifier: event.identifier,
      timestamp: event.timestamp,
      payload: { stripe_customer_id: event.customer, value: String(event.value) },
    });
    return 'accepted';
  } catch (error) {
    if (alreadyAccepted(error)) return 'accepted';
    if (refusedForGood(error)) {
      report(
        new Error(`Stripe refused the meter event ${event.identifier} for good (dropped): ${(error as Error).message}`),
      );
      return 'rejected';
    }
    report(error);
    return 'later';
  }
}
