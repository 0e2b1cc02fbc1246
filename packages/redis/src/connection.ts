// One way to reach Redis for every store: a sendCommand with a deadline that never rejects unhandled.
import { createClient } from 'redis';
import { StoreTimeoutError, withTimeout } from '@tollgate/core';
import type { SubscriberLike } from './key-cache.js';
import type { SendCommand } from './lua.js';

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
  /** Sends one command, rejecting after `timeoutMs`. */
  send(args: string[], operation: string): Promise<unknown>;
  /** A new, unconnected client for pub/sub named `name` (CLIENT LIST), when the connection can make one (not for a bare sendCommand). */
  subscriber?(name: string): SubscriberLike;
  close(): Promise<void>;
}

/**
 * Sends once the first connection is up, unless the caller's deadline passed meanwhile: a command
 * nobody waits for any more must not run late (a late reserve would hold budget nobody settles).
 */
function afterFirstReady(firstReady: Promise<void>, client: RedisClientLike, args: string[], timeoutMs: number, operation: string): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  return firstReady.then(() => {
    if (timeoutMs > 0 && Date.now() >= deadline) throw new StoreTimeoutError(operation, timeoutMs);
    return client.sendCommand(args);
  });
}

/** Backoff that never gives up: the stores must come back by themselves when Redis does. */
function reconnectDelay(retries: number): number {
  return Math.min(2 ** retries * 50, 2000) + Math.floor(Math.random() * 100);
}

/** A client tollgate owns: created from a URL, connected now, closed by `close()`. */
export function connectUrl(url: string, timeoutMs: number): Connection {
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
  let closed = false;
  return {
    send(args, operation) {
      return withTimeout(client.isReady ? client.sendCommand(args) : afterFirstReady(firstReady, client, args, timeoutMs, operation), timeoutMs, operation);
    },
    subscriber: (name) => client.duplicate({ name }) as unknown as SubscriberLike,
    async close() {
      if (closed) return;
      closed = true;
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
export function useClient(client: RedisClientLike, timeoutMs: number): Connection {
  const firstReady = client.isOpen ? Promise.resolve() : client.connect().then(() => undefined, () => undefined);
  const duplicate = client.duplicate;
  return {
    send(args, operation) {
      return withTimeout(client.isReady ? client.sendCommand(args) : afterFirstReady(firstReady, client, args, timeoutMs, operation), timeoutMs, operation);
    },
    ...(typeof duplicate === 'function' ? { subscriber: (name: string) => duplicate.call(client, { name }) as SubscriberLike } : {}),
    async close() {},
  };
}

/** A bare sendCommand (any client, a Cluster router, a test double of the caller's): only deadlines added. */
export function useSendCommand(sendCommand: SendCommand, timeoutMs: number): Connection {
  return {
    send(args, operation) {
      let sent: Promise<unknown>;
      try {
        sent = Promise.resolve(sendCommand(args));
      } catch (error) {
        sent = Promise.reject(error);
      }
      return withTimeout(sent, timeoutMs, operation);
    },
    async close() {},
  };
}
