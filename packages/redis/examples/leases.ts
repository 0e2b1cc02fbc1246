// packages/redis/examples/leases.ts: Redis stores that keep serving through an outage, each process within a slice of every limit.
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { leasedStores } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';

// A relay in front of Redis, so that this example can cut Redis off and bring it back.
const redis = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
let open = true;
const sockets = new Set<net.Socket>();
const relay = net.createServer((client) => {
  if (!open) return void client.destroy();
  const server = net.connect(Number(redis.port || 6379), redis.hostname);
  for (const socket of [client, server]) {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  }
  client.pipe(server).pipe(client);
});
relay.listen(0, '127.0.0.1');
await once(relay, 'listening');
const url = `redis://127.0.0.1:${(relay.address() as AddressInfo).port}`;

const prefix = `${process.env.REDIS_PREFIX ?? 'lease-example:'}${randomUUID()}:`; // a fresh prefix: this run's keys only
const stores = leasedStores(createRedisStores({ url, prefix }), {
  policy: 'lease',
  slice: 0.1, // this process may grant 10% of a limit on its own during an outage
  onOutage: (event) => console.log(`redis ${event.state}`),
});

const limit = { limit: 100, windowMs: 60_000 };
const allowed = async (n: number) => {
  let granted = 0;
  for (let i = 0; i < n; i++) if ((await stores.counter.consume('key:k1', 1, limit)).allowed) granted++;
  return granted;
};
console.log(`redis up: ${await allowed(5)} of 5 allowed`);

open = false; // Redis goes away
for (const socket of sockets) socket.destroy();
console.log(`redis out: ${await allowed(20)} of 20 allowed (slice: 0.1 × 100)`);

open = true; // Redis comes back: the stores find it by themselves
while (stores.lease.down) await new Promise((resolve) => setTimeout(resolve, 100));
await stores.lease.flush(); // spend the slices granted reaches Redis
const after = await stores.counter.consume('key:k1', 1, limit);
console.log(`redis back: allowed ${after.allowed}, answered by Redis again`);

// An example leaves nothing behind in your Redis: the keys under its own fresh prefix go with it.
for (let cursor = '0'; ;) {
  const [next, keys] = (await stores.sendCommand(['SCAN', cursor, 'MATCH', `${stores.prefix}*`, 'COUNT', '1000'])) as [
    string,
    string[],
  ];
  if (keys.length > 0) await stores.sendCommand(['DEL', ...keys]);
  if ((cursor = next) === '0') break;
}
await stores.close();
relay.close();
