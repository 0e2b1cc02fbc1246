// One way to reach Redis (one server or a Cluster) for every store: a sendCommand with a deadline that never rejects unhandled, store scripts bundled per turn.
import { createClient, createCluster } from '@redis/client';
import { StoreTimeoutError } from '@tollgate/core';
import { withTimeout } from '@tollgate/core/store-contracts';
import { firstKeyOf, isForEveryNode } from './hash-slot.js';
import type { SubscriberLike } from './key-cache.js';
import type { LuaScript, SendCommand } from './lua.js';
import { ScriptBatcher, type BatchTransport } from './script-batcher.js';
import { ScriptBundle } from './script-bundle.js';
import { SCRIPTS } from './scripts.js';

/** The part of a node-redis v5 client the stores use (`createClient()` returns one). */
export interface RedisClientLike {
  sendCommand(args: string[]): Promise<unknown>;
  readonly isOpen: boolean;
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  on(event: 'error' | 'ready', listener: (...args: unknown[]) => void): unknown;
  /** node-redis: a new client with the same options (used for the key-change subscription). */
  duplicate?(overrides?: { name?: string }): unknown;
}

/** A node of a cluster, as node-redis lists it (`cluster.masters`). */
export interface ClusterNodeLike {
  readonly host: string;
  readonly port: number;
}

/** The part of a node-redis v5 cluster client the stores use (`createCluster()` returns one). */
export interface RedisClusterLike {
  /** Routes `args` to the master of `firstKey`'s slot (any node without a key), following MOVED and ASK. */
  sendCommand(firstKey: string | undefined, isReadonly: boolean | undefined, args: string[]): Promise<unknown>;
  readonly isOpen: boolean;
  readonly masters: readonly ClusterNodeLike[];
  /** The client of one node (for commands every master must hear, and the key-change subscription). */
  nodeClient(node: ClusterNodeLike): RedisClientLike | Promise<RedisClientLike>;
  connect(): Promise<unknown>;
  on(event: 'error', listener: (...args: unknown[]) => void): unknown;
}

/** A cluster client, told apart from a one-server client by what only a cluster has. */
function isClusterClient(client: RedisClientLike | RedisClusterLike): client is RedisClusterLike {
  return typeof (client as Partial<RedisClusterLike>).nodeClient === 'function' && 'masters' in client;
}

export interface Connection {
  /**
   * True on Redis Cluster: keys spread over shards by their hash tag, and no script may touch two
   * slots, so stores keep what one operation changes in one slot (see hash-slot.ts).
   */
  readonly sharded: boolean;
  /**
   * Sends one command, rejecting after `timeoutMs`. An EVALSHA of a store script (scripts.ts) is
   * not sent as it is: it joins the turn's bundle (script-batcher.ts), unless batching is off.
   */
  send(args: string[], operation: string): Promise<unknown>;
  /**
   * Runs a store script (scripts.ts) with the same deadline: in the turn's bundle, queued as it is
   * (no EVALSHA command built for it), or by its own EVALSHA when batching is off.
   */
  run(
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number)[],
    operation: string,
  ): Promise<unknown>;
  /** A new, unconnected client for pub/sub named `name` (CLIENT LIST), when the connection can make one (not for a bare sendCommand). */
  subscriber?(name: string): SubscriberLike;
  close(): Promise<void>;
}

export interface ConnectionOptions {
  timeoutMs: number;
  /** Bundle the store script calls of each turn (see ScriptBatcher); false sends each on its own. */
  batch: boolean;
}

/** Every store script, as one bundle; built once, from scripts.ts. */
const STORE_BUNDLE = new ScriptBundle(SCRIPTS);

/**
 * Deadlines (and batching) over a transport. A command sent while the first connect is under way
 * waits for it, unless the caller's deadline passed meanwhile: a command nobody waits for any more
 * must not run late (a late reserve would hold budget nobody settles).
 */
function storeSender(
  transport: BatchTransport,
  options: ConnectionOptions,
  group: 'slot' | 'none',
): Pick<Connection, 'send' | 'run'> & { flush(): void } {
  const { timeoutMs } = options;
  // Bundled calls carry their deadline in the batcher; everything else gets it here.
  const batcher = options.batch ? new ScriptBatcher(STORE_BUNDLE, transport, { group, timeoutMs }) : undefined;
  function sendNow(args: string[], operation: string): Promise<unknown> {
    const connecting = transport.connecting();
    if (!connecting) return transport.send(args);
    const deadline = Date.now() + timeoutMs;
    return connecting.then(() => {
      if (timeoutMs > 0 && Date.now() >= deadline) throw new StoreTimeoutError(operation, timeoutMs);
      return transport.send(args);
    });
  }
  function send(args: string[], operation: string): Promise<unknown> {
    if (batcher?.takes(args)) return batcher.add(args, operation);
    return withTimeout(sendNow(args, operation), timeoutMs, operation);
  }
  return {
    send,
    run(script, keys, args, operation) {
      const position = batcher?.positionOf(script);
      if (position !== undefined) return batcher!.queue(position, keys, args, operation);
      return script.run((command) => send(command, operation), keys, args);
    },
    flush: () => batcher?.flush(),
  };
}

