// Benchmark: a request that touches 8 limit and budget scopes against one that touches 3: Redis round trips before the answer, and CPU per request.
import { startServer } from './lib/child.js';
import { authHeaders, benchKey, benchKeyEntry, CHAT_BODY, CHAT_PATH, REDIS_URL } from './lib/fixtures.js';
import { inject } from './lib/inject.js';
import { measurePairedRequests } from './lib/paired-requests.js';
import { countRoundTrips, countsTable, type CaseCount } from './round-trips.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtBytes, fmtNumber, median, table, withQuartiles } from './lib/stats.js';

const HUGE_REQUESTS = 1_000_000_000;
const HUGE_TOKENS = 1_000_000_000_000;
const HUGE_USD = 1_000_000;

/** How many scopes a request of each case touches, and what they are (the config below makes exactly these). */
export const SCOPE_CASES = {
  3: 'tenant requests/min, tenant tokens/min, tenant budget (month)',
  8:
    'tenant requests/min and /day, tenant tokens/min, requests/min of the key (`perKey`), tenant budgets per day and ' +
    'per month (a list), the end user budget (`userBudget`), the feature budget',
} as const;

type ScopeCount = keyof typeof SCOPE_CASES;

/**
 * The proxy config of a case: one pro tenant with one key (its user and feature set), every limit and budget far above
 * the load, so that every request is counted in each scope and none is refused.
 */
export function scopeConfig(scopes: ScopeCount): Record<string, unknown> {
  const key = benchKeyEntry();
  const month = { usd: HUGE_USD, period: 'month' };
  if (scopes === 3)
    return {
      tiers: { pro: { requestsPerMinute: HUGE_REQUESTS, tokensPerMinute: HUGE_TOKENS, models: ['*'] } },
      tenants: { 'bench-tenant': { tier: 'pro', budget: month } },
      keys: [key],
      countCacheChars: 0,
    };
  return {
    tiers: {
      pro: {
        requestsPerMinute: HUGE_REQUESTS,
        requestsPerDay: HUGE_REQUESTS,
        tokensPerMinute: HUGE_TOKENS,
        perKey: { requestsPerMinute: HUGE_REQUESTS },
        models: ['*'],
      },
    },
    tenants: {
      'bench-tenant': {
        tier: 'pro',
        budget: [{ usd: HUGE_USD, period: 'day' }, month],
        userBudget: { usd: HUGE_USD, period: 'day' },
      },
    },
    features: { bench: { budget: { usd: HUGE_USD, period: 'week' } } },
    keys: [key],
    countCacheChars: 0,
  };
}

interface PairedCpu {
  /** Per block: each case's median request CPU, µs (3 scopes, 8 scopes). */
  blockMedians: [number, number][];
  allocatedBytes: [number, number];
  gcPerByte: number;
}

/**
 * Both configs as proxies in this process (Node's own request and response on a discarding socket) before one mock
 * upstream in a child; one request to each in turn, each request's CPU a sample (paired-requests.ts).
 */
async function pairedCpu(
  context: BenchContext,
  store: 'memory' | 'redis',
  blocks: number,
  roundsPerBlock: number,
): Promise<PairedCpu> {
  const upstream = await startServer({ app: 'mock-upstream' });
  const [{ createGatewayApp }, { validateConfig }, { createStores }] = await Promise.all([
    import('../packages/gateway/src/app.js'),
    import('../packages/gateway/src/config/index.js'),
    import('../packages/gateway/src/stores.js'),
  ]);
  const built = await Promise.all(
    ([3, 8] as const).map(async (scopes) => {
      const config = validateConfig({
        ...scopeConfig(scopes),
        upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'upstream-bench-key' } },
        ...(store === 'redis'
          ? {
              redisUrl: REDIS_URL,
              redisPrefix: `${context.redisPrefix}scopes:${scopes}:`,
              // Every request counted in Redis: blocks would answer most of them in the process.
              redis: { blocks: false },
            }
          : {}),
        log: { level: 'silent' },
      });
      const stores = await createStores({ redisUrl: config.redisUrl, redisPrefix: config.redisPrefix });
      const app = createGatewayApp(config, { stores, log: () => undefined, metrics: false });
      return { app, stores };
    }),
  );
  const headers = authHeaders(benchKey(0));
  const body = Buffer.from(CHAT_BODY);
  try {
    const run = await measurePairedRequests(
      async (kind) => {
        const status = await inject(built[kind]!.app, { method: 'POST', url: CHAT_PATH, headers, body });
        if (status !== 200) throw new Error(`the ${kind === 0 ? 3 : 8}-scope proxy answered ${status}`);
      },
      { warmupRounds: 1000, blocks, roundsPerBlock },
    );
    return {
      blockMedians: run.blocks.map(([three, eight]) => [median(three), median(eight)]),
      allocatedBytes: run.allocatedBytes,
      gcPerByte: run.gcPerByte,
    };
  } finally {
    for (const { app, stores } of built) {
      await app.close();
      await stores.close();
    }
    await upstream.close();
  }
}

