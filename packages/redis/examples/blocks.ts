// packages/redis/examples/blocks.ts: hot limits and budgets taken from Redis a block at a time, two processes' worth of stores on one Redis.
import { blockStores } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = process.env.REDIS_PREFIX ?? 'blocks-example:';
// Two processes' stores; a block goes back with what it did not hand out after 500 ms (10 s by default).
const processes = [1, 2].map(() => blockStores(createRedisStores({ url, prefix }), { maxAgeMs: 500 }));
const [a, b] = processes;

// 1,000 tokens a minute, calls of 2. A block is sized by demand: twice the calls a process saw within maxAgeMs,
// at most share (0.05) of the limit. a's first call is counted in Redis; the second makes the key hot (hotAfter: 2)
// and takes a block of 8 tokens (2 calls seen: 4 calls' worth); the third and fourth come out of it.
const window = { limit: 1_000, windowMs: 60_000 };
for (let i = 0; i < 4; i++) await a!.counter.consume('tokens:k1', 2, window);
console.log(`a holds ${JSON.stringify(a!.blocks.open())}`);
// Redis counts the whole block; what a did not hand out goes back when the block retires.
console.log(`Redis counts ${await b!.counter.peek('tokens:k1', window)} tokens while a holds its block`);
await a!.blocks.retireAll();
console.log(`after a gives its block back: ${await b!.counter.peek('tokens:k1', window)}`);

// A budget of 100,000 nano-USD, requests of 100 settled at 37: each process's blocks sized by its demand, each block
// settled at what its requests spent.
const expiresAt = Date.now() + 3_600_000;
const scopes = [{ key: 'tenant:acme:day', limit: 100_000, expiresAt }];
let spent = 0;
for (let i = 0; i < 8; i++) {
  const stores = processes[i % 2]!;
  const reserved = await stores.ledger.reserve({ id: `request-${i}`, amount: 100, scopes, ttlMs: 60_000 });
  if (reserved.ok) {
    await stores.ledger.settle(`request-${i}`, 37);
    spent += 37;
  }
}
await Promise.all(processes.map((stores) => stores.blocks.retireAll()));
// The ledger settles in batches a few ms apart.
await new Promise((resolve) => setTimeout(resolve, 50));
const [usage] = await a!.ledger.usage(['tenant:acme:day']);
console.log(`spent ${usage!.spent} of ${spent}, reserved ${usage!.reserved}`);

await Promise.all(processes.map((stores) => stores.close()));
