// Benchmark (issue 61): the gateway as a SaaS runs it, tenants and keys kept as data. 10,000 tenants through the bulk
// import and 100,000 keys through /admin/keys, the compiled proxy on Redis and PostgreSQL, 200 req/s spread over
// every key; against the same run with 1,000 keys of 100 tenants: the start, the resident memory and the p99.
import { closeSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createClient } from 'redis';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createRedisStores } from '@tollgate/redis';
import { startServer } from './lib/child.js';
import { startCompiledProxy, type RunningProxy } from './lib/compiled-proxy.js';
import { authHeaders, benchKey, CHAT_BODY, CHAT_PATH, REDIS_URL, sha256Hex } from './lib/fixtures.js';
import { runLoad, type LoadResult } from './lib/load.js';
import { processMemory } from './lib/process-cpu.js';
import { verdictMark, type BenchContext, type SectionResult, type TargetVerdict } from './lib/section.js';
import { fmtBytes, fmtMs, fmtNumber, quantile, table } from './lib/stats.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const RATE = 200;
const CONNECTIONS = 32;
const MIB = 1024 * 1024;
/** Issue 61 item 2: start under 5 s, RSS at most 30 MiB above the 1,000-key run, p99 within noise of it. */
const START_TARGET_MS = 5_000;
const RSS_TARGET_BYTES = 30 * MIB;
const P99_NOISE = { ms: 2, share: 0.25 };
const ADMIN_KEY = benchKey(99_999_999);
/** Keys created at once through /admin/keys while the store is filled. */
const CREATE_CONCURRENCY = 32;
/**
 * How the keys reach the store: `store` (default) writes them with `createRedisStores().keys.put`, as a sign-up service
 * of one's own would; `api` creates each through `POST /admin/keys` (100,000 take about 15 minutes here).
 */
const KEYS_VIA = process.env.BENCH_SCALE_KEYS_VIA === 'api' ? 'api' : 'store';
/** `BENCH_SCALE_HEAP=DIR`: a heap snapshot of each run's proxy written into DIR after its load (what a key met holds). */
const HEAP_DIR = process.env.BENCH_SCALE_HEAP;

interface Scale {
  name: string;
  tenants: number;
  keys: number;
}

interface ScaleRun {
  scale: Scale;
  /** From spawning the process to its first 200 on /readyz (the store already full). */
  startMs: number;
  /** VmRSS at the end of the load, and the most over its second half. */
  rssEnd: number;
  rssMaxSecondHalf: number;
  /** The median of the samples (every 2 s) over the second half: where the collector's sawtooth sits, not its top. */
  rssMedianSecondHalf: number;
  /** VmHWM: the kernel's high-water mark, start included. */
  peak: number;
  load: LoadResult;
  /** How long filling the store took (import of the tenants, creation of the keys). */
  fillS: number;
}

const tenantId = (index: number) => `scale-t${String(index).padStart(5, '0')}`;

function proxyConfig(upstream: string, schema: string, prefix: string): Record<string, unknown> {
  return {
    tiers: { standard: { requestsPerMinute: 600, tokensPerMinute: 400_000, models: ['*'] } },
    defaultTier: 'standard',
    adminKeySha256: sha256Hex(ADMIN_KEY),
    redisUrl: REDIS_URL,
    redisPrefix: prefix,
    postgresUrl: POSTGRES_URL,
    postgresSchema: schema,
    upstreams: { openai: { baseUrl: `${upstream}/v1`, apiKey: 'upstream-bench-key' } },
    global: { budget: { usd: 100_000, period: 'day' } },
    log: { level: 'silent' },
    countCacheChars: 0,
  };
}

