// Benchmark: what the guard adds to each request: CPU in-process on memory stores, and Redis commands before and after the answer.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient } from 'redis';
import { driveBlock, startServer } from './lib/child.js';
import { benchKey, CHAT_PATH, chatBody, REDIS_URL } from './lib/fixtures.js';
import { buildChain, KEYS, STEPS } from './lib/guard-chain.js';
import { RedisCommandCounter } from './lib/redis-counter.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtNumber, fmtSigned, median, table } from './lib/stats.js';
import { closeTimedRequests, timedRequest } from './lib/timed-request.js';

/** The guard's own work per request, each piece called directly (no Express around it), in ns; a block, a suspension and a throttle of others are in force. */
async function pieceCosts(iterations: number): Promise<{ piece: string; ns: number }[]> {
  const [{ createMemoryStores }, { createGuard }] = await Promise.all([
    import('@tollgate/core'),
    import('@tollgate/guard'),
  ]);
  const stores = createMemoryStores();
  const guard = createGuard({ stores, alerts: { log: false } });
  await guard.ready;
  await guard.suspend('key:someone-else', 'bench');
  await guard.throttle('tenant:someone-else', { scale: 0.5, durationMs: 3_600_000 });
  await guard.store.putMitigation({ kind: 'block', subject: 'ip:198.51.100.1', reason: 'bench' }, 3_600_000);
  // A thousand bodies sent by two hundred keys: every request a new (key, prompt) pair, as with real traffic, without holding a body per request.
  const identities = Array.from({ length: 200 }, (_, index) => ({
    keyId: `bench-key-${index}`,
    tenantId: `tenant-${index % 10}`,
    tier: 'pro',
    scopes: ['chat'],
    authMethod: 'api_key' as const,
  }));
  const bodies = Array.from({ length: 1_000 }, (_, index) => JSON.parse(chatBody(index)) as unknown);
  const identity = identities[1]!;
  const request = (index: number) => ({
    ip: '203.0.113.5',
    headers: { authorization: 'Bearer x' },
    socket: {},
    body: bodies[index % 1_000],
    tollgate: { identity: identities[Math.floor(index / 1_000) % 200]! },
  });
  const response = { statusCode: 200, on: () => response };
  const next = () => undefined;
  const record = {
    keyId: 'bench-key-1',
    tenantId: 'tenant-1',
    costNanoUsd: 12_000,
    inputTokens: 24,
    outputTokens: 4,
  } as never;
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
      await time('guard.authFailures: the address looked up among the blocks, a finish listener', (i) =>
        middleware(guard.authFailures)(request(i), response, next),
      ),
      await time('guard.suspensions: the key and tenant looked up among the suspensions', (i) =>
        middleware(guard.suspensions)(request(i), response, next),
      ),
      await time(
        "guard.repeatedRequests: the body's fingerprint (JSON + SHA-256) and its count in the memory window counter",
        (i) => middleware(guard.repeatedRequests)(request(i), response, next),
      ),
      await time(
        'guard.onUsage: the record summed for its key and tenant (and one flush every 5,000)',
        (i) => guard.onUsage(record, request(i) as never),
        5_000,
      ),
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
  const { counter, relayUrl } = await RedisCommandCounter.inFrontOf();
  const { createRedisStores } = await import('@tollgate/redis');
  const stores = createRedisStores({
    url: relayUrl,
    prefix: `${context.redisPrefix}guard-trips:${withGuard ? 'guard' : 'plain'}:`,
  });
  // Background work off the per-request windows: the detector flushes when told, the version poll is an hour away (both measured apart).
  const chain = await buildChain(stores, withGuard ? 3 : 0, {
    subscriber: createClient({ url: REDIS_URL }),
    syncInterval: '1h',
    spendAnomaly: { flushInterval: 0 },
  });
  const server: Server = createServer(chain.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${CHAT_PATH}`;
  const headers = (index: number) => ({
    'content-type': 'application/json',
    authorization: `Bearer ${benchKey(index % KEYS)}`,
  });
  try {
    // Warm-up over every key: key-cache misses and script loads are not per-request costs.
    for (let i = 0; i < KEYS + 20; i++) await timedRequest(url, chatBody(i), headers(i));
    await chain.guard?.flush();
    await counter.quiet(50, 1000);
    const trips: Trips = {
      commandsBefore: 0,
      tripsBefore: 0,
      commandsAfter: 0,
      tripsAfter: 0,
      flushCommands: 0,
      flushTrips: 0,
      failures: 0,
    };
    for (let i = 0; i < requests; i++) {
      const trip = await counter.trip(async () => {
        if ((await timedRequest(url, chatBody(1_000 + i), headers(i))).status !== 200) trips.failures++;
      }, 1000);
      trips.commandsBefore += trip.before.length;
      trips.tripsBefore += trip.tripsBefore;
      trips.commandsAfter += trip.after.length;
      trips.tripsAfter += trip.tripsAfter;
    }
    // One flush of the detector after all of them: what a process sends per second, however many requests it served.
    const flush = await counter.trip(async () => chain.guard?.flush(), 1000);
    trips.flushCommands = flush.before.length + flush.after.length;
    trips.flushTrips = flush.tripsBefore + flush.tripsAfter;
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
  // Many short rounds: on a shared machine the load changes within seconds, and the median of many differences holds.
  const rounds = context.quick ? 8 : 24;
  const requests = context.quick ? 2_000 : 4_000;
  // Each chain in a child of its own: a heap and a garbage collector each.
  const children = [
    await startServer({ app: 'guard-chain', options: { guard: false } }),
    await startServer({ app: 'guard-chain', options: { guard: true } }),
  ];
  const block = { requests, concurrency: 32, keys: KEYS, freshPrompts: true };
  try {
    for (const child of children) await driveBlock(child, { ...block, requests: 3_000 });
    const samples: number[][] = children.map(() => []);
    for (let round = 0; round < rounds; round++) {
      // Alternating, so that whatever else the machine does lands on both sides.
      for (const index of round % 2 === 0 ? [0, 1] : [1, 0]) {
        const cost = await driveBlock(children[index]!, block);
        if (cost.non2xx > 0) throw new Error(`chain ${index} answered ${cost.non2xx} non-2xx`);
        samples[index]!.push(cost.cpuUs / cost.requests);
      }
      context.log(`guard cost round ${round + 1}/${rounds} done`);
    }
    const [without, withGuard] = samples as [number[], number[]];
    const medians = [median(without), median(withGuard)];
    const differences = withGuard.map((value, round) => value - without[round]!);
    const total = median(differences);
    const spread = `${fmtNumber(Math.min(...differences), 1)} to ${fmtNumber(Math.max(...differences), 1)} µs over the rounds`;
    const pieces = await pieceCosts(context.quick ? 50_000 : 200_000);
    const piecesTotal = pieces.slice(0, 4).reduce((sum, piece) => sum + piece.ns, 0) / 1000;
    const trips = {
      plain: await countTrips(context, false, context.quick ? 40 : 200),
      guard: await countTrips(context, true, context.quick ? 40 : 200),
    };
    const perRequest = (value: number, count: number) => fmtNumber(value / count, 2);
    const count = context.quick ? 40 : 200;
    const body = [
      `CPU: the recommended chain on memory stores without and with every piece of the guard, each in a child of its own, ` +
        `driven in-process: ${fmtNumber(requests)} requests per case and round, ${rounds} alternating rounds, every request ` +
        `a new prompt from one of ${KEYS} keys in 10 tenants.`,
      '',
      table(
        ['chain', 'CPU per request (median)'],
        [
          [STEPS[0]!, `${fmtNumber(medians[0]!, 1)} µs`],
          [
            `${STEPS[0]!.split(' (')[0]} + ${STEPS.slice(1)
              .map((step) => step.replace(/^\+ /, '').split(' (')[0])
              .join(', ')}`,
            `${fmtNumber(medians[1]!, 1)} µs`,
          ],
        ],
      ),
      '',
      `Median of the per-round differences: ${fmtSigned(total)} (${spread}), too noisy for the target: it rests on each ` +
        'piece timed on its own, called directly after a warm-up:',
      '',
      table(
        ['piece', 'CPU per call'],
        pieces.map((piece) => [piece.piece, `${fmtNumber(piece.ns / 1000, 2)} µs`]),
      ),
      '',
      `The four pieces a request passes through add ${fmtNumber(piecesTotal, 2)} µs of their own work (Express's router ` +
        'steps and one more promise in combineLimits aside).',
      '',
      `Redis: the same chain on Redis stores behind the counting relay (lib/redis-counter.ts), one request at a time, ` +
        `${count} requests after a warm-up, the detector flushed on demand:`,
      '',
      table(
        ['case', 'commands before the answer', 'flights before', 'commands after', 'flights after', 'non-200'],
        [
          [
            'chain',
            perRequest(trips.plain.commandsBefore, count),
            perRequest(trips.plain.tripsBefore, count),
            perRequest(trips.plain.commandsAfter, count),
            perRequest(trips.plain.tripsAfter, count),
            String(trips.plain.failures),
          ],
          [
            'chain + guard (all four pieces)',
            perRequest(trips.guard.commandsBefore, count),
            perRequest(trips.guard.tripsBefore, count),
            perRequest(trips.guard.commandsAfter, count),
            perRequest(trips.guard.tripsAfter, count),
            String(trips.guard.failures),
          ],
        ],
      ),
      '',
      `One detector flush after the ${count} requests sent ${trips.guard.flushCommands} commands in ${trips.guard.flushTrips} flights: one script per key and tenant that had usage since the last flush, whatever the number of requests.`,
    ].join('\n');
    const targets: TargetVerdict[] = [
      {
        target: 'Guard: at most 10 µs of CPU per request on the hot path',
        holds: piecesTotal <= 10,
        figures: `the pieces' own work ${fmtNumber(piecesTotal, 2)} µs (${pieces
          .slice(0, 4)
          .map((piece) => `${piece.piece.split(':')[0]} ${fmtNumber(piece.ns / 1000, 2)}`)
          .join(
            ', ',
          )}); the whole chain with and without them ${total >= 0 ? '+' : ''}${fmtNumber(total, 1)} µs (median; ${spread}: too noisy here to confirm or refute 10 µs)`,
      },
      {
        target: 'Guard: no extra Redis round trip before the answer',
        // Per request, within what a stray background command in a request's window adds on either side.
        holds:
          (trips.guard.tripsBefore - trips.plain.tripsBefore) / count < 0.05 &&
          (trips.guard.commandsBefore - trips.plain.commandsBefore) / count < 0.05 &&
          trips.guard.failures === 0,
        figures: `${perRequest(trips.guard.commandsBefore, count)} commands in ${perRequest(trips.guard.tripsBefore, count)} flights before the answer, as without the guard (${perRequest(trips.plain.commandsBefore, count)} in ${perRequest(trips.plain.tripsBefore, count)})`,
      },
    ];
    return { title: '9. Guard: cost per request on the hot path', body, targets };
  } finally {
    for (const child of children) await child.close();
  }
}
