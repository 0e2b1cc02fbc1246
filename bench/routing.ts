// Benchmark: what the router's bookkeeping (plan, strategy, breaker, latency average) costs per request, in CPU, in-process.
import { createPricing } from '@tollgate/core';
import { createModelRouter } from '@tollgate/router';
import type { AttemptResult, ModelRouter, RouteAttempts } from '@tollgate/router';
import type { ModelRouterSetup } from '../packages/router/src/model-router.js';
import { startServer } from './lib/child.js';
import { authHeaders, benchKey, CHAT_BODY, CHAT_PATH, sha256Hex } from './lib/fixtures.js';
import { inject } from './lib/inject.js';
import { measurePairedRequests } from './lib/paired-requests.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtBytes, fmtNumber, mean, median, table, withQuartiles } from './lib/stats.js';

/** Target of issue 16: routing and breaker bookkeeping add at most this much CPU per request. */
const MAX_ROUTING_US = 10;
/** Retries configured must cost a first-time success nothing: within this (the noise of the measure). */
const MAX_RETRY_US = 0.5;

const TARGETS = [
  { upstream: 'openai', model: 'gpt-4o' },
  { upstream: 'azure', model: 'gpt-4o-mini' },
  { upstream: 'anthropic', model: 'claude-haiku-4-5' },
];
const TRAITS = { inputTokens: 250, outputTokens: 256, tools: false, images: false, route: '/v1/chat/completions' };

/** A transport that answers at once: what remains is the router's own work (and the promise it awaits). */
const answered: AttemptResult = { kind: 'answered', firstByteMs: 12 };
const attempts: RouteAttempts = {
  prepare: () => undefined,
  send: () => Promise.resolve(answered),
  fail: () => undefined,
};

interface Case {
  name: string;
  /** One request: plan and run (the router), or only the transport's call (the baseline). */
  request: () => Promise<void>;
}

function routerWith(
  strategy: 'fallback' | 'cheapest' | 'lowest-latency' | 'weighted',
  retry: ModelRouterSetup['retry'],
): ModelRouter {
  return createModelRouter({ pricing: createPricing(), retry, modelGroups: { g: { strategy, targets: TARGETS } } });
}

function routedCase(name: string, router: ModelRouter): Case {
  return {
    name,
    request: async () => {
      const plan = router.plan({ model: 'g', ...TRAITS })!;
      router.firstAvailable(plan);
      await router.run(plan, attempts);
    },
  };
}

/** CPU µs per request of `run` over `count` requests (user + system of this process). */
async function cpuPerRequest(request: () => Promise<void>, count: number): Promise<number> {
  const started = process.cpuUsage();
  for (let i = 0; i < count; i++) await request();
  const used = process.cpuUsage(started);
  return (used.user + used.system) / count;
}

const HUGE = { usd: 1_000_000, period: 'day' as const };

/** What the proxy part measures, per case (0: the model asked directly, 1: the group). */
interface ProxyRouting {
  /** Per block: each case's median request CPU, µs. */
  blockMedians: [number, number][];
  /** Per block: each case's mean request CPU, µs (every request, those that met a GC pause included). */
  blockMeans: [number, number][];
  /** Bytes each case's request allocates: the median heap growth over the requests no collection ran in. */
  allocatedBytes: [number, number];
  /** Garbage collection over the run (every `gc` performance entry), µs per byte allocated. */
  gcPerByte: number;
}

/**
 * The example proxy, in-process (Node's own request and response on a discarding socket) in front of
 * the zero-latency mock upstream in a child: one app, the same chat body asking for `gpt-4o-mini`
 * directly or for a group whose first target is that model. One request to each case in turn (the
 * first case alternating), each request's CPU a sample, pooled in blocks of rounds. Each request's
 * heap growth (read outside its CPU window) gives what it allocates.
 */
