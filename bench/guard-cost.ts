// Benchmark: what the guard adds to each request: CPU in-process on memory stores, and Redis commands before and after the answer.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type RequestHandler } from 'express';
import { createClient } from 'redis';
import type { ApiKeyRecord, TollgateStores } from '@tollgate/core';
import type { Guard } from '@tollgate/guard';
import { answerAtOnce } from './lib/app-base.js';
import { benchKey, CHAT_PATH, REDIS_URL, sha256Hex } from './lib/fixtures.js';
import { inject } from './lib/inject.js';
import { RedisCommandCounter } from './lib/redis-counter.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtNumber, median, table } from './lib/stats.js';
import { closeTimedRequests, timedRequest } from './lib/timed-request.js';

const KEYS = 100;
const HUGE = { requests: 1_000_000_000, tokens: 1_000_000_000_000, budget: { usd: 1_000_000, period: 'day' as const } };

/** What each row mounts on top of the chain (the guard's pieces in the order its README gives). */
const STEPS = [
  'the chain (apiKeyAuth, meter, combineLimits(tieredRateLimit, tokenRateLimit, budgetGuard))',
  '+ guard.authFailures (before auth) and guard.suspensions (after auth)',
  '+ guard.repeatedRequests inside combineLimits',
  '+ guard.onUsage on the meter (spend-anomaly detector, flushed every second)',
];

function keyRecords(): ApiKeyRecord[] {
  const createdAt = new Date().toISOString();
  return Array.from({ length: KEYS }, (_, index) => ({ id: `bench-key-${index}`, sha256: sha256Hex(benchKey(index)), tenantId: `tenant-${index % 10}`, tier: 'pro', scopes: ['chat'], createdAt }));
}

/** Every request a different prompt (the repeat check must count, never refuse), rotating over the keys. */
function chatBody(index: number): string {
  return JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a terse assistant.' }, { role: 'user', content: `Say hello in one short sentence, #${index}.` }], max_tokens: 64 });
}

interface Chain {
  app: Express;
  guard: Guard | undefined;
  close(): Promise<void>;
}

/** The recommended chain on `stores`, with the first `guardSteps` pieces of the guard mounted. */
async function buildChain(stores: TollgateStores, guardSteps: number, guardOptions: Record<string, unknown> = {}): Promise<Chain> {
  const [{ apiKeyAuth }, { combineLimits, tieredRateLimit, tokenRateLimit }, { meter }, { budgetGuard }, { createGuard }] = await Promise.all([
    import('@tollgate/auth'),
    import('@tollgate/ratelimit'),
    import('@tollgate/metering'),
    import('@tollgate/budget'),
    import('@tollgate/guard'),
  ]);
  for (const record of keyRecords()) await stores.keys.put(record);
  const guard = guardSteps > 0 ? createGuard({ stores, alerts: { log: false }, ...guardOptions }) : undefined;
  if (guard) await guard.ready;
  const limits: RequestHandler[] = [
    tieredRateLimit({ stores, by: 'key', tiers: { pro: HUGE.requests }, defaultTier: 'pro', prefix: 'bench-guard:rl:' }),
    tokenRateLimit({ stores, by: 'key', tiers: { pro: HUGE.tokens }, defaultTier: 'pro', prefix: 'bench-guard:tokens:' }),
    budgetGuard({ ledger: stores.ledger, keys: { '*': HUGE.budget }, tenants: { '*': HUGE.budget }, global: HUGE.budget, log: false }),
  ];
  const app = express();
  app.disable('x-powered-by');
  const chain: RequestHandler[] = [];
  if (guard && guardSteps >= 1) chain.push(guard.authFailures as RequestHandler);
  chain.push(apiKeyAuth({ keys: stores.keys }));
  if (guard && guardSteps >= 1) chain.push(guard.suspensions as RequestHandler);
  chain.push(express.json({ limit: '2mb' }));
  chain.push(meter({ api: 'openai.chat', ...(guard && guardSteps >= 3 ? { onUsage: guard.onUsage } : {}) }));
  chain.push(combineLimits(...(guard && guardSteps >= 2 ? [guard.repeatedRequests as RequestHandler] : []), ...limits));
  app.post(CHAT_PATH, ...chain, answerAtOnce);
  return { app, guard, close: async () => guard?.close() };
}

