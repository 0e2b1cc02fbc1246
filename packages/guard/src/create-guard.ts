// createGuard: the guard's pieces built once around one store, one copy of the mitigations and one alert stream.
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  createMemoryStores,
  TollgateError,
  type Identity,
  type TollgateStores,
  type UsageRecord,
} from '@tollgate/core';
import type { SendCommand } from '@tollgate/redis/lua';
import { abuseGuard } from './abuse-guard.js';
import { AbuseWatch, type AbuseEntry } from './abuse-watch.js';
import type { AbuseSubject } from './abuse-features.js';
import { storeDownAlerts } from './alert-sources.js';
import { createAlerts, type Alerts, type AlertsOptions } from './alerts.js';
import { authFailureGuard } from './auth-failure-guard.js';
import { resolveGuardOptions, type GuardOptions } from './guard-options.js';
import type { GuardStore } from './guard-store.js';
import { MemoryGuardStore } from './memory-guard-store.js';
import { MitigationRegistry } from './mitigation-registry.js';
import { RedisGuardStore } from './redis-guard-store.js';
import { repeatedRequestGuard } from './repeated-request-guard.js';
import { SpendWatch } from './spend-watch.js';
import { suspensionGuard } from './suspension-guard.js';
import type { AnomalyRecord, Mitigation, Subject } from './types.js';

type Middleware = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;

export interface Guard {
  /** Before authentication: refuses blocked addresses (429) and counts the 401s of the rest. */
  readonly authFailures: Middleware;
  /** Right after authentication: refuses suspended keys and tenants (403 `key_suspended`). */
  readonly suspensions: Middleware;
  /** After the estimate, best inside `combineLimits(...)`: refuses a request repeated too often by its key (429 `repeated_request`). */
  readonly repeatedRequests: Middleware;
  /** Behavioural abuse (`abuse`): refuses throttled and blocked addresses; records every request at its end. */
  readonly abuseBeforeAuth: Middleware;
  /** After authentication: refuses throttled and blocked keys and tenants; puts the caller's score on its record. */
  readonly abuseAfterAuth: Middleware;
  /** The latest abuse scoring (highest first), as this process knows it; empty when `abuse` is off. */
  abuseEntries(): AbuseEntry[];
  /** The abuse model in use (undefined before it has seen `minSubjects` subjects, or when `abuse` is off). */
  abuseModel(): { version: number; trainedAt: number; subjects: number } | undefined;
  /** Lifts the abuse model's actions on a subject everywhere, then leaves it alone a while; resolves with them. */
  clearAbuse(subject: AbuseSubject): Promise<Mitigation[]>;
  /** The usage feed: `meter({ onUsage: guard.onUsage })` (the request gives the client address). */
  readonly onUsage: (record: UsageRecord, req?: IncomingMessage) => void;
  /** The same feed as a usage sink (no client addresses), for a spool's or a meter's `sinks`. */
  readonly usageSink: {
    readonly name: string;
    write(record: UsageRecord): void;
    flush(): Promise<void>;
    close(): Promise<void>;
  };
  /**
   * The factor (0 < x <= 1) the caller's request and token limits are to be multiplied by while a
   * throttle is on its key or tenant; 1 otherwise. No I/O.
   */
  limitScale(identity: Identity | undefined): number;
  readonly alerts: Alerts;
  readonly store: GuardStore;
  /** Resolves once this process holds the mitigations in force. */
  readonly ready: Promise<void>;
  /** Suspends a key or a tenant everywhere until lifted. */
  suspend(subject: `key:${string}` | `tenant:${string}`, reason?: string): Promise<Mitigation>;
  /** Scales a key's or tenant's limits down everywhere for `durationMs` (default: the cooldown). */
  throttle(
    subject: `key:${string}` | `tenant:${string}`,
    options?: { scale?: number; durationMs?: number; reason?: string },
  ): Promise<Mitigation>;
  /** Lifts the suspension and the throttle of a key or tenant; resolves with what was lifted. */
  lift(subject: `key:${string}` | `tenant:${string}`): Promise<Mitigation[]>;
  /** Lifts the block of a client address (as the guard writes it: IPv6 by /56). */
  unblock(address: string): Promise<boolean>;
  /** The mitigations in force, as this process knows them. */
  mitigations(): Mitigation[];
  /**
   * Whether a check before authentication may refuse a request now: a block or a throttle is known (no I/O). While
   * it is false, `authFailures` and `abuseBeforeAuth` let every request through.
   */
  refusesBeforeAuth(): boolean;
  /** The newest anomalies, newest first. */
  anomalies(limit?: number): Promise<AnomalyRecord[]>;
  /** Sends the usage summed so far to the store and waits for the alerts in flight. */
  flush(): Promise<void>;
  /** Flushes, then stops timers, subscriptions and retries. Never closes the stores it was given. */
  close(): Promise<void>;
}

interface RedisLike {
  kind: 'redis';
  prefix: string;
  sendCommand: SendCommand;
}

function isRedisStores(stores: TollgateStores): stores is TollgateStores & RedisLike {
  const candidate = stores as Partial<RedisLike> & TollgateStores;
  return stores.kind === 'redis' && typeof candidate.sendCommand === 'function' && typeof candidate.prefix === 'string';
}

