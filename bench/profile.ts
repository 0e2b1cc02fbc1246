// The in-process profiling driver: where a request's CPU and bytes go, by package and by function.
//
//   pnpm run profile [--case bare|erl|chain|proxy|proxy-observed|proxy-traced] [--store memory|redis] [--up-to 1..5 (chain: its first N steps)] [--fresh-prompts] [--requests 20000] [--top 25] [--out file.md]
//
// One case in this process, driven one request at a time through bench/lib/inject.ts (no client sockets; the
// proxy's upstream is the zero-latency mock in a child process of its own). After a warm-up it measures, over
// separate blocks of the same requests so no tool pays for another's: CPU per request (process.cpuUsage), bytes
// allocated and garbage collection per request (v8.GCProfiler: what the heap held before each collection less what it
// kept, plus the growth since the last), a sampled CPU profile (self time by package and function) and a sampled
// allocation profile (bytes by package and function, collected objects included). `--fresh-prompts` sends the chain a
// user message never sent before in each request, with its count cache on (the workload of bench §1b); otherwise
// every request sends the same body and the count cache is off. With `--store redis` the chain
// and the proxy run on createRedisStores against a redis-server of the driver's own (bench/lib/private-redis.ts).
import { Session } from 'node:inspector/promises';
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import type { Express } from 'express';
import { baseApp, answerAtOnce } from './lib/app-base.js';
import { startServer, type BenchChild } from './lib/child.js';
import { authHeaders, benchKey, CHAT_BODY, CHAT_PATH, chatBody } from './lib/fixtures.js';
import { inject } from './lib/inject.js';
import { PrivateRedis } from './lib/private-redis.js';
import { APP_BUILDERS } from './lib/apps.js';
import { buildProxy, buildTollgateChain } from './lib/tollgate-apps.js';
import { fmtNumber, table } from './lib/stats.js';

const CASES = ['bare', 'erl', 'chain', 'proxy', 'proxy-observed', 'proxy-traced'] as const;
type Case = (typeof CASES)[number];
const STORES = ['memory', 'redis'] as const;
type StoreKind = (typeof STORES)[number];

const { values } = parseArgs({
  options: {
    case: { type: 'string', default: 'chain' },
    store: { type: 'string', default: 'memory' },
    blocks: { type: 'boolean', default: false },
    'fresh-prompts': { type: 'boolean', default: false },
    'up-to': { type: 'string' },
    requests: { type: 'string', default: '20000' },
    top: { type: 'string', default: '25' },
    out: { type: 'string' },
  },
});
const which = values.case as Case;
if (!CASES.includes(which)) throw new Error(`--case must be one of ${CASES.join(', ')}`);
const store = values.store as StoreKind;
if (!STORES.includes(store)) throw new Error(`--store must be one of ${STORES.join(', ')}`);
if (store === 'redis' && which === 'bare')
  throw new Error('--store redis profiles the chain or the proxy; bare Express has no stores');
if (which === 'erl' && store !== 'redis')
  throw new Error('--case erl (express-rate-limit + rate-limit-redis) needs --store redis');
if (values['fresh-prompts'] && which !== 'chain' && which !== 'bare')
  throw new Error('--fresh-prompts profiles the chain, or bare Express with the same bodies');
const requests = Number(values.requests);
const top = Number(values.top);

interface Subject {
  app: Express;
  note: string;
  close(): Promise<void>;
}

/** Where the stores live: process memory, or the driver's own redis-server (never a shared database). */
function storeOptions(redis: PrivateRedis | undefined): Record<string, unknown> {
  return redis
    ? { store: 'redis', redisUrl: redis.url, prefix: 'profile:', ...(values.blocks ? { blocks: true } : {}) }
    : { store: 'memory' };
}

async function buildSubject(upstream: BenchChild | undefined, redis: PrivateRedis | undefined): Promise<Subject> {
  const stores = redis ? 'Redis stores (a redis-server of its own)' : 'memory stores';
  if (which === 'bare') {
    const app = baseApp();
    app.post(CHAT_PATH, answerAtOnce);
    return {
      app,
      note: 'bare Express: express.json and a handler answering a fixed chat completion',
      close: async () => undefined,
    };
  }
  if (which === 'erl') {
    const built = await APP_BUILDERS['express-rate-limit-redis']!({ redisUrl: redis!.url, prefix: 'profile:' });
    return {
      app: built.app as unknown as Express,
      note: 'express-rate-limit + rate-limit-redis (one limiter keyed by API key, node-redis) on a redis-server of its own, the same handler',
      close: built.close,
    };
  }
  if (which === 'chain') {
    const upTo = values['up-to'] === undefined ? {} : { upTo: Number(values['up-to']) };
    const fresh = values['fresh-prompts'] ? { freshPrompts: true } : {};
    const built = await buildTollgateChain({ ...storeOptions(redis), ...upTo, ...fresh });
    const prompts = values['fresh-prompts'] ? ', a user message never sent before in each request' : '';
    return {
      ...built,
      note: `the recommended fused chain on ${stores}${prompts} (apiKeyAuth, meter, combineLimits of the request limit, the token limit and the budget guard), the same handler`,
    };
  }
  const observed = which !== 'proxy';
  const tracing = which === 'proxy-traced' ? await registerTracing() : undefined;
  const logFile = join(tmpdir(), `tollgate-profile-${process.pid}.log`);
  const built = await buildProxy({
    ...storeOptions(redis),
    upstream: upstream!.url,
    ...(observed ? { log: { level: 'info', destination: logFile } } : {}),
  });
  const seen = tracing
    ? ', its access log (info, to a file) and an OpenTelemetry SDK (batch span processor, an exporter that drops every batch)'
    : observed
      ? ' and its access log (info, to a file)'
      : ', log silent';
  return {
    app: built.app,
    note: `the example proxy on ${stores} with its metrics${seen}, the mock upstream in a child process`,
    close: async () => {
      await built.close();
      await tracing?.();
      await rm(logFile, { force: true });
    },
  };
}