async function admin(proxy: RunningProxy, method: string, path: string, body: string, type = 'application/json') {
  const answer = await fetch(`${proxy.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': type },
    body,
  });
  const text = await answer.text();
  if (!answer.ok) throw new Error(`${method} ${path}: ${answer.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** The tenants through the bulk import (in parts of 5,000 lines), then every key (see KEYS_VIA). */
async function fill(proxy: RunningProxy, scale: Scale, prefix: string, log: (line: string) => void): Promise<string[]> {
  for (let from = 0; from < scale.tenants; from += 5_000) {
    const lines: string[] = [];
    for (let index = from; index < Math.min(scale.tenants, from + 5_000); index++)
      lines.push(JSON.stringify({ id: tenantId(index), tier: 'standard', budget: { usd: 50, period: 'day' } }));
    const report = await admin(proxy, 'POST', '/admin/tenants:import', lines.join('\n'), 'application/x-ndjson');
    if (report.created !== lines.length) throw new Error(`import: ${JSON.stringify(report).slice(0, 300)}`);
  }
  return KEYS_VIA === 'api' ? createKeysThroughApi(proxy, scale, log) : writeKeysToStore(scale, prefix);
}

/** Every key through `POST /admin/keys`, as an operator's program makes them (about 100 a second here). */
async function createKeysThroughApi(proxy: RunningProxy, scale: Scale, log: (line: string) => void) {
  const keys = new Array<string>(scale.keys);
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < scale.keys; index = next++) {
      const made = await admin(
        proxy,
        'POST',
        '/admin/keys',
        JSON.stringify({ id: `scale-k${index}`, tenant: tenantId(index % scale.tenants), scopes: ['chat'] }),
      );
      keys[index] = made.key as string;
      if (index % 20_000 === 0 && index > 0) log(`scale: ${scale.name}: ${fmtNumber(index)} keys created`);
    }
  };
  await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
  return keys;
}

/** Every key written into the gateway's key store with the library, as a sign-up service of one's own would. */
async function writeKeysToStore(scale: Scale, prefix: string): Promise<string[]> {
  const stores = createRedisStores({ url: REDIS_URL, prefix, keyCache: false, timeoutMs: 60_000 });
  const keys = new Array<string>(scale.keys);
  const createdAt = new Date().toISOString();
  try {
    for (let from = 0; from < scale.keys; from += 1_000) {
      const writes: Promise<void>[] = [];
      for (let index = from; index < Math.min(scale.keys, from + 1_000); index++) {
        const key = generateApiKey();
        keys[index] = key;
        const record = {
          id: `scale-k${index}`,
          sha256: hashApiKey(key),
          tenantId: tenantId(index % scale.tenants),
          scopes: ['chat'],
          createdAt,
        };
        writes.push(stores.keys.put(record));
      }
      await Promise.all(writes);
    }
  } finally {
    await stores.close();
  }
  return keys;
}

async function readyAfter(proxy: RunningProxy, spawnedAt: number): Promise<number> {
  for (;;) {
    const ready = await fetch(`${proxy.url}/readyz`).then(
      (answer) => answer.ok,
      () => false,
    );
    if (ready) return performance.now() - spawnedAt;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function runScale(scale: Scale, upstream: string, durationS: number, context: BenchContext): Promise<ScaleRun> {
  const schema = `bench_scale_${scale.keys}_${process.pid}`;
  const prefix = `${context.redisPrefix}scale-${scale.keys}:`;
  const config = proxyConfig(upstream, schema, prefix);
  const filledAt = performance.now();
  const filler = await startCompiledProxy(config);
  let keys: string[];
  try {
    keys = await fill(filler, scale, prefix, context.log);
  } finally {
    await filler.close();
  }
  const fillS = (performance.now() - filledAt) / 1000;
  context.log(`scale: ${scale.name}: store filled in ${fmtNumber(fillS)} s`);
  // A fresh process on the full store: what a deployment starts (or restarts) into.
  const spawnedAt = performance.now();
  const proxy = await startCompiledProxy(
    config,
    HEAP_DIR ? { execArgv: ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${HEAP_DIR}`] } : {},
  );
  try {
    const startMs = await readyAfter(proxy, spawnedAt);
    const headers = keys.map((key) => authHeaders(key));
    let next = 0;
    const samples: { at: number; rss: number }[] = [];
    const loadStarted = performance.now();
    const timer = setInterval(() => {
      processMemory(proxy.pid).then(
        ({ rss }) => samples.push({ at: (performance.now() - loadStarted) / 1000, rss }),
        () => undefined,
      );
    }, 2_000);
    let load: LoadResult;
    try {
      load = await runLoad({
        url: proxy.url,
        path: CHAT_PATH,
        body: CHAT_BODY,
        headers: headers[0]!,
        // Round-robin over every key: each is used requests / keys times, the least recently used next.
        setupRequest(request) {
          request.headers = { ...headers[next++ % headers.length] };
          request.body = CHAT_BODY;
          return request;
        },
        connections: CONNECTIONS,
        durationS,
        overallRate: RATE,
      });
    } finally {
      clearInterval(timer);
    }
    const end = await processMemory(proxy.pid);
    if (HEAP_DIR) await heapSnapshot(proxy.pid, HEAP_DIR, context.log);
    const secondHalf = samples.filter((s) => s.at >= durationS / 2).map((s) => s.rss);
    return {
      scale,
      startMs,
      rssEnd: end.rss,
      rssMaxSecondHalf: Math.max(end.rss, ...secondHalf),
      rssMedianSecondHalf: quantile([...secondHalf, end.rss], 0.5),
      peak: end.peak,
      load,
      fillS,
    };
  } finally {
    await proxy.close();
    await cleanUp(schema, prefix, context.log);
  }
}

/** The last bytes of a file. */
function fileEnd(file: string, bytes = 64): string {
  const fd = openSync(file, 'r');
  try {
    const { size } = fstatSync(fd);
    const tail = Buffer.alloc(Math.min(bytes, size));
    readSync(fd, tail, 0, tail.length, size - tail.length);
    return tail.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Signals the proxy to write a heap snapshot into `dir` and waits until the file is complete. */
async function heapSnapshot(pid: number, dir: string, log: (line: string) => void): Promise<void> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (let waited = 0; waited < 300_000; waited += 500) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const made = readdirSync(dir).find((file) => !before.has(file) && file.endsWith('.heapsnapshot'));
    // V8 writes the snapshot in one pass and ends it with the strings table's closing brackets.
    if (made && fileEnd(path.join(dir, made)).trimEnd().endsWith(']}')) {
      log(`scale: heap snapshot ${path.join(dir, made)}`);
      return;
    }
  }
  throw new Error(`no heap snapshot of ${pid} in ${dir} after 300 s`);
}

/** The run's schema and Redis keys (its own prefix only: the servers are shared). */
async function cleanUp(schema: string, prefix: string, log: (line: string) => void): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } catch (error) {
    log(`scale: dropping ${schema} failed (${String(error)})`);
  } finally {
    await client.end().catch(() => undefined);
  }
  const redis = createClient({ url: REDIS_URL });
  try {
    await redis.connect();
    for await (const keys of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 }))
      if (keys.length > 0) await redis.unlink(keys);
  } finally {
    if (redis.isOpen) await redis.quit();
  }
}

function p99(run: ScaleRun): number {
  return quantile(run.load.latencies, 0.99);
}

export async function runScaleBenchmark(context: BenchContext): Promise<SectionResult> {
  const durationS = context.quick ? 60 : Number(process.env.BENCH_SCALE_SECONDS ?? 300);
  const small: Scale = { name: '1,000 keys of 100 tenants', tenants: 100, keys: 1_000 };
  const large: Scale = context.quick
    ? { name: '10,000 keys of 1,000 tenants', tenants: 1_000, keys: 10_000 }
    : { name: '100,000 keys of 10,000 tenants', tenants: 10_000, keys: 100_000 };
  const upstream = await startServer({ app: 'mock-upstream' });
  const runs: ScaleRun[] = [];
  try {
    for (const scale of [small, large]) {
      runs.push(await runScale(scale, upstream.url, durationS, context));
      context.log(`scale: ${scale.name}: ${JSON.stringify({ ...runs.at(-1)!, load: undefined })}`);
    }
  } finally {
    await upstream.close();
  }
  const [base, wide] = runs as [ScaleRun, ScaleRun];
  const rows = runs.map((run) => [
    run.scale.name,
    fmtNumber(run.fillS),
    fmtMs(run.startMs),
    fmtBytes(run.rssEnd),
    fmtBytes(run.rssMaxSecondHalf),
    fmtBytes(run.rssMedianSecondHalf),
    fmtBytes(run.peak),
    fmtMs(quantile(run.load.latencies, 0.5)),
    fmtMs(p99(run)),
    fmtNumber(run.load.rps),
    fmtNumber(run.load.requests - (run.load.statuses['200'] ?? 0)),
    fmtNumber(Math.min(run.load.requests, run.scale.keys)),
  ]);
  const rssAbove = wide.rssMaxSecondHalf - base.rssMaxSecondHalf;
  const p99Bound = Math.max(P99_NOISE.ms, p99(base) * P99_NOISE.share);
  const judged = !context.quick;
  const targets: TargetVerdict[] = [
    {
      target: `Start on a store of ${wide.scale.name} under ${START_TARGET_MS / 1000} s (spawn to /readyz 200)`,
      holds: judged ? wide.startMs < START_TARGET_MS : undefined,
      figures: `${fmtMs(wide.startMs)} (${base.scale.name}: ${fmtMs(base.startMs)})`,
    },
    {
      target: `RSS at ${RATE} req/s over ${wide.scale.name} at most ${fmtBytes(RSS_TARGET_BYTES)} above ${base.scale.name}`,
      holds: judged ? rssAbove <= RSS_TARGET_BYTES : undefined,
      figures:
        `${fmtBytes(rssAbove)} above (most over the second half: ${fmtBytes(wide.rssMaxSecondHalf)} against ${fmtBytes(base.rssMaxSecondHalf)}; ` +
        `median: ${fmtBytes(wide.rssMedianSecondHalf - base.rssMedianSecondHalf)} above)`,
    },
    {
      target: `p99 over ${wide.scale.name} within noise of ${base.scale.name} (≤ ${P99_NOISE.ms} ms or ${P99_NOISE.share * 100}% over)`,
      holds: judged ? p99(wide) - p99(base) <= p99Bound : undefined,
      figures: `${fmtMs(p99(wide))} against ${fmtMs(p99(base))}`,
    },
  ];
  const body = [
    `The compiled example proxy (\`node examples/proxy/dist/main.js\`) on Redis (\`redisUrl\`, a prefix of the run's own) and PostgreSQL (\`postgresUrl\`, a schema of the run's own, dropped after). ` +
      `Its store filled through its own admin API by a first process: the tenants by \`POST /admin/tenants:import\` (NDJSON, 5,000 lines a request, each tenant a daily $50 budget), ` +
      `then every key ${KEYS_VIA === 'api' ? `by \`POST /admin/keys\` (${CREATE_CONCURRENCY} at once; the audit trail records each)` : 'written into its key store with `createRedisStores().keys.put` (`BENCH_SCALE_KEYS_VIA=api`: through `POST /admin/keys`)'}; that process stopped, a fresh one started on the full store. ` +
      `Then ${durationS} s of ${RATE} req/s over ${CONNECTIONS} connections, each request with the next key round-robin over all of them (JSON chat, the bench's mock upstream). ` +
      `RSS is VmRSS from /proc sampled every 2 s; the peak is VmHWM.`,
    '',
    table(
      [
        'store',
        'filled (s)',
        'start to ready',
        'RSS at the end',
        'RSS most, second half',
        'RSS median, second half',
        'RSS peak',
        'p50',
        'p99',
        'req/s',
        'non-200',
        'keys used',
      ],
      rows,
    ),
    '',
    ...targets.map((t) => `- ${verdictMark(t.holds)}: ${t.target}: ${t.figures}`),
  ].join('\n');
  return {
    title: 'Scale: tenants and keys as data, the compiled proxy on Redis and PostgreSQL (issue 61)',
    body,
    targets,
  };
}