/** Sends `requests` requests through `app` in-process, `concurrency` at a time; resolves with the CPU µs per request and the statuses. */
async function driveCpu(app: Express, requests: number, offset: number): Promise<{ cpuUs: number; statuses: Record<string, number> }> {
  const statuses: Record<string, number> = {};
  let sent = 0;
  const started = process.cpuUsage();
  const worker = async () => {
    while (sent < requests) {
      const index = offset + sent++;
      const status = await inject(app, { method: 'POST', url: CHAT_PATH, headers: { 'content-type': 'application/json', authorization: `Bearer ${benchKey(index % KEYS)}` }, body: Buffer.from(chatBody(index)) });
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  const cpu = process.cpuUsage(started);
  return { cpuUs: (cpu.user + cpu.system) / requests, statuses };
}

/** Waits until the relay has seen nothing for `quietMs`. */
async function quiesce(counter: RedisCommandCounter, quietMs: number): Promise<void> {
  for (let waited = 0; waited < 1000; waited += quietMs) {
    const last = counter.commands.at(-1)?.at ?? 0;
    if (performance.now() - last >= quietMs) return;
    await new Promise((resolve) => setTimeout(resolve, quietMs));
  }
}

/** The guard's own work per request, each piece called directly (no Express around it), in ns; a block, a suspension and a throttle of others are in force. */
async function pieceCosts(iterations: number): Promise<{ piece: string; ns: number }[]> {
  const [{ createMemoryStores }, { createGuard }] = await Promise.all([import('@tollgate/core'), import('@tollgate/guard')]);
  const stores = createMemoryStores();
  const guard = createGuard({ stores, alerts: { log: false } });
  await guard.ready;
  await guard.suspend('key:someone-else', 'bench');
  await guard.throttle('tenant:someone-else', { scale: 0.5, durationMs: 3_600_000 });
  await guard.store.putMitigation({ kind: 'block', subject: 'ip:198.51.100.1', reason: 'bench' }, 3_600_000);
  const identity = { keyId: 'bench-key-1', tenantId: 'tenant-1', tier: 'pro', scopes: ['chat'], authMethod: 'api_key' as const };
  const bodies = Array.from({ length: iterations }, (_, index) => JSON.parse(chatBody(index)) as unknown);
  const request = (index: number) => ({ ip: '203.0.113.5', headers: { authorization: 'Bearer x' }, socket: {}, body: bodies[index], tollgate: { identity } });
  const response = { statusCode: 200, on: () => response };
  const next = () => undefined;
  const record = { keyId: 'bench-key-1', tenantId: 'tenant-1', costNanoUsd: 12_000, inputTokens: 24, outputTokens: 4 } as never;
  const time = async (piece: string, run: (index: number) => unknown, flushEvery = 0) => {
    for (let i = 0; i < Math.min(2_000, iterations); i++) await run(i);
    const started = process.cpuUsage();
    for (let i = 0; i < iterations; i++) {
      const result = run(i);
      if (result instanceof Promise) await result;
      if (flushEvery > 0 && i % flushEvery === flushEvery - 1) await guard.flush();
    }
    const cpu = process.cpuUsage(started);
    return { piece, ns: ((cpu.user + cpu.system) * 1000) / iterations };
  };
  const middleware = (handler: unknown) => handler as (req: unknown, res: unknown, next: () => void) => unknown;
  try {
    return [
      await time('guard.authFailures: the address looked up among the blocks, a finish listener', (i) => middleware(guard.authFailures)(request(i), response, next)),
      await time('guard.suspensions: the key and tenant looked up among the suspensions', (i) => middleware(guard.suspensions)(request(i), response, next)),
      await time('guard.repeatedRequests: the body\'s fingerprint (JSON + SHA-256) and its count in the memory window counter', (i) => middleware(guard.repeatedRequests)(request(i), response, next)),
      await time('guard.onUsage: the record summed for its key and tenant (and one flush every 5,000)', (i) => guard.onUsage(record, request(i) as never), 5_000),
      await time('guard.limitScale: what a rate limiter would ask per request', () => guard.limitScale(identity)),
    ];
  } finally {
    await guard.close();
    await stores.close();
  }
}

interface Trips {
  commandsBefore: number;
  tripsBefore: number;
  commandsAfter: number;
  tripsAfter: number;
  flushCommands: number;
  flushTrips: number;
  failures: number;
}

/** One request at a time through the chain on Redis behind the counting relay: commands and flights before and after each answer. */
async function countTrips(context: BenchContext, withGuard: boolean, requests: number): Promise<Trips> {
  const target = new URL(REDIS_URL);
  const counter = new RedisCommandCounter({ host: target.hostname, port: Number(target.port || 6379) });
  const relayUrl = await counter.start();
  const { createRedisStores } = await import('@tollgate/redis');
  const stores = createRedisStores({ url: relayUrl, prefix: `${context.redisPrefix}guard-trips:${withGuard ? 'guard' : 'plain'}:` });
  // Background work off the per-request windows: the detector flushes when told, the version poll is an hour away (both measured apart).
  const chain = await buildChain(stores, withGuard ? 3 : 0, { subscriber: createClient({ url: REDIS_URL }), syncInterval: '1h', spendAnomaly: { flushInterval: 0 } });
  const server: Server = createServer(chain.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${CHAT_PATH}`;
  const headers = (index: number) => ({ 'content-type': 'application/json', authorization: `Bearer ${benchKey(index % KEYS)}` });
  try {
    // Warm-up over every key: key-cache misses and script loads are not per-request costs.
    for (let i = 0; i < KEYS + 20; i++) await timedRequest(url, chatBody(i), headers(i));
    await chain.guard?.flush();
    await quiesce(counter, 50);
    const trips: Trips = { commandsBefore: 0, tripsBefore: 0, commandsAfter: 0, tripsAfter: 0, flushCommands: 0, flushTrips: 0, failures: 0 };
    for (let i = 0; i < requests; i++) {
      const commands = counter.commands.length;
      const flights = counter.roundTrips;
      const response = await timedRequest(url, chatBody(1_000 + i), headers(i));
      if (response.status !== 200) trips.failures++;
      const answeredCommands = counter.commands.length;
      const answeredFlights = counter.roundTrips;
      await quiesce(counter, 20);
      trips.commandsBefore += answeredCommands - commands;
      trips.tripsBefore += answeredFlights - flights;
      trips.commandsAfter += counter.commands.length - answeredCommands;
      trips.tripsAfter += counter.roundTrips - answeredFlights;
    }
    // One flush of the detector after all of them: what a process sends per second, however many requests it served.
    const commands = counter.commands.length;
    const flights = counter.roundTrips;
    await chain.guard?.flush();
    await quiesce(counter, 20);
    trips.flushCommands = counter.commands.length - commands;
    trips.flushTrips = counter.roundTrips - flights;
    return trips;
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await closeTimedRequests();
    await chain.close();
    await stores.close();
    await counter.close();
  }
}

export async function runGuardCostBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 4 : 8;
  const requests = context.quick ? 3_000 : 10_000;
  const { createMemoryStores } = await import('@tollgate/core');
  const chains: Chain[] = [];
  for (const steps of [0, STEPS.length - 1]) {
    const stores = createMemoryStores();
    const chain = await buildChain(stores, steps);
    // The guard's maps hold something, as during an attack: lookups take their real path.
    if (chain.guard) {
      await chain.guard.suspend('key:someone-else', 'bench');
      await chain.guard.throttle('tenant:someone-else', { scale: 0.5, durationMs: 3_600_000 });
    }
    chains.push({ ...chain, close: async () => (await chain.close(), await stores.close()) });
  }
  try {
    for (const chain of chains) await driveCpu(chain.app, 2_000, 0);
    const samples: number[][] = chains.map(() => []);
    let offset = 10_000;
    for (let round = 0; round < rounds; round++) {
      // A B B A: what runs first or after the other's garbage changes every round, and cancels out.
      for (const index of [0, 1, 1, 0]) {
        const { cpuUs, statuses } = await driveCpu(chains[index]!.app, requests / 2, offset);
        offset += requests / 2;
        if (Object.keys(statuses).some((status) => status !== '200')) throw new Error(`chain ${index} answered ${JSON.stringify(statuses)}`);
        samples[index]!.push(cpuUs);
      }
      context.log(`guard cost round ${round + 1}/${rounds} done`);
    }
    const perRound = (index: number) => Array.from({ length: rounds }, (_, round) => (samples[index]![2 * round]! + samples[index]![2 * round + 1]!) / 2);
    const [without, withGuard] = [perRound(0), perRound(1)];
    const medians = [median(without), median(withGuard)];
    const differences = withGuard.map((value, round) => value - without[round]!);
    const total = median(differences);
    const spread = `${fmtNumber(Math.min(...differences), 1)} to ${fmtNumber(Math.max(...differences), 1)} µs over the rounds`;
    const pieces = await pieceCosts(context.quick ? 50_000 : 200_000);
    const piecesTotal = pieces.slice(0, 4).reduce((sum, piece) => sum + piece.ns, 0) / 1000;
    const trips = { plain: await countTrips(context, false, context.quick ? 40 : 200), guard: await countTrips(context, true, context.quick ? 40 : 200) };
    const perRequest = (value: number, count: number) => fmtNumber(value / count, 2);
    const count = context.quick ? 40 : 200;
    const body = [
      `CPU: the recommended chain on createMemoryStores() driven in-process (Node's own request and response objects, no sockets, 32 in flight), without and with every piece of the guard, ` +
        `${fmtNumber(requests)} requests per case and round in two halves, ${rounds} rounds in A B B A order, each request a different prompt from one of ${KEYS} keys in 10 tenants. ` +
        'CPU is user + system of the process per request; the guard holds a suspension and a throttle of other subjects, so its lookups take their real path.',
      '',
      table(['chain', 'CPU per request (median)'], [[STEPS[0]!, `${fmtNumber(medians[0]!, 1)} µs`], [`${STEPS[0]!.split(' (')[0]} + ${STEPS.slice(1).map((step) => step.replace(/^\+ /, '').split(' (')[0]).join(', ')}`, `${fmtNumber(medians[1]!, 1)} µs`]]),
      '',
      `Median of the per-round differences: ${total >= 0 ? '+' : ''}${fmtNumber(total, 1)} µs (${spread}). Differences of a few µs between whole chains of ~${fmtNumber(medians[0]!, 0)} µs are near the noise of garbage collection, so each piece is also timed on its own: called directly, ` +
        'with a request and response object made for it (no Express router around it), after a warm-up:',
      '',
      table(['piece', 'CPU per call'], pieces.map((piece) => [piece.piece, `${fmtNumber(piece.ns / 1000, 2)} µs`])),
      '',
      `The four pieces a request passes through add ${fmtNumber(piecesTotal, 2)} µs of their own work; each \`app.use\` layer adds Express's router step on top (about 0.3-1 µs).`,
      '',
      `Redis: the same chain on createRedisStores() behind a relay that counts commands and flights (lib/redis-counter.ts), one request at a time, ${count} requests after a warm-up; ` +
        'the guard with its detector flushed on demand (a process flushes once a second) and its version poll out of the way (it sends one GET per process per second).',
      '',
      table(
        ['case', 'commands before the answer', 'flights before', 'commands after', 'flights after', 'non-200'],
        [
          ['chain', perRequest(trips.plain.commandsBefore, count), perRequest(trips.plain.tripsBefore, count), perRequest(trips.plain.commandsAfter, count), perRequest(trips.plain.tripsAfter, count), String(trips.plain.failures)],
          ['chain + guard (all four pieces)', perRequest(trips.guard.commandsBefore, count), perRequest(trips.guard.tripsBefore, count), perRequest(trips.guard.commandsAfter, count), perRequest(trips.guard.tripsAfter, count), String(trips.guard.failures)],
        ],
      ),
      '',
      `One detector flush after the ${count} requests sent ${trips.guard.flushCommands} commands in ${trips.guard.flushTrips} flights: one script per key and tenant that had usage since the last flush, whatever the number of requests.`,
    ].join('\n');
    const targets: TargetVerdict[] = [
      {
        target: 'Guard: at most 10 µs of CPU per request on the hot path',
        holds: piecesTotal <= 10,
        figures: `the pieces' own work ${fmtNumber(piecesTotal, 2)} µs (${pieces.slice(0, 4).map((piece) => `${piece.piece.split(':')[0]} ${fmtNumber(piece.ns / 1000, 2)}`).join(', ')}); whole chain with and without them ${total >= 0 ? '+' : ''}${fmtNumber(total, 1)} µs (${spread}: within the noise)`,
      },
      {
        target: 'Guard: no extra Redis round trip before the answer',
        holds: trips.guard.tripsBefore === trips.plain.tripsBefore && trips.guard.commandsBefore === trips.plain.commandsBefore && trips.guard.failures === 0,
        figures: `${perRequest(trips.guard.commandsBefore, count)} commands in ${perRequest(trips.guard.tripsBefore, count)} flights before the answer, as without the guard (${perRequest(trips.plain.commandsBefore, count)} in ${perRequest(trips.plain.tripsBefore, count)})`,
      },
    ];
    return { title: '9. Guard: cost per request on the hot path', body, targets };
  } finally {
    for (const chain of chains) await chain.close();
  }
}