/**
 * An OpenTelemetry SDK registered globally as the proxy's startTracing does it (BasicTracerProvider, a batch span
 * processor, the W3C propagator), with an exporter that drops every batch: the SDK's work, no encoding or network.
 * Returns what unregisters it.
 */
async function registerTracing(): Promise<() => Promise<void>> {
  const [api, core, sdk] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
    import('@opentelemetry/sdk-trace-base'),
  ]);
  const discard: import('@opentelemetry/sdk-trace-base').SpanExporter = {
    export: (_spans, done) => done({ code: core.ExportResultCode.SUCCESS }),
    shutdown: async () => undefined,
  };
  const provider = new sdk.BasicTracerProvider({ spanProcessors: [new sdk.BatchSpanProcessor(discard)] });
  api.trace.setGlobalTracerProvider(provider);
  api.propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
  return async () => {
    await provider.shutdown();
    api.trace.disable();
    api.propagation.disable();
  };
}

const sameBody = Buffer.from(CHAT_BODY);
const headers = authHeaders(benchKey(0));
let sent = 0;

async function one(app: Express): Promise<void> {
  const body = values['fresh-prompts'] ? Buffer.from(chatBody(++sent)) : sameBody;
  const status = await inject(app, { method: 'POST', url: CHAT_PATH, headers, body });
  if (status !== 200) throw new Error(`${which} answered ${status}`);
  // What runs after the answer (settles, records, counts) belongs to the request.
  await new Promise((resolve) => setImmediate(resolve));
}

async function block(app: Express, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await one(app);
}

/** Where a function comes from: a package name, tollgate's own package, Node itself, or V8's bookkeeping. */
function origin(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node';
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(url);
  if (inModules) return inModules[1]!;
  const ours = /\/packages\/([^/]+)\//.exec(url);
  if (ours) return `@tollgate/${ours[1]}`;
  if (url.includes('/examples/proxy/')) return 'example proxy';
  if (url.includes('/bench/')) return 'bench driver';
  return url.replace(/^file:\/\//, '');
}

function where(frame: { functionName: string; url: string; lineNumber: number }): string {
  const file = frame.url.replace(/^.*\/(node_modules|packages|examples)\//, '').replace(/^file:\/\//, '');
  return `${frame.functionName || '(anonymous)'} ${file ? `${file}:${frame.lineNumber + 1}` : ''}`.trim();
}

function topRows(totals: Map<string, number>, scale: (value: number) => string, count: number): string[][] {
  return [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, value]) => [name, scale(value)]);
}

