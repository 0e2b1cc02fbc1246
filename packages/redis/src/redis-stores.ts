// createRedisStores: every core store interface on one Redis or one Redis Cluster, shared by every process that points at it.
import { TollgateError, type TollgateStores } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import {
  connectCluster,
  connectUrl,
  useClient,
  useSendCommand,
  type Connection,
  type ConnectionOptions,
  type RedisClientLike,
  type RedisClusterLike,
} from './connection.js';
import { RedisFixedWindow } from './fixed-window.js';
import { slotTag } from './hash-slot.js';
import { KeyCache, type KeyCacheOptions } from './key-cache.js';
import { keyChangesChannel, RedisKeyStore } from './key-store.js';
import type { SendCommand } from './lua.js';
import { RedisRebuildGate } from './rebuild-gate.js';
import { RedisReservationLedger, ScopeBirths, type ScopeBirth } from './reservation-ledger.js';
import { ShardedReservationLedger } from './sharded-ledger.js';
import { RedisWindowCounter } from './window-counter.js';

export interface RedisStoresOptions {
  /**
   * Redis URL for a client tollgate creates, connects and closes. Give at most one of `url`,
   * `cluster`, `client` and `sendCommand`.
   * @default process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
   */
  url?: string;
  /**
   * URLs of some nodes of a Redis Cluster (`redis://host:port`; credentials and TLS of the first
   * apply to every node): tollgate creates a node-redis cluster client, connects it (and keeps
   * trying while no node answers) and closes it. Keys are then spread over the shards by whom
   * they count (see the README, "Redis Cluster").
   */
  cluster?: string[];
  /**
   * A node-redis v5 client you own, `createClient()` or `createCluster()` (connected here if it is
   * not open yet; never closed here). A cluster client gets the sharded layout, as `cluster` does.
   */
  client?: RedisClientLike | RedisClusterLike;
  /**
   * Sends one command as its argument strings and resolves with the reply: for any other client.
   * A Cluster router works too, but every store keeps its keys in one slot (the one-server layout):
   * give `cluster` or a cluster `client` to spread them over the shards.
   */
  sendCommand?: SendCommand;
  /**
   * Put in front of every key, so several deployments can share one Redis. May not contain
   * `{` or `}` (hash tags are tollgate's own).
   * @default 'tollgate:'
   */
  prefix?: string;
  /**
   * Deadline for every store call in ms; past it the call rejects with core's
   * `StoreTimeoutError` and the middleware's failure policy decides. 0 disables it.
   * @default 500
   */
  timeoutMs?: number;
  /**
   * Key records kept in this process so that `apiKeyAuth` needs no round trip per request.
   * Every key change publishes on Redis pub/sub and each process drops the record on receipt
   * (a revocation counts everywhere within the delivery time, typically under 1 ms on one host);
   * while the subscription is down nothing is served from memory. Needs a node-redis client
   * (`url` or `client`); with `sendCommand` there is no cache. `false` turns it off.
   * @default { maxEntries: 10_000, maxAgeMs: 60_000 }
   */
  keyCache?: KeyCacheOptions | false;
  /**
   * Budget settles are summed in this process for this many ms and sent as one batch (each batch
   * lands exactly once, retried until it does).
   * @default 2
   */
  settleDelayMs?: number;
  /**
   * A directory for budget settles that could not land before `close()` (Redis down at shutdown);
   * the next stores opened with the same directory send them first, exactly once. Processes may
   * share one. Without it they are reported, and their reservations are charged in full when they
   * expire.
   */
  settleSpool?: string;
  /**
   * Store operations started in one turn of the event loop (a request's limits and budget, the
   * settles of several requests) go to Redis as one `EVALSHA` of a script holding every store
   * script, one per Cluster hash slot with `sendCommand`. `false` sends one `EVALSHA` per operation.
   * @default true
   */
  batch?: boolean;
}