async function proxyRouting(blocks: number, roundsPerBlock: number): Promise<ProxyRouting> {
  const upstream = await startServer({ app: 'mock-upstream' });
  const [{ createGatewayApp }, { validateConfig }] = await Promise.all([
    import('../packages/gateway/src/app.js'),
    import('../packages/gateway/src/config/index.js'),
  ]);
  const config = validateConfig({
    upstreams: {
      openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'upstream-bench-key' },
      spare: { baseUrl: `${upstream.url}/v1`, apiKey: 'upstream-bench-key' },
    },
    modelGroups: {
      g: {
        strategy: 'fallback',
        targets: [
          { upstream: 'openai', model: 'gpt-4o-mini' },
          { upstream: 'spare', model: 'gpt-4o' },
        ],
      },
    },
    tiers: { pro: { requestsPerMinute: 1_000_000_000, tokensPerMinute: 1_000_000_000_000, models: ['*'] } },
    tenants: { 'bench-tenant': { tier: 'pro', budget: HUGE } },
    keys: [
      { id: 'bench-key-0', sha256: sha256Hex(benchKey(0)), tenant: 'bench-tenant', scopes: ['chat'], budget: HUGE },
    ],
    global: { requestsPerMinute: 1_000_000_000, budget: HUGE },
    log: { level: 'silent' },
  });
  const app = createGatewayApp(config, { log: () => undefined, metrics: false });
  const headers = authHeaders(benchKey(0));
  const bodies = [
    Buffer.from(CHAT_BODY),
    Buffer.from(JSON.stringify({ ...JSON.parse(CHAT_BODY), model: 'g' })),
  ] as const;
  try {
    const run = await measurePairedRequests(
      async (kind) => {
        const status = await inject(app, { method: 'POST', url: CHAT_PATH, headers, body: bodies[kind] });
        if (status !== 200) throw new Error(`the proxy answered ${status}`);
      },
      { warmupRounds: 2000, blocks, roundsPerBlock },
    );
    return {
      blockMedians: run.blocks.map(([direct, grouped]) => [median(direct), median(grouped)]),
      blockMeans: run.blocks.map(([direct, grouped]) => [mean(direct), mean(grouped)]),
      allocatedBytes: run.allocatedBytes,
      gcPerByte: run.gcPerByte,
    };
  } finally {
    await app.close();
    await upstream.close();
  }
}

