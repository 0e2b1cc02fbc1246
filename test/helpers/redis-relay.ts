// A TCP relay in front of Redis that counts sequential round trips (flights) across all its connections.
import net from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * Counts flights: a connection starts a new flight when it sends after having heard back from
 * Redis (or for the first time). Commands pipelined, or sent concurrently before any reply,
 * share one flight; a command sent only after a reply is a second, sequential one. Pub/sub
 * messages pushed to a subscriber are replies, never flights.
 */
export class RedisFlightRelay {
  #flights = 0;
  readonly #server: net.Server;
  readonly #open = new Set<net.Socket>();

  constructor(private readonly target: URL) {
    this.#server = net.createServer((app) => this.#pair(app));
  }

  get flights(): number {
    return this.#flights;
  }

  #pair(app: net.Socket): void {
    const redis = net.connect(Number(this.target.port || 6379), this.target.hostname);
    this.#open.add(app).add(redis);
    let waiting = false;
    app.on('data', (bytes) => {
      if (!waiting) this.#flights += 1;
      waiting = true;
      redis.write(bytes);
    });
    redis.on('data', (bytes) => {
      waiting = false;
      app.write(bytes);
    });
    const teardown = () => {
      app.destroy();
      redis.destroy();
      this.#open.delete(app);
      this.#open.delete(redis);
    };
    for (const socket of [app, redis]) socket.on('close', teardown).on('error', teardown);
  }

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