export interface RedisStores extends TollgateStores {
  counter: RedisWindowCounter;
  /** Fixed request windows (express-rate-limit's model) in the same connection: `tieredRateLimit` counts in them inside `combineLimits`. */
  fixedWindow: RedisFixedWindow;
  /** On a cluster, one ledger per slot behind one door (ShardedReservationLedger). */
  ledger: RedisReservationLedger | ShardedReservationLedger;
  keys: RedisKeyStore;
  readonly kind: 'redis';
  readonly prefix: string;
  /** True on Redis Cluster (`cluster`, or a cluster `client`): keys spread over the shards by their slot. */
  readonly sharded: boolean;
  /**
   * The hash tag that puts a key on `slot`'s shard (`{tenant:acme}`), '' on one server: request
   * limits counted by rate-limit-redis carry it, so they share a shard with the caller's other keys.
   */
  slotTag(slot: string): string;
  /**
   * The same connection for other Redis users in tollgate (rate-limit-redis takes this), with
   * the same deadline, so no package opens a client of its own.
   */
  sendCommand(args: string[]): Promise<unknown>;
  /**
   * Calls `listener` when a reserve finds budget scopes that Redis wrote again from nothing within
   * their period: Redis lost its data (restarted without persistence, failed over to an empty
   * replica) while this process went on. Their spend is gone from Redis; rebuild it from a usage
   * ledger (budgetGuard's `rebuild`). Settles of reservations made before the loss charge what was
   * spent and never give anything back. Each scope comes with its birth (Redis's time in µs when
   * it was written again). Returns the unsubscribe.
   */
  onDataLoss(listener: (scopes: ScopeBirth[]) => void): () => void;
  /** True when Redis answered PING within the deadline. Never rejects. */
  ping(): Promise<boolean>;
  /**
   * The deadline of every store call, in ms (0: none): a caller whose own deadline is no shorter
   * (a limiter's `timeoutMs`) can leave it to the stores.
   */
  readonly timeoutMs: number;
}

const OPTION_NAMES = [
  'url',
  'cluster',
  'client',
  'sendCommand',
  'prefix',
  'timeoutMs',
  'keyCache',
  'settleDelayMs',
  'settleSpool',
  'batch',
] as const;
const KEY_CACHE_OPTIONS = ['maxEntries', 'maxAgeMs'] as const;

/** The CLIENT SETNAME of the key-change subscriber of stores with this prefix. */
export function keyCacheClientName(prefix: string): string {
  return `tollgate-keys:${prefix.replace(/[^\w:.-]/g, '_')}`;
}

export function createRedisStores(options: RedisStoresOptions = {}): RedisStores {
  const config = resolveStoresOptions(options);
  const { prefix, timeoutMs, keyCache } = config;
  const connection = openConnection(options, config);
  // Named so that operators (and tests) can tell it apart in CLIENT LIST.
  const subscriber = keyCache === false ? undefined : connection.subscriber?.(keyCacheClientName(prefix));
  const cache =
    subscriber && keyCache !== false ? new KeyCache(subscriber, keyChangesChannel(prefix), keyCache) : undefined;
  const births = new ScopeBirths();
  const ledger = reservationLedger(connection, config, births);

  return {
    counter: new RedisWindowCounter(connection, prefix),
    fixedWindow: new RedisFixedWindow(connection),
    ledger,
    keys: new RedisKeyStore(connection, prefix, cache),
    kind: 'redis',
    prefix,
    timeoutMs,
    sharded: connection.sharded,
    slotTag: connection.sharded ? slotTag : () => '',
    sendCommand: (args) => connection.send(args, args[0] ?? 'command'),
    onDataLoss: (listener) => births.onLoss(listener),
    async ping() {
      try {
        return (await connection.send(['PING'], 'ping')) === 'PONG';
      } catch {
        return false;
      }
    },
    async close() {
      // Settles first, while the connection is still up.
      await ledger.close(Math.max(timeoutMs, 1_000));
      await Promise.all([cache?.close(), connection.close()]);
    },
  };
}

/** The stores' options checked (all of them before anything connects), with their defaults filled in. */
interface ResolvedStoresOptions {
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly batch: boolean;
  readonly keyCache: KeyCacheOptions | false;
  readonly settleDelayMs: number;
  readonly settleSpool: string | undefined;
}

function resolveStoresOptions(options: RedisStoresOptions): ResolvedStoresOptions {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_REDIS_UNKNOWN_OPTION', 'createRedisStores');
  checkOneConnection(options);
  const prefix = options.prefix ?? 'tollgate:';
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    throw new TollgateError(
      'ERR_TG_REDIS_INVALID_PREFIX',
      `prefix must be a string without "{" or "}" (tollgate adds its own hash tags); got ${JSON.stringify(prefix)}`,
    );
  }
  const timeoutMs = options.timeoutMs ?? 500;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new TollgateError(
      'ERR_TG_REDIS_INVALID_TIMEOUT',
      `timeoutMs must be a number of ms >= 0; got ${JSON.stringify(timeoutMs)}`,
    );
  }
  const batch = options.batch ?? true;
  if (typeof batch !== 'boolean') {
    throw new TollgateError('ERR_TG_REDIS_INVALID_BATCH', `batch must be true or false; got ${JSON.stringify(batch)}`);
  }
  if (options.sendCommand !== undefined && typeof options.sendCommand !== 'function') {
    throw new TollgateError(
      'ERR_TG_REDIS_INVALID_SEND_COMMAND',
      'sendCommand must be a function (args: string[]) => Promise<reply>',
    );
  }
  const keyCache = options.keyCache ?? {};
  if (keyCache !== false) checkKeyCacheOptions(keyCache);
  const settleDelayMs = options.settleDelayMs ?? 2;
  if (typeof settleDelayMs !== 'number' || !Number.isFinite(settleDelayMs) || settleDelayMs < 0) {
    throw new TollgateError(
      'ERR_TG_REDIS_INVALID_SETTLE_DELAY',
      `settleDelayMs must be a number of ms >= 0; got ${JSON.stringify(options.settleDelayMs)}`,
    );
  }
  if (options.settleSpool !== undefined && (typeof options.settleSpool !== 'string' || options.settleSpool === '')) {
    throw new TollgateError(
      'ERR_TG_REDIS_INVALID_SETTLE_SPOOL',
      `settleSpool must be a directory path; got ${JSON.stringify(options.settleSpool)}`,
    );
  }
  return { prefix, timeoutMs, batch, keyCache, settleDelayMs, settleSpool: options.settleSpool };
}

