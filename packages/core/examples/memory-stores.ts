// packages/core/examples/memory-stores.ts: the in-memory stores on their own: a window counter, then a reservation held and settled.
import { randomUUID } from 'node:crypto';
import { createMemoryStores, periodWindow } from '@tollgate/core';

const stores = createMemoryStores(); // the embedded default
const result = await stores.counter.consume('key:k1', 1, { limit: 60, windowMs: 60_000 });
console.log(`counted: allowed ${result.allowed}, ${result.remaining} left`);

// Not the request id alone: clients choose it (x-request-id), and a repeated id holds nothing more.
const requestId = 'req-1'; // in a middleware: req.tollgate.requestId
const id = `${requestId}:${randomUUID()}`;
const month = periodWindow('month', Date.now());
const hold = await stores.ledger.reserve({
  id,
  amount: 2_000_000, // nano-USD
  scopes: [{ key: `tenant:acme:${month.suffix}`, limit: 100_000_000_000, expiresAt: month.end }],
  ttlMs: 120_000,
});
console.log(`reserved: ${hold.ok ? 'granted' : 'refused'}`);
// ...after the provider call:
const actualCostNanoUsd = 1_250_000;
await stores.ledger.settle(id, actualCostNanoUsd);
const [usage] = await stores.ledger.usage([`tenant:acme:${month.suffix}`]);
console.log(`settled: ${usage?.spent} nano-USD spent, ${usage?.reserved} held`);
await stores.close(); // stops the sweep timer
