// Child entry: builds one bench app, serves it on an ephemeral port, answers the parent's questions over IPC.
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GCProfiler } from 'node:v8';
import type { BuiltApp } from './app-base.js';
import { buildApp } from './apps.js';
import { authHeaders, benchKey, CHAT_BODY, CHAT_PATH, STREAM_CHAT_BODY } from './fixtures.js';
import { cpuPerRequest, sendAll } from './inject.js';
import { non2xx } from './stats.js';
import type { ServerSpec } from './child.js';

interface Message {
  id: number;
  type: string;
  spec?: ServerSpec;
  drive?: DriveOptions;
  block?: BlockOptions;
}

export interface DriveOptions {
  requests: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Rotate over this many API keys (the app must know them: see the tollgate-chain `keys` option). */
  keys: number;
  /** Heap measurements (after a full GC) taken this many times, evenly spaced. */
  checkpoints: number;
  /** Stop at the first checkpoint past this many seconds, even if `requests` were not all sent. */
  maxSeconds?: number;
}

export interface HeapCheckpoint {
  requests: number;
  heapUsed: number;
  rss: number;
  external: number;
  seconds: number;
}

/** Sends `requests` requests through the app in-process, measuring the heap after GC at each checkpoint. */
export interface DriveResult {
  checkpoints: HeapCheckpoint[];
  statuses: Record<string, number>;
  /** Time spent sending requests, without the GCs of the checkpoints. */
  busySeconds: number;
  /** CPU time (user + system) this process spent meanwhile: unlike wall time, not inflated when other work takes the cores. */
  cpuSeconds: number;
}

async function drive(options: DriveOptions): Promise<DriveResult> {
  const app = built!.app;
  const body = Buffer.from(CHAT_BODY);
  const statuses: Record<string, number> = {};
  const checkpoints: HeapCheckpoint[] = [];
  const started = performance.now();
  const measure = (requests: number) => {
    collectGarbage();
    const usage = process.memoryUsage();
    checkpoints.push({
      requests,
      heapUsed: usage.heapUsed,
      rss: usage.rss,
      external: usage.external,
      seconds: (performance.now() - started) / 1000,
    });
  };
  measure(0);
  const every = Math.max(1, Math.floor(options.requests / options.checkpoints));
  let done = 0;
  let busy = 0;
  let cpuMicros = 0;
  while (done < options.requests) {
    const batchStarted = performance.now();
    const cpuStarted = process.cpuUsage();
    const batchEnd = Math.min(options.requests, (Math.floor(done / every) + 1) * every);
    const first = done;
    await sendAll(
      app,
      batchEnd - first,
      options.concurrency,
      (i) => ({ method: 'POST', url: CHAT_PATH, headers: authHeaders(benchKey((first + i) % options.keys)), body }),
      statuses,
    );
    done = batchEnd;
    busy += performance.now() - batchStarted;
    const cpu = process.cpuUsage(cpuStarted);
    cpuMicros += cpu.user + cpu.system;
    // Let settle listeners that run after 'close' finish before the heap is measured.
    await new Promise((resolve) => setTimeout(resolve, 20));
    measure(done);
    if (options.maxSeconds !== undefined && (performance.now() - started) / 1000 > options.maxSeconds) break;
  }
  return { checkpoints, statuses, busySeconds: busy / 1000, cpuSeconds: cpuMicros / 1e6 };
}

export interface BlockOptions {
  requests: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Each request takes the next of this many keys (benchKey(i)), continuing from the block before. */
  keys: number;
  /** Send the streamed chat body instead of the JSON one. */
  stream: boolean;
}

/** What one block of requests cost this process. */
export interface BlockCost {
  requests: number;
  /** user + system of the whole process (every thread: the collector's helpers too), µs. */
  cpuUs: number;
  /** Collections within the block (v8.GCProfiler), µs: part of cpuUs. */
  gcUs: number;
  wallUs: number;
  non2xx: number;
}

let blockRequests = 0;

/**
 * One block of requests in-process, its CPU measured here: what runs after the last answer within a turn of the
 * event loop is the block's, anything later (a settle batched for a few ms) is counted in the next block.
 */
async function block(options: BlockOptions): Promise<BlockCost> {
  const body = Buffer.from(options.stream ? STREAM_CHAT_BODY : CHAT_BODY);
  const headers = Array.from({ length: options.keys }, (_, index) => authHeaders(benchKey(index)));
  const first = blockRequests;
  blockRequests += options.requests;
  // Every collection in the block, as it happens (a `gc` observer's entries arrive a turn of the loop later).
  const collections = new GCProfiler();
  collections.start();
  const wall = performance.now();
  const { cpuUs, statuses } = await cpuPerRequest(built!.app, options.requests, options.concurrency, (i) => ({
    method: 'POST',
    url: CHAT_PATH,
    headers: headers[(first + i) % options.keys]!,
    body,
  }));
  const wallUs = (performance.now() - wall) * 1000;
  const gcUs = collections.stop().statistics.reduce((sum, entry) => sum + entry.cost, 0);
  return { requests: options.requests, cpuUs: cpuUs * options.requests, gcUs, wallUs, non2xx: non2xx(statuses) };
}

let built: BuiltApp<RequestListener> | undefined;
let server: Server | undefined;

function reply(id: number, ok: boolean, value?: unknown, error?: string): void {
  process.send?.({ id, ok, value, error });
}

function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
}

async function handle(message: Message): Promise<unknown> {
  switch (message.type) {
    case 'start': {
      const spec = message.spec!;
      built = await buildApp(spec.app, spec.options);
      server = createServer(built.app);
      server.keepAliveTimeout = 60_000;
      await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
      return { port: (server.address() as AddressInfo).port, note: built.note };
    }
    case 'memory': {
      const before = process.memoryUsage();
      collectGarbage();
      return { before, afterGc: process.memoryUsage() };
    }
    case 'drive':
      return drive(message.drive!);
    case 'block':
      return block(message.block!);
    case 'close': {
      server?.closeAllConnections();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      await built?.close();
      setImmediate(() => process.exit(0));
      return {};
    }
    default:
      throw new Error(`unknown message ${message.type}`);
  }
}

process.on('message', (message: Message) => {
  handle(message).then(
    (value) => reply(message.id, true, value),
    (error: unknown) => reply(message.id, false, undefined, error instanceof Error ? error.message : String(error)),
  );
});
process.on('disconnect', () => process.exit(0));