function add(totals: Map<string, number>, key: string, value: number): void {
  totals.set(key, (totals.get(key) ?? 0) + value);
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

/**
 * The old generation's bytes in one side of a GC profile entry. What a scavenge adds there is what survived the young
 * generation twice: it stays until a mark-sweep of the whole heap, whose cost grows with the heap (the tokenizers' tables
 * make it large), so a byte promoted costs far more than a byte that dies young.
 */
function oldGenerationBytes(side: { heapSpaceStatistics: { spaceName: string; spaceUsedSize: number }[] }): number {
  let bytes = 0;
  for (const space of side.heapSpaceStatistics)
    if (space.spaceName === 'old_space' || space.spaceName === 'large_object_space') bytes += space.spaceUsedSize;
  return bytes;
}

async function main(): Promise<void> {
  const redis = store === 'redis' ? new PrivateRedis() : undefined;
  await redis?.start();
  let upstream: BenchChild | undefined;
  let subject: Subject;
  try {
    upstream = which.startsWith('proxy') ? await startServer({ app: 'mock-upstream' }) : undefined;
    subject = await buildSubject(upstream, redis);
  } catch (error) {
    // No redis-server or upstream child outlives a driver that could not start.
    await upstream?.close();
    await redis?.stop();
    throw error;
  }
  const lines: string[] = [];
  try {
    await block(subject.app, Math.min(5_000, requests));

    // CPU per request, nothing attached.
    const cpuStart = process.cpuUsage();
    await block(subject.app, requests);
    const cpu = process.cpuUsage(cpuStart);
    const cpuUs = (cpu.user + cpu.system) / requests;

    // Bytes and collections per request.
    const gcProfiler = new v8.GCProfiler();
    const heapBefore = v8.getHeapStatistics().used_heap_size;
    gcProfiler.start();
    await block(subject.app, requests);
    const gcData = gcProfiler.stop();
    const heapAfter = v8.getHeapStatistics().used_heap_size;
    let freed = 0;
    let gcUs = 0;
    let promoted = 0;
    const byKind = new Map<string, number>();
    for (const entry of gcData.statistics) {
      freed += entry.beforeGC.heapStatistics.usedHeapSize - entry.afterGC.heapStatistics.usedHeapSize;
      gcUs += entry.cost;
      add(byKind, entry.gcType, 1);
      if (entry.gcType === 'Scavenge')
        promoted += oldGenerationBytes(entry.afterGC) - oldGenerationBytes(entry.beforeGC);
    }
    const allocatedPerRequest = (heapAfter - heapBefore + freed) / requests;

    const session = new Session();
    session.connect();
    // Self time, sampled every 50 µs.
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 50 });
    await session.post('Profiler.start');
    await block(subject.app, requests);
    const { profile } = await session.post('Profiler.stop');
    await session.post('Profiler.disable');
    const nodes = profile.nodes as ProfileNode[];
    const totalHits = nodes.reduce((sum, node) => sum + (node.hitCount ?? 0), 0);
    const hitUs = (profile.endTime - profile.startTime) / Math.max(1, totalHits) / requests;
    const selfByOrigin = new Map<string, number>();
    const selfByFunction = new Map<string, number>();
    for (const node of nodes) {
      const hits = node.hitCount ?? 0;
      if (hits === 0 || node.callFrame.functionName === '(idle)') continue;
      add(selfByOrigin, origin(node.callFrame.url, node.callFrame.functionName), hits);
      add(
        selfByFunction,
        `${where(node.callFrame)} [${origin(node.callFrame.url, node.callFrame.functionName)}]`,
        hits,
      );
    }

    // Bytes by who allocated them, sampled every 1 KiB, collected objects included.
    await session.post('HeapProfiler.enable');
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    await block(subject.app, requests);
    const { profile: heapProfile } = await session.post('HeapProfiler.stopSampling');
    await session.post('HeapProfiler.disable');
    session.disconnect();
    const bytesByOrigin = new Map<string, number>();
    const bytesByFunction = new Map<string, number>();
    const walk = (node: SamplingNode): void => {
      if (node.selfSize > 0) {
        add(bytesByOrigin, origin(node.callFrame.url, node.callFrame.functionName), node.selfSize);
        add(
          bytesByFunction,
          `${where(node.callFrame)} [${origin(node.callFrame.url, node.callFrame.functionName)}]`,
          node.selfSize,
        );
      }
      for (const child of node.children) walk(child);
    };
    walk(heapProfile.head as SamplingNode);
    const sampledBytes = [...bytesByOrigin.values()].reduce((a, b) => a + b, 0);

    const us = (hits: number) => `${fmtNumber(hits * hitUs, 2)} µs`;
    const kib = (bytes: number) => `${fmtNumber(bytes / requests / 1024, 2)} KiB`;
    lines.push(
      `# Profile: ${which}`,
      '',
      `${subject.note}. ${fmtNumber(requests)} requests per measurement, one at a time, after a warm-up; Node ${process.version}.`,
      '',
      table(
        ['measure', 'per request'],
        [
          ['CPU (user + system)', `${fmtNumber(cpuUs, 1)} µs`],
          ['bytes allocated', `${fmtNumber(allocatedPerRequest / 1024, 1)} KiB`],
          ['promoted to the old generation (by scavenges)', `${fmtNumber(promoted / requests, 0)} B`],
          [
            'garbage collection',
            `${fmtNumber(gcUs / requests, 1)} µs (${[...byKind.entries()].map(([kind, n]) => `${n} ${kind}`).join(', ')})`,
          ],
          ['sampled allocations (1 KiB interval)', kib(sampledBytes)],
        ],
      ),
      '',
      '## Self time by package',
      '',
      table(['package', 'self time per request'], topRows(selfByOrigin, us, top)),
      '',
      '## Self time by function',
      '',
      table(['function', 'self time per request'], topRows(selfByFunction, us, top)),
      '',
      '## Bytes allocated by package',
      '',
      table(['package', 'bytes per request'], topRows(bytesByOrigin, kib, top)),
      '',
      '## Bytes allocated by function',
      '',
      table(['function', 'bytes per request'], topRows(bytesByFunction, kib, top)),
      '',
    );
  } finally {
    await subject.close();
    await upstream?.close();
    await redis?.stop();
  }
  const text = lines.join('\n');
  if (values.out) writeFileSync(values.out, text);
  process.stdout.write(text);
}

await main();
