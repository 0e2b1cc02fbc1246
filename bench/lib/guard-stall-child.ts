// A child of the guard-stall benchmark: one app with the abuse watch over 100,000 subjects (or the scoring on its loop,
// or neither), listening; it measures its own event loop's delays while the parent loads it.
import { monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { getContext } from '@tollgate/core';
import { providerCall } from '@tollgate/providers';
import { createGuard, type Guard } from '@tollgate/guard';
import { FEATURE_NAMES } from '../../packages/guard/src/abuse-features.js';
import { trainAbuseForest } from '../../packages/guard/src/abuse-model.js';
import { FEATURE_COUNT, scoreWindow, type WindowRows } from '../../packages/guard/src/abuse-scoring.js';
import { randomUUID } from 'node:crypto';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { applyServerV8Flags } from '../../packages/gateway/src/v8-flags.js';
import { answerParent } from './child-answers.js';
import { collectGarbage } from './background-stall.js';
import { startLoopProbe, type LoopProbeResult } from './loop-probe.js';
import { inject } from './inject.js';

/** `worker`: the abuse watch as shipped; `redis`: the same on Redis stores (`REDIS_URL`, a prefix of its own, deleted
 * after); `on-loop`: the same scoring of the same number of subjects on the event loop, once a second (what the watch
 * did before issue 58: a lower bound of its stall); `control`: no abuse watch; `redis-control`: no abuse watch on
 * Redis stores (what every request's own store calls cost, the Redis watch's baseline). */
export type StallMode = 'control' | 'worker' | 'redis' | 'redis-control' | 'on-loop';

export type StallMessage =
  { type: 'start'; mode: StallMode; subjects: number } | { type: 'monitor' } | { type: 'stats' } | { type: 'exit' };

export interface LoopStats {
  maxMs: number;
  p99Ms: number;
  meanMs: number;
  /**
   * The most CPU the main thread spent between two turns of a 1 ms timer (the process's before Node 22: `cpuOf`):
   * the loop's own longest stall, what a busy machine adds to the wall clock left out.
   */
  cpuMaxMs: number;
  cpuOf: LoopProbeResult['cpuOf'];
  /** The longest garbage collection pause meanwhile (a stall of its own, whoever made the garbage). */
  gcMaxMs: number;
  /** `on-loop`: the CPU time (ms) of its longest scoring round, the stall it makes on a core of its own. */
  roundCpuMs: number;
  /** Subjects in the watch's latest scoring (at most 2,000 listed) and whether a model scored them. */
  listed: number;
  model: boolean;
}

/**
 * The V8 settings the gateway's server process makes for itself (`serveGateway`, v8-flags.ts): without them, V8
 * pretenures the Redis client's reply arrays once a few survive (a read of 100,000 subjects' sums promoted about 10 MB
 * a scavenge into full collections), and its memory reducer compacts the whole heap some seconds after the start's
 * burst (one pause of 25-50 ms under load with the watch). `BENCH_STALL_V8_DEFAULTS=1` keeps V8's defaults, as an app
 * that embeds the guard without the flags runs.
 */
const V8_DEFAULTS = process.env.BENCH_STALL_V8_DEFAULTS === '1';
if (!V8_DEFAULTS) applyServerV8Flags();

export const CHAT_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] });

const OK_BODY = JSON.stringify({ ok: true });

let guard: Guard | undefined;
let histogram: IntervalHistogram | undefined;
let probe: ReturnType<typeof startLoopProbe> | undefined;
let scoring: NodeJS.Timeout | undefined;
let gcMaxMs = 0;
/** When the monitoring began: a collection's entry comes after it ends, the forced one's too, and is not counted. */
let monitoredFrom = Infinity;
let roundCpuMs = 0;
const collections = new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    if (entry.startTime >= monitoredFrom) gcMaxMs = Math.max(gcMaxMs, entry.duration);
});

function appOf(withGuard: Guard): express.Express {
  const app = express();
  app.set('trust proxy', 'loopback');
  app.post(
    '/v1/chat',
    withGuard.abuseBeforeAuth,
    (req, res, next) => {
      const keyId = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1] ?? 'anonymous';
      getContext(req, res).identity = { keyId, scopes: [], authMethod: 'api_key' };
      next();
    },
    express.json(),
    providerCall('openai.chat'),
    withGuard.abuseAfterAuth,
    // Written as the gateway writes an upstream's answer (`res.end`): express's `res.json` adds an ETag, a SHA-1 Hash
    // object a response whose weak handle each scavenge then finalizes (1-6 ms of its pause at 400 req/s).
    (_req, res) => void res.type('json').end(OK_BODY),
  );
  return app;
}

