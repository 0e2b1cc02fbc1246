// What one store call costs through the block and lease layers over memory stores, called as the middlewares call them.
// `pnpm exec tsx --conditions=source bench/layer-calls.ts [--rounds 15] [--ops 200000]` prints a Markdown table;
// it writes no file.
import { blockStores, createMemoryStores, leasedStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { callerOf, type Caller } from './lib/layer-caller.js';
import { median, table } from './lib/stats.js';

const HOUR = 3_600_000;
const WINDOW = { limit: 1e12, windowMs: 60_000 };
const SCOPES = ['key:k1', 'tenant:t1', 'global'].map((key) => ({ key, limit: 1e15, expiresAt: Date.now() + HOUR }));

interface Layered {
  name: string;
  stores: TollgateStores;
  caller: Caller;
}

function layers(): Layered[] {
  const open = (name: string, layer: (stores: TollgateStores) => TollgateStores): Layered => {
    const stores = layer(createMemoryStores());
    return { name, stores, caller: callerOf(stores) };
  };
  return [
    open('memory', (stores) => stores),
    open('blocks over memory', (stores) => blockStores(stores)),
    open('leases over memory', (stores) => leasedStores(stores)),
    open('blocks over leases over memory', (stores) => blockStores(leasedStores(stores))),
  ];
}

/** One token window's consume of an estimate and its adjust to the usage (tokenRateLimit's reserve and settle). */
function tokenWindow(caller: Caller): Promise<void> | undefined {
  return caller.consumeThenAdjust('tokens:key:k1', 1_000, WINDOW, -600);
}

let serial = 0;
/** A 3-scope budget reserve and its settle (budgetGuard's). */
function budget(caller: Caller): Promise<void> | undefined {
  const id = `r${++serial}`;
  return caller.reserveThenSettle({ id, amount: 1_000_000, scopes: SCOPES, ttlMs: 60_000 }, 400_000);
}

async function nsPerOp(
  op: (caller: Caller) => Promise<void> | undefined,
  caller: Caller,
  ops: number,
): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const pending = op(caller);
    if (pending) await pending;
  }
  return Number(process.hrtime.bigint() - start) / ops;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string, fallback: number): number => {
    const at = args.indexOf(`--${name}`);
    return at >= 0 ? Number(args[at + 1]) : fallback;
  };
  const rounds = flag('rounds', 15);
  const ops = flag('ops', 200_000);
  const cases = layers();
  const operations = { 'token window: consume + adjust': tokenWindow, 'budget, 3 scopes: reserve + settle': budget };
  const samples = new Map<string, number[]>();
  for (const { caller } of cases) for (const op of Object.values(operations)) await nsPerOp(op, caller, ops / 4);
  for (let round = 0; round < rounds; round++) {
    // Each round starts at another case, so drift over the run hits every case.
    for (let i = 0; i < cases.length; i++) {
      const { name, caller } = cases[(i + round) % cases.length]!;
      for (const [what, op] of Object.entries(operations)) {
        const key = `${name}\u0000${what}`;
        samples.set(key, [...(samples.get(key) ?? []), await nsPerOp(op, caller, ops)]);
      }
    }
  }
  const rows = [...samples].map(([key, values]) => {
    const [name, what] = key.split('\u0000');
    const sorted = [...values].sort((a, b) => a - b);
    return [name!, what!, median(values).toFixed(0), `${sorted[0]!.toFixed(0)}–${sorted.at(-1)!.toFixed(0)}`];
  });
  console.log(
    `Node ${process.version}, ${rounds} rounds of ${ops} operations per case, ns per operation (median, range)\n`,
  );
  console.log(table(['stores', 'operation', 'ns (median)', 'range'], rows));
  await Promise.all(cases.map(({ stores }) => stores.close()));
}

await main();