/** A node-redis client as a transport: commands wait for its first connect, never for a reconnect. */
function clientTransport(client: RedisClientLike, firstReady: Promise<void>): BatchTransport {
  return {
    send: (args) => client.sendCommand(args),
    connecting: () => (client.isReady ? undefined : firstReady),
  };
}

/** Backoff that never gives up: the stores must come back by themselves when Redis does. */
function reconnectDelay(retries: number): number {
  return Math.min(2 ** retries * 50, 2000) + Math.floor(Math.random() * 100);
}

/** A client tollgate owns: created from a URL, connected now, closed by `close()`. */
export function connectUrl(url: string, options: ConnectionOptions): Connection {
  const { timeoutMs } = options;
  const client = createClient({
    url,
    // A command sent while Redis is away fails at once instead of waiting in a queue and running
    // long after its caller gave up (a late reserve would hold budget nobody settles).
    disableOfflineQueue: true,
    socket: { reconnectStrategy: reconnectDelay, connectTimeout: Math.max(timeoutMs, 1000) },
  });
  // node-redis emits 'error' on every failed (re)connect; without a listener that would crash the process.
  client.on('error', () => undefined);
  // The first connect may take a while; callers before it wait for it, within their own deadline.
  const firstReady = client.connect().then(
    () => undefined,
    () => undefined,
  );
  const sender = storeSender(clientTransport(client, firstReady), options, 'none');
  let closed = false;
  return {
    sharded: false,
    send: sender.send,
    run: sender.run,
    subscriber: (name) => client.duplicate({ name }) as unknown as SubscriberLike,
    async close() {
      if (closed) return;
      closed = true;
      // Calls made in this turn go out before the client closes, so their replies can still arrive.
      sender.flush();
      if (!client.isOpen) return;
      if (!client.isReady) {
        // Still (re)connecting: nothing to drain, and a graceful close would wait for a server that is not there.
        client.destroy();
        return;
      }
      // Let replies in flight arrive, but never wait on a stuck server for longer than one deadline.
      await withTimeout(client.close(), Math.max(timeoutMs, 100), 'close').catch(() => client.destroy());
    },
  };
}

/** A client the caller owns: used as it is, connected if it is not yet, never closed here. */
export function useClient(client: RedisClientLike | RedisClusterLike, options: ConnectionOptions): Connection {
  if (isClusterClient(client)) return useCluster(client, options);
  const firstReady = client.isOpen
    ? Promise.resolve()
    : client.connect().then(
        () => undefined,
        () => undefined,
      );
  const duplicate = client.duplicate;
  const { send, run } = storeSender(clientTransport(client, firstReady), options, 'none');
  return {
    sharded: false,
    send,
    run,
    ...(typeof duplicate === 'function'
      ? { subscriber: (name: string) => duplicate.call(client, { name }) as SubscriberLike }
      : {}),
    async close() {},
  };
}

/**
 * A bare sendCommand (any client, a Cluster router, a test double of the caller's): deadlines
 * added, and one bundle per Cluster hash slot, since it may route each command by its first key.
 */
export function useSendCommand(sendCommand: SendCommand, options: ConnectionOptions): Connection {
  const transport: BatchTransport = {
    send(args) {
      try {
        return Promise.resolve(sendCommand(args));
      } catch (error) {
        return Promise.reject(error);
      }
    },
    connecting: () => undefined,
  };
  const { send, run } = storeSender(transport, options, 'slot');
  return {
    // Routed by key or not, all of a store's keys keep one slot each here (the layout of one server).
    sharded: false,
    send,
    run,
    async close() {},
  };
}

/**
 * A cluster as a transport: each command goes to the master of its first key's slot (each slot's
 * script bundle to the node that holds the slot), SCRIPT LOAD to every master. Commands wait for
 * the first connect attempt; until one succeeded (it knows the slots), they fail at once.
 */
function clusterTransport(
  cluster: RedisClusterLike,
  firstAttempt: Promise<void>,
  connected: () => boolean,
): BatchTransport {
  let attempted = false;
  void firstAttempt.then(() => (attempted = true));
  return {
    async send(args) {
      if (!connected() || !cluster.isOpen)
        throw new Error('the Redis Cluster is not connected (none of its nodes answered yet)');
      if (isForEveryNode(args)) {
        const replies = await Promise.all(
          cluster.masters.map(async (node) => (await cluster.nodeClient(node)).sendCommand(args)),
        );
        return replies[0];
      }
      return cluster.sendCommand(firstKeyOf(args), false, args);
    },
    connecting: () => (attempted ? undefined : firstAttempt),
  };
}

/**
 * Key changes on a cluster: a PUBLISH (in a key script, on whichever node holds the keys) reaches
 * every node over the cluster bus, so a plain connection to one master hears them all. It is made
 * from that node's client once the cluster is open, so it has the cluster's credentials and TLS.
 */
class NodeSubscriber implements SubscriberLike {
  readonly #listeners: [Parameters<SubscriberLike['on']>[0], (...args: unknown[]) => void][] = [];
  #client: SubscriberLike | undefined;
  #closed = false;