/** One request from each of `subjects` addresses (ten at a time): the watch's window then holds that many. */
async function fill(app: express.Express, subjects: number): Promise<void> {
  const body = Buffer.from(CHAT_BODY);
  for (let i = 0; i < subjects; i += 10)
    await Promise.all(
      Array.from({ length: Math.min(10, subjects - i) }, (_, j) => {
        const n = i + j;
        return inject(app as never, {
          method: 'POST',
          url: '/v1/chat',
          headers: {
            authorization: 'Bearer k1',
            'content-type': 'application/json',
            'x-forwarded-for': `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
          },
          body,
        });
      }),
    );
}

/** `subjects` rows of features like a crowd's, and a model grown on a sample of them, as the watch grows one. */
function syntheticWindow(subjects: number): { window: WindowRows; model: ReturnType<typeof trainAbuseForest> } {
  let state = 9;
  const random = () => (state = (state * 48271) % 2147483647) / 2147483647;
  const rows = new Float64Array(subjects * FEATURE_COUNT);
  for (let i = 0; i < subjects; i++)
    FEATURE_NAMES.forEach((name, f) => {
      rows[i * FEATURE_COUNT + f] = name === 'subjectKind' ? i % 2 : random() * 10;
    });
  const sample = Array.from({ length: 8_192 }, (_, i) =>
    Array.from(rows.subarray(i * FEATURE_COUNT, (i + 1) * FEATURE_COUNT)),
  );
  return {
    window: { rows, requests: new Float64Array(subjects).fill(5), count: subjects },
    model: trainAbuseForest(sample, 1),
  };
}

let redis: RedisStores | undefined;

async function start(mode: StallMode, subjects: number): Promise<{ port: number }> {
  const watched = mode === 'worker' || mode === 'redis';
  if (mode === 'redis' || mode === 'redis-control') {
    const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    redis = createRedisStores({ url, prefix: `tg-bench:guard-stall:${randomUUID()}:` });
  }
  guard = createGuard({
    alerts: { log: false },
    ...(watched ? { abuse: { subjects: ['address'] } } : {}),
    ...(redis ? { stores: redis } : {}),
  });
  const app = appOf(guard);
  // The control served as many requests first: its code is as warm as the watch's when the load starts.
  if (mode === 'control' || mode === 'redis-control') await fill(app, subjects);
  if (watched) {
    await fill(app, subjects);
    // The first model, grown and used once before the load (a training in the load's time is the worker's too).
    await guard.flush();
  }
  if (mode === 'on-loop') {
    const { window, model } = syntheticWindow(subjects);
    scoring = setInterval(() => {
      const cpu = process.cpuUsage();
      scoreWindow(model, window);
      const spent = process.cpuUsage(cpu);
      roundCpuMs = Math.max(roundCpuMs, (spent.user + spent.system) / 1000);
    }, 1_000);
  }
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return { port: (server.address() as AddressInfo).port };
}

answerParent<StallMessage>((message) => {
  switch (message.type) {
    case 'start':
      return start(message.mode, message.subjects);
    case 'monitor':
      // The garbage of the start (100,000 requests served, their sums filed, a model grown) is not the load's stall:
      // the first scavenge under load copied what the fill left young (12 ms), in every case alike.
      collectGarbage();
      monitoredFrom = performance.now();
      histogram = monitorEventLoopDelay({ resolution: 1 });
      histogram.enable();
      probe = startLoopProbe();
      gcMaxMs = 0;
      collections.observe({ entryTypes: ['gc'] });
      return Promise.resolve(true);
    case 'stats': {
      histogram!.disable();
      const cpu = probe!.stop();
      collections.disconnect();
      const ms = (ns: number) => ns / 1e6;
      const stats: LoopStats = {
        maxMs: ms(histogram!.max),
        p99Ms: ms(histogram!.percentile(99)),
        meanMs: ms(histogram!.mean),
        cpuMaxMs: cpu.maxCpuMs,
        cpuOf: cpu.cpuOf,
        gcMaxMs,
        roundCpuMs,
        listed: guard?.abuseEntries().length ?? 0,
        model: guard?.abuseModel() !== undefined,
      };
      return Promise.resolve(stats);
    }
    case 'exit':
      if (scoring) clearInterval(scoring);
      return guard!
        .close()
        .then(() => redis && deleteOwnKeys(redis))
        .then(() => process.exit(0));
  }
});

/** The keys this child wrote on the shared Redis (its prefix only: the shared Redis is never flushed). */
async function deleteOwnKeys(stores: RedisStores): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = (await stores.sendCommand([
      'SCAN',
      cursor,
      'MATCH',
      `${stores.prefix}*`,
      'COUNT',
      '1000',
    ])) as [string, string[]];
    if (keys.length > 0) await stores.sendCommand(['UNLINK', ...keys]);
    cursor = next;
  } while (cursor !== '0');
  await stores.close();
}