/** At most one way to reach Redis; cluster node URLs that are URLs of Redis nodes. */
function checkOneConnection(options: RedisStoresOptions): void {
  const given = (['url', 'cluster', 'client', 'sendCommand'] as const).filter((name) => options[name] !== undefined);
  if (given.length > 1) {
    throw new TollgateError(
      'ERR_TG_REDIS_CONFLICTING_OPTIONS',
      `createRedisStores() takes one of url, cluster, client or sendCommand; got ${given.join(' and ')}`,
    );
  }
  if (options.cluster !== undefined) checkClusterUrls(options.cluster);
}

/** `keyCache`: an object of positive whole `maxEntries` and `maxAgeMs`, each optional. */
function checkKeyCacheOptions(keyCache: KeyCacheOptions): void {
  if (typeof keyCache !== 'object' || keyCache === null)
    throw new TollgateError(
      'ERR_TG_REDIS_INVALID_KEY_CACHE',
      `keyCache must be false or { maxEntries, maxAgeMs }; got ${JSON.stringify(keyCache)}`,
    );
  assertKnownOptions(keyCache, KEY_CACHE_OPTIONS, 'ERR_TG_REDIS_UNKNOWN_OPTION', 'createRedisStores: keyCache');
  for (const name of KEY_CACHE_OPTIONS) {
    const value = keyCache[name];
    if (value !== undefined && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)) {
      throw new TollgateError(
        'ERR_TG_REDIS_INVALID_KEY_CACHE',
        `keyCache.${name} must be a positive integer; got ${JSON.stringify(value)}`,
      );
    }
  }
}

/** The connection the options name: a `sendCommand`, a cluster, a client of the app's, or a client for a URL. */
function openConnection(options: RedisStoresOptions, { timeoutMs, batch }: ResolvedStoresOptions): Connection {
  const connectionOptions: ConnectionOptions = { timeoutMs, batch };
  if (options.sendCommand) return useSendCommand(options.sendCommand, connectionOptions);
  if (options.cluster) return connectCluster(options.cluster, connectionOptions);
  if (options.client) return useClient(options.client, connectionOptions);
  return connectUrl(options.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', connectionOptions);
}

/** The budget ledger: one per slot behind one door on a cluster, else one. */
function reservationLedger(
  connection: Connection,
  { prefix, settleDelayMs, settleSpool }: ResolvedStoresOptions,
  births: ScopeBirths,
): RedisReservationLedger | ShardedReservationLedger {
  const ledgerOptions = {
    settleDelayMs,
    births,
    gate: new RedisRebuildGate(connection, prefix, connection.sharded),
    ...(settleSpool ? { spool: settleSpool } : {}),
  };
  return connection.sharded
    ? new ShardedReservationLedger(connection, prefix, ledgerOptions)
    : new RedisReservationLedger(connection, prefix, ledgerOptions);
}

/** Cluster node URLs: a non-empty array of redis:// or rediss:// URLs. */
function checkClusterUrls(urls: unknown): void {
  if (!Array.isArray(urls) || urls.length === 0) {
    throw new TollgateError(
      'ERR_TG_REDIS_INVALID_CLUSTER',
      `cluster must be a non-empty array of node URLs ("redis://host:port"); got ${JSON.stringify(urls)}`,
    );
  }
  urls.forEach((url, i) => {
    let protocol: string | undefined;
    try {
      protocol = typeof url === 'string' ? new URL(url).protocol : undefined;
    } catch {
      protocol = undefined;
    }
    if (protocol !== 'redis:' && protocol !== 'rediss:') {
      throw new TollgateError(
        'ERR_TG_REDIS_INVALID_CLUSTER',
        `cluster[${i}] must be a redis:// or rediss:// URL; got ${JSON.stringify(url)}`,
      );
    }
  });
}