  constructor(
    private readonly cluster: RedisClusterLike,
    private readonly opened: Promise<void>,
    private readonly name: string,
  ) {}

  get isReady(): boolean {
    return this.#client?.isReady ?? false;
  }

  on(event: Parameters<SubscriberLike['on']>[0], listener: (...args: unknown[]) => void): this {
    this.#listeners.push([event, listener]);
    this.#client?.on(event, listener);
    return this;
  }

  async connect(): Promise<unknown> {
    await this.opened;
    const [node] = this.cluster.masters;
    if (this.#closed || !node) throw new Error('the Redis Cluster has no node to subscribe on');
    const nodeClient = await this.cluster.nodeClient(node);
    if (this.#closed || typeof nodeClient.duplicate !== 'function')
      throw new Error('the Redis Cluster node client cannot be duplicated');
    const client = nodeClient.duplicate({ name: this.name }) as SubscriberLike;
    for (const [event, listener] of this.#listeners) client.on(event, listener);
    this.#client = client;
    return client.connect();
  }

  subscribe(channel: string, listener: (message: string) => void): Promise<unknown> {
    if (!this.#client) return Promise.reject(new Error('not connected'));
    return this.#client.subscribe(channel, listener);
  }

  async close(): Promise<unknown> {
    this.#closed = true;
    return this.#client?.close();
  }

  destroy(): void {
    this.#closed = true;
    this.#client?.destroy();
  }
}

/** Runs `connect` until it succeeds (with the same backoff as a client's reconnects) or `stopped()` says to give up. */
function connectUntilOpen(
  connect: () => Promise<unknown>,
  stopped: () => boolean,
): { firstAttempt: Promise<void>; opened: Promise<void> } {
  let firstAttempt!: Promise<void>;
  const opened = (async () => {
    for (let attempt = 0; ; attempt++) {
      const trying = connect();
      if (attempt === 0)
        firstAttempt = trying.then(
          () => undefined,
          () => undefined,
        );
      try {
        await trying;
        return;
      } catch (error) {
        if (stopped()) throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, reconnectDelay(attempt)).unref());
      if (stopped()) throw new Error('closed');
    }
  })();
  // Awaited by the key-change subscriber only; a cluster that never opens is not an unhandled rejection.
  opened.catch(() => undefined);
  return { firstAttempt, opened };
}

/** Credentials and TLS of the first URL, for the nodes the cluster finds by itself (node-redis gives them only `defaults`). */
function clusterDefaults(url: string): { username?: string; password?: string; socket?: { tls: true } } {
  const parsed = new URL(url);
  return {
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { socket: { tls: true } } : {}),
  };
}

/** A Redis Cluster tollgate owns: created from the URLs of some of its nodes, connected now (retried until it answers), closed by `close()`. */
export function connectCluster(urls: readonly string[], options: ConnectionOptions): Connection {
  const { timeoutMs } = options;
  const { socket: tls, ...credentials } = clusterDefaults(urls[0]!);
  const cluster = createCluster({
    rootNodes: urls.map((url) => ({ url })),
    defaults: {
      ...credentials,
      // As for one server: a command to a node that is away fails at once instead of running late.
      disableOfflineQueue: true,
      socket: { ...tls, reconnectStrategy: reconnectDelay, connectTimeout: Math.max(timeoutMs, 1000) },
    },
  });
  // node-redis emits 'error' when a node's connection fails; without a listener that would crash the process.
  cluster.on('error', () => undefined);
  let closed = false;
  let connected = false;
  const { firstAttempt, opened } = connectUntilOpen(
    async () => {
      await cluster.connect();
      connected = true;
    },
    () => closed,
  );
  // A connect that succeeds after close() (it was under way) is not left open.
  opened.then(
    () => (closed ? cluster.destroy() : undefined),
    () => undefined,
  );
  const sender = storeSender(
    clusterTransport(cluster, firstAttempt, () => connected),
    options,
    'slot',
  );
  return {
    sharded: true,
    send: sender.send,
    run: sender.run,
    subscriber: (name) => new NodeSubscriber(cluster, opened, name),
    async close() {
      if (closed) return;
      closed = true;
      sender.flush();
      if (!cluster.isOpen) return;
      await withTimeout(cluster.close(), Math.max(timeoutMs, 100), 'close').catch(() => cluster.destroy());
    },
  };
}

/** A cluster client the caller owns: connected if it is not open yet, never closed here. */
function useCluster(cluster: RedisClusterLike, options: ConnectionOptions): Connection {
  let connected = cluster.isOpen;
  const opened = connected
    ? Promise.resolve()
    : cluster.connect().then(() => {
        connected = true;
      });
  opened.catch(() => undefined);
  const firstAttempt = opened.catch(() => undefined);
  const { send, run } = storeSender(
    clusterTransport(cluster, firstAttempt, () => connected),
    options,
    'slot',
  );
  return {
    sharded: true,
    send,
    run,
    subscriber: (name) => new NodeSubscriber(cluster, opened, name),
    async close() {},
  };
}