export async function runRoutingBenchmark(context: BenchContext): Promise<SectionResult> {
  const count = context.quick ? 50_000 : 300_000;
  const rounds = context.quick ? 3 : 7;
  const baseline: Case = {
    name: 'transport call alone (no router)',
    request: () => attempts.send(TARGETS[0]! as never).then(() => undefined),
  };
  const cases: Case[] = [
    routedCase('fallback, 3 targets, retries 2', routerWith('fallback', { attempts: 2 })),
    routedCase('fallback, 3 targets, retries 0', routerWith('fallback', { attempts: 0 })),
    routedCase('cheapest, 3 targets', routerWith('cheapest', { attempts: 2 })),
    routedCase('lowest-latency, 3 targets', routerWith('lowest-latency', { attempts: 2 })),
    routedCase('weighted, 3 targets', routerWith('weighted', { attempts: 2 })),
  ];
  const all = [baseline, ...cases];
  // Warm-up: the JIT and the breakers' windows reach their steady state.
  for (const entry of all) await cpuPerRequest(entry.request, 20_000);
  const perRound = new Map<string, number[]>(all.map((entry) => [entry.name, []]));
  for (let round = 0; round < rounds; round++) {
    // Rotated order: drift on a shared machine hits every case.
    const order = all.map((_, i) => all[(i + round) % all.length]!);
    const base = await cpuPerRequest(baseline.request, count);
    for (const entry of order) {
      if (entry === baseline) continue;
      perRound.get(entry.name)!.push((await cpuPerRequest(entry.request, count)) - base);
    }
    perRound.get(baseline.name)!.push(base);
    context.log(`routing: round ${round + 1}/${rounds} done`);
  }
  const rows = all.map((entry) => {
    const samples = perRound.get(entry.name)!;
    return [
      entry.name,
      fmtNumber(median(samples), 2),
      fmtNumber(Math.min(...samples), 2),
      fmtNumber(Math.max(...samples), 2),
    ];
  });
  const routedMedians = cases.map((entry) => median(perRound.get(entry.name)!));
  const worst = Math.max(...routedMedians);
  const retryCost = median(perRound.get(cases[0]!.name)!.map((value, i) => value - perRound.get(cases[1]!.name)![i]!));
  const proxyBlocks = context.quick ? 20 : 80;
  const roundsPerBlock = 200;
  const proxy = await proxyRouting(proxyBlocks, roundsPerBlock);
  const typicalDiffs = proxy.blockMedians.map(([direct, grouped]) => grouped - direct);
  const meanDiffs = proxy.blockMeans.map(([direct, grouped]) => grouped - direct);
  const gcOf = (bytes: number) => bytes * proxy.gcPerByte;
  const gcCost = gcOf(proxy.allocatedBytes[1] - proxy.allocatedBytes[0]);
  const proxyCost = median(typicalDiffs) + gcCost;
  context.log('routing: proxy rounds done');
  const targets: TargetVerdict[] = [
    {
      target: `routing and breaker bookkeeping ≤ ${MAX_ROUTING_US} µs CPU per request`,
      holds: worst <= MAX_ROUTING_US,
      figures: `worst strategy ${fmtNumber(worst, 2)} µs`,
    },
    {
      target: `retries add nothing to a first-time success (≤ ${MAX_RETRY_US} µs)`,
      holds: retryCost <= MAX_RETRY_US,
      figures: `retries 2 − retries 0: ${fmtNumber(retryCost, 2)} µs`,
    },
    {
      target: `through the example proxy, a group request ≤ ${MAX_ROUTING_US} µs CPU over the model asked directly`,
      holds: proxyCost <= MAX_ROUTING_US,
      figures: `${fmtNumber(proxyCost, 1)} µs (typical request ${fmtNumber(median(typicalDiffs), 1)} + garbage collection ${fmtNumber(gcCost, 1)})`,
    },
  ];
  const body = [
    `The router alone (\`@tollgate/router\`, dist), driven in-process: per request \`plan()\` (class, strategy, breaker availability), ` +
      `\`firstAvailable()\` and \`run()\` through the target's cockatiel breaker with a transport that answers at once; ` +
      `${fmtNumber(count)} requests per case per round, ${rounds} rounds in rotated order. Figures are CPU µs per request ` +
      'above the transport call alone (its own row is absolute), median, min and max over rounds.',
    '',
    table(['case', 'µs CPU / request (median)', 'min', 'max'], rows),
    '',
    'The example proxy in-process, the same body asking for `gpt-4o-mini` directly or for a fallback group whose first ' +
      `target it is, one request to each in turn (paired-requests.ts), ${proxyBlocks} blocks of ${roundsPerBlock} rounds; ` +
      "a block's median is its typical request, collection shared out per byte allocated; medians over blocks (quartiles).",
    '',
    table(
      ['case', 'typical request, µs CPU', 'mean request, µs CPU', 'allocated / request', 'its garbage collection, µs'],
      [
        [
          'model asked directly',
          withQuartiles(proxy.blockMedians.map((pair) => pair[0])),
          withQuartiles(proxy.blockMeans.map((pair) => pair[0])),
          fmtBytes(proxy.allocatedBytes[0]),
          fmtNumber(gcOf(proxy.allocatedBytes[0]), 1),
        ],
        [
          'model group (fallback, first target healthy)',
          withQuartiles(proxy.blockMedians.map((pair) => pair[1])),
          withQuartiles(proxy.blockMeans.map((pair) => pair[1])),
          fmtBytes(proxy.allocatedBytes[1]),
          fmtNumber(gcOf(proxy.allocatedBytes[1]), 1),
        ],
        [
          'group − direct (per-block differences)',
          withQuartiles(typicalDiffs),
          withQuartiles(meanDiffs),
          fmtBytes(proxy.allocatedBytes[1] - proxy.allocatedBytes[0]),
          fmtNumber(gcCost, 1),
        ],
      ],
    ),
    '',
    `What a group adds per request: ${fmtNumber(median(typicalDiffs), 1)} µs on the typical request + ${fmtNumber(gcCost, 1)} µs of garbage collection = **${fmtNumber(proxyCost, 1)} µs**.`,
  ].join('\n');
  const findings = [
    `Routing: the router's own bookkeeping (plan, strategy, breaker, latency average) is ${fmtNumber(worst, 2)} µs of CPU per request at worst; ` +
      `through the example proxy a group request costs ${fmtNumber(proxyCost, 1)} µs more than the same model asked directly ` +
      `(${fmtNumber(median(typicalDiffs), 1)} µs on the typical request, ${fmtNumber(gcCost, 1)} µs of garbage collection): the plan, ` +
      "the model switch, the router's try through the breaker (cockatiel's promise layers), the request's try object.",
  ];
  return { title: '12. Routing: plan, strategy and breaker bookkeeping per request', body, targets, findings };
}
