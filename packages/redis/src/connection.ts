// One way to reach Redis for every store: a sendCommand with a deadline that never rejects unhandled, store scripts bundled per turn.
import { createClient } from 'redis';
import { StoreTimeoutError, withTimeout } from '@tollgate/core';
import type { SubscriberLike } from './key-cache.js';
import type { SendCommand } from './lua.js';
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

export interface Connection {
  /**
   * Sends one command, rejecting after `timeoutMs`. An EVALSHA of a store script (scripts.ts) is
   * not sent as it is: it joins the turn's bundle (script-batcher.ts), unless batching is off.
   */
  send(args: string[], operation: string): Promise<unknown>;
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
function storeSender(transport: BatchTransport, options: ConnectionOptions, group: 'slot' | 'none'): { send: Connection['send']; flush(): void } {
  const { timeoutMs } = options;
  const batcher = options.batch ? new ScriptBatcher(STORE_BUNDLE, transport, { group }) : undefined;
  function sendNow(args: string[], operation: string): Promise<unknown> {
    const connecting = transport.connecting();
    if (!connecting) return transport.send(args);
    const deadline = Date.now() + timeoutMs;
    return connecting.then(() => {
      if (timeoutMs > 0 && Date.now() >= deadline) throw new StoreTimeoutError(operation, timeoutMs);
      return transport.send(args);
    });
  }
  return {
    send(args, operation) {
      const sent = batcher?.takes(args) ? batcher.add(args, operation, timeoutMs) : sendNow(args, operation);
      return withTimeout(sent, timeoutMs, operation);
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
    send: sender.send,
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
export function useClient(client: RedisClientLike, options: ConnectionOptions): Connection {
  const firstReady = client.isOpen ? Promise.resolve() : client.connect().then(() => undefined, () => undefined);
  const duplicate = client.duplicate;
  return {
    send: storeSender(clientTransport(client, firstReady), options, 'none').send,
    ...(typeof duplicate === 'function' ? { subscriber: (name: string) => duplicate.call(client, { name }) as SubscriberLike } : {}),
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
  return {
    send: storeSender(transport, options, 'slot').send,
    async close() {},
  };
}
