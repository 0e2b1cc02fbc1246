// TCP relays in front of Redis: one counts sequential round trips (flights) and commands across all its connections; one
// loses, drops or holds the reply to a command.
import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** Each client connection paired with one of its own to Redis; a subclass relays the bytes. */
abstract class RedisRelay {
  readonly #server: net.Server;
  readonly #open = new Set<net.Socket>();

  constructor(private readonly target: URL) {
    this.#server = net.createServer((app) => this.#pair(app));
  }

  #pair(app: net.Socket): void {
    const redis = net.connect(Number(this.target.port || 6379), this.target.hostname);
    this.#open.add(app).add(redis);
    const teardown = () => {
      app.destroy();
      redis.destroy();
      this.#open.delete(app);
      this.#open.delete(redis);
    };
    for (const socket of [app, redis]) socket.on('close', teardown).on('error', teardown);
    this.relay(app, redis, teardown);
  }

  /** Passes bytes between the client (`app`) and Redis; `teardown` closes both. */
  protected abstract relay(app: net.Socket, redis: net.Socket, teardown: () => void): void;

  /** Starts listening; resolves with the redis:// URL to give clients. */
  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `redis://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const socket of this.#open) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** Counts the commands (RESP arrays) in a stream of client bytes, across chunk boundaries. */
class CommandCounter {
  #pending: Buffer = Buffer.alloc(0);
  /** Names of the commands seen, upper case (EVALSHA, EVAL, ...). */
  readonly names: string[] = [];

  push(bytes: Buffer): void {
    this.#pending = this.#pending.length === 0 ? bytes : Buffer.concat([this.#pending, bytes]);
    let offset = 0;
    for (;;) {
      const used = this.#command(offset);
      if (used === undefined) break;
      offset = used;
    }
    this.#pending = this.#pending.subarray(offset);
  }

  /** Reads one command at `offset`; returns where it ends, or undefined when it is not all there yet. */
  #command(offset: number): number | undefined {
    const buffer = this.#pending;
    const headerEnd = buffer.indexOf('\r\n', offset);
    if (headerEnd < 0 || buffer[offset] !== 0x2a) return undefined;
    const count = Number(buffer.toString('latin1', offset + 1, headerEnd));
    let cursor = headerEnd + 2;
    let name = '';
    for (let i = 0; i < count; i++) {
      const lengthEnd = buffer.indexOf('\r\n', cursor);
      if (lengthEnd < 0) return undefined;
      const length = Number(buffer.toString('latin1', cursor + 1, lengthEnd));
      if (lengthEnd + 2 + length + 2 > buffer.length) return undefined;
      if (i === 0) name = buffer.toString('latin1', lengthEnd + 2, lengthEnd + 2 + length).toUpperCase();
      cursor = lengthEnd + 2 + length + 2;
    }
    this.names.push(name);
    return cursor;
  }
}

/**
 * Counts flights: a connection starts a new flight when it sends after having heard back from
 * Redis (or for the first time). Commands pipelined, or sent concurrently before any reply,
 * share one flight; a command sent only after a reply is a second, sequential one. Pub/sub
 * messages pushed to a subscriber are replies, never flights.
 */
export class RedisFlightRelay extends RedisRelay {
  #flights = 0;
  readonly #commands: string[] = [];

  get flights(): number {
    return this.#flights;
  }

  /** Every command sent through the relay so far, by name, in order (per connection, then interleaved as they arrived). */
  get commands(): readonly string[] {
    return this.#commands;
  }

  protected relay(app: net.Socket, redis: net.Socket): void {
    let waiting = false;
    const counter = new CommandCounter();
    app.on('data', (bytes: Buffer) => {
      if (!waiting) this.#flights += 1;
      waiting = true;
      redis.write(bytes);
      const seen = counter.names.length;
      counter.push(bytes);
      this.#commands.push(...counter.names.slice(seen));
    });
    redis.on('data', (bytes) => {
      waiting = false;
      app.write(bytes);
    });
  }
}

/**
 * What the relay does to the next bytes a client sends:
 * - `cut`: Redis gets them and runs the command; its reply is thrown away and the connection
 *   closed (a Redis killed, or a network that broke, between running a command and answering);
 * - `drop`: Redis never gets them, and the connection is closed;
 * - `hold`: the reply is delivered `holdMs` late, on the same connection (a Redis that stalls).
 */
export type ReplyFault = { kind: 'cut' } | { kind: 'drop' } | { kind: 'hold'; holdMs: number };

export class ReplyFaultRelay extends RedisRelay {
  #fault: ReplyFault | undefined;
  /** What the bytes the fault applies to hold (a command's name): other bytes pass, on any connection. */
  #match = '';
  /** Faults applied so far. */
  applied = 0;

  /**
   * Applies `fault` to the next bytes any client sends (once) that hold `match`: with it, a connection the client
   * opens beside the one under test (a key cache's subscriber still saying hello) does not take the fault instead.
   */
  arm(fault: ReplyFault, match = ''): void {
    this.#fault = fault;
    this.#match = match;
  }

  protected relay(app: net.Socket, redis: net.Socket, teardown: () => void): void {
    /** What happens to the next reply bytes, when not simply passed on. */
    let onReply: ((bytes: Buffer) => void) | undefined;
    app.on('data', (bytes: Buffer) => {
      const fault = this.#fault && bytes.includes(this.#match) ? this.#fault : undefined;
      if (fault) {
        this.#fault = undefined;
        this.applied++;
      }
      if (fault?.kind === 'drop') return teardown();
      if (fault?.kind === 'cut') onReply = () => teardown();
      if (fault?.kind === 'hold') {
        onReply = (reply) => {
          redis.pause();
          setTimeout(() => {
            onReply = undefined;
            app.write(reply);
            redis.resume();
          }, fault.holdMs);
        };
      }
      redis.write(bytes);
    });
    redis.on('data', (bytes: Buffer) => (onReply ? onReply(bytes) : app.write(bytes)));
  }
}