function isAlerts(value: unknown): value is Alerts {
  return typeof value === 'object' && value !== null && typeof (value as Alerts).emit === 'function';
}

/** The guard's own store on the stores it was given: in Redis when they are (shared by every process), else in memory. */
function guardStoreOn(stores: TollgateStores, options: GuardOptions): GuardStore {
  if (options.subscriber !== undefined && !isRedisStores(stores))
    throw new TollgateError('ERR_TG_GUARD_INVALID_OPTION', 'subscriber is for Redis stores (createRedisStores())');
  const clock = options.clock ? { clock: options.clock } : {};
  const subscriber = options.subscriber ? { subscriber: options.subscriber } : {};
  return isRedisStores(stores)
    ? new RedisGuardStore({ sendCommand: stores.sendCommand, prefix: stores.prefix, ...subscriber, ...clock })
    : new MemoryGuardStore(clock);
}

const pass: Middleware = function tollgateGuardOff(_req, _res, next) {
  next();
};

export function createGuard(options: GuardOptions = {}): Guard {
  const config = resolveGuardOptions(options);
  const stores = options.stores ?? createMemoryStores();
  const ownsStores = options.stores === undefined;
  const store = guardStoreOn(stores, options);
  const alerts: Alerts = isAlerts(options.alerts)
    ? options.alerts
    : createAlerts({ claims: store, ...(options.alerts as AlertsOptions | undefined) });
  const ownsAlerts = !isAlerts(options.alerts);
  const onStoreError = options.onStoreError ?? storeDownAlerts(alerts, 'guard');
  const registry = new MitigationRegistry(store, { syncIntervalMs: config.syncIntervalMs, onStoreError });
  const { renderError } = config;
  const spend = config.spendAnomaly;
  const watch = spend ? new SpendWatch(spend, { store, registry, alerts }, onStoreError) : undefined;

  async function lift(subject: `key:${string}` | `tenant:${string}`): Promise<Mitigation[]> {
    const lifted = await Promise.all([registry.lift('suspend', subject), registry.lift('throttle', subject)]);
    return lifted.filter((mitigation): mitigation is Mitigation => mitigation !== undefined);
  }

  const abuse = config.abuse
    ? new AbuseWatch(config.abuse, { store, registry, alerts, onStoreError, clock: options.clock ?? Date.now })
    : undefined;
  const abuseChecks = abuse ? abuseGuard(abuse, registry, renderError) : { beforeAuth: pass, afterAuth: pass };

  let closed: Promise<void> | undefined;
  const guard: Guard = {
    authFailures: config.authFailures
      ? authFailureGuard({ config: config.authFailures, store, registry, alerts, renderError, onStoreError })
      : pass,
    suspensions: suspensionGuard(registry, renderError),
    repeatedRequests: config.repeatedRequests
      ? repeatedRequestGuard({
          config: config.repeatedRequests,
          counter: stores.counter,
          prefix: 'tg:guard:repeat:',
          renderError,
          onStoreError,
        })
      : pass,
    abuseBeforeAuth: abuseChecks.beforeAuth,
    abuseAfterAuth: abuseChecks.afterAuth,
    abuseEntries: () => abuse?.entries() ?? [],
    abuseModel: () => abuse?.model(),
    clearAbuse: async (subject) => (abuse ? abuse.clear(subject) : []),
    onUsage: (record, req) => {
      watch?.observe(record, req);
      abuse?.recordUsage(record, req);
    },
    usageSink: {
      name: 'tollgate-guard',
      write: (record) => {
        watch?.observe(record, undefined);
        abuse?.recordUsage(record, undefined);
      },
      flush: async () => watch?.flushUsage(),
      close: async () => watch?.flushUsage(),
    },
    limitScale: (identity) => registry.limitScale(identity),
    alerts,
    store,
    ready: registry.ready,
    suspend: (subject, reason = 'suspended by an operator') => registry.put({ kind: 'suspend', subject, reason }),
    throttle: (subject, throttleOptions = {}) => {
      const scale = throttleOptions.scale ?? spend?.throttleScale ?? 0.1;
      if (!(scale > 0 && scale < 1))
        throw new TollgateError('ERR_TG_GUARD_INVALID_OPTION', `throttle scale must be between 0 and 1; got ${scale}`);
      return registry.put(
        { kind: 'throttle', subject, reason: throttleOptions.reason ?? 'throttled by an operator', scale },
        throttleOptions.durationMs ?? spend?.cooldownMs ?? 15 * 60_000,
      );
    },
    lift,
    unblock: async (address) => (await registry.lift('block', `ip:${address}` as Subject)) !== undefined,
    mitigations: () => registry.list(),
    refusesBeforeAuth: () => !registry.none('block') || !registry.none('throttle'),
    anomalies: (limit = 100) => store.anomalies(limit),
    async flush() {
      await watch?.flushUsage();
      await abuse?.flush();
      await watch?.settle();
      await alerts.flush();
    },
    close() {
      closed ??= (async () => {
        await watch?.close();
        await abuse?.close();
        registry.close();
        if (ownsAlerts) await alerts.close();
        else await alerts.flush();
        await store.close();
        if (ownsStores) await stores.close();
      })();
      return closed;
    },
  };
  return guard;
}
