// A TCP relay in front of the real Redis that a test can stall (hold every byte) and resume (send them in order).
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export const REDIS = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');

/** A TCP relay in front of the real Redis that can hold the client's bytes (a stalled server) and then let them through in order. */
export class StallingRelay {
  #stalled = false;
  readonly #held: (() => void)[] = [];
  readonly #sockets = new Set<net.Socket>();
  readonly #server = net.createServer((client) => {
    const redis = net.connect(Number(REDIS.port || 6379), REDIS.hostname);
    for (const socket of [client, redis]) {
      this.#sockets.add(socket);
      socket
        .on('error', () => undefined)
        .on('close', () => {
          client.destroy();
          redis.destroy();
          this.#sockets.delete(socket);
        });
    }
    client.on('data', (bytes) => (this.#stalled ? this.#held.push(() => redis.write(bytes)) : redis.write(bytes)));
    redis.on('data', (bytes) => client.write(bytes));
  });

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `redis://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  stall(): void {
    this.#stalled = true;
  }

  resume(): void {
    this.#stalled = false;
    for (const send of this.#held.splice(0)) send();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