export async function runScopesBenchmark(context: BenchContext): Promise<SectionResult> {
  const requests = context.quick ? 40 : 200;
  const counts: CaseCount[] = [];
  for (const blocks of [false, true])
    for (const scopes of [3, 8] as const) {
      counts.push(
        await countRoundTrips(
          context,
          {
            name: `${scopes} scopes, Redis${blocks ? ' (blocks, the default)' : ', `blocks: false`'}`,
            spec: (redisUrl, upstream) => ({
              app: 'proxy',
              options: {
                store: 'redis',
                redisUrl,
                upstream,
                prefix: `${context.redisPrefix}scopes-rt:${scopes}:${blocks ? 'b' : 'n'}:`,
                ...(blocks ? {} : { blocks: false }),
                config: scopeConfig(scopes),
              },
            }),
            needsUpstream: true,
          },
          requests,
        ),
      );
      context.log(`scopes: round trips of ${scopes} scopes${blocks ? ' with blocks' : ''} counted`);
    }
  const blocks = context.quick ? 10 : 40;
  const roundsPerBlock = 200;
  const cpu = { memory: await pairedCpu(context, 'memory', blocks, roundsPerBlock) };
  context.log('scopes: memory pairs done');
  const redisCpu = await pairedCpu(context, 'redis', blocks, roundsPerBlock);
  context.log('scopes: Redis pairs done');
  const all = { ...cpu, redis: redisCpu };

  const unbatched = counts.filter((count) => count.name.includes('blocks: false'));
  const tripsBefore = unbatched.map((count) => count.tripsBefore / requests);
  const failures = counts.reduce((sum, count) => sum + count.failures, 0);
  const cpuRows = (['memory', 'redis'] as const).map((store) => {
    const run = all[store];
    const gc = (bytes: number) => bytes * run.gcPerByte;
    const three = run.blockMedians.map(([value]) => value);
    const eight = run.blockMedians.map(([, value]) => value);
    const ratios = run.blockMedians.map(([a, b]) => b / a);
    return {
      store,
      row: [
        store === 'memory' ? 'memory stores' : 'Redis, `blocks: false`',
        withQuartiles(three),
        withQuartiles(eight),
        withQuartiles(run.blockMedians.map(([a, b]) => b - a)),
        `${fmtNumber(median(ratios), 3)}×`,
        `${fmtBytes(run.allocatedBytes[0])} / ${fmtBytes(run.allocatedBytes[1])}`,
        fmtNumber(gc(run.allocatedBytes[1] - run.allocatedBytes[0]), 1),
      ],
      ratio: median(ratios),
    };
  });
  const targets: TargetVerdict[] = [
    {
      target:
        'the reservation stays one Redis round trip before the answer, 8 scopes as 3 (Redis, every request counted)',
      holds: failures === 0 && tripsBefore.every((trips) => trips === 1),
      figures: `round trips per request before the answer: 3 scopes ${fmtNumber(tripsBefore[0]!, 2)}, 8 scopes ${fmtNumber(tripsBefore[1]!, 2)}`,
    },
  ];
  const body = [
    'What a request that touches 8 scopes costs against one that touches 3, through the example proxy (one pro tenant, one key with ' +
      'its user and feature, every limit and budget far above the load).',
    '',
    `- **3 scopes:** ${SCOPE_CASES[3]}.`,
    `- **8 scopes:** ${SCOPE_CASES[8]}.`,
    '',
    `Redis commands and round trips, counted by a relay between the proxy (a child process) and Redis: ${requests} sequential ` +
      'requests per case after 20 warm-up requests (the method of the round-trips section).',
    '',
    countsTable(counts),
    '',
    `CPU per request: both proxies in one process, one request to each in turn (paired-requests.ts), ${blocks} blocks ` +
      `of ${roundsPerBlock} rounds; the block medians' median (quartiles in brackets), collection shared out by bytes.`,
    '',
    table(
      [
        'stores',
        '3 scopes, µs CPU',
        '8 scopes, µs CPU',
        '8 − 3, µs',
        '8 / 3',
        'allocated / request (3 / 8)',
        'extra garbage collection, µs',
      ],
      cpuRows.map(({ row }) => row),
    ),
  ].join('\n');
  const findings = [
    `Scopes: a request touching 8 limit and budget scopes makes ${fmtNumber(tripsBefore[1]!, 2)} Redis round trip(s) before its answer, ` +
      `as one touching 3 (${fmtNumber(tripsBefore[0]!, 2)}); its CPU is ${cpuRows.map(({ store, ratio }) => `${fmtNumber(ratio, 2)}× on ${store}`).join(', ')}.`,
  ];
  return { title: '16. Scopes per request: 8 against 3', body, targets, findings };
}
