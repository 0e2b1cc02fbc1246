// Child entry: builds bench apps, serves the first on an ephemeral port, drives any of them in-process in blocks on the
// parent's asking (IPC). Several apps in one process share one heap and JIT: a section compares them block by block.
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GCProfiler } from 'node:v8';
import type { BuiltApp } from './app-base.js';
import { buildApp } from './apps.js';
import { deploymentBody } from './deployment-config.js';
import { authHeaders, benchKey, CHAT_BODY, CHAT_PATH, chatBody, STREAM_CHAT_BODY } from './fixtures.js';
import { cpuPerRequest } from './inject.js';
import { non2xx } from './stats.js';
import type { ServerSpec } from './child.js';

interface Message {
  id: number;
  type: string;
  spec?: ServerSpec;
  block?: BlockOptions;
}

export interface BlockOptions {
  requests: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Each request takes the next of this many keys (benchKey(i)), continuing from the block before. */
  keys: number;
  /** Send the streamed chat body instead of the JSON one. */
  stream?: boolean;
  /** Send the deployment workload's request (deployment-config.ts) instead of the chat benches' one. */
  deployment?: boolean;
  /** Every request a user message never sent before (the system prompt repeats, as in real traffic). */
  freshPrompts?: boolean;
  /** Which of the apps built in this process (0: the one served). */
  app?: number;
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

const built: BuiltApp<RequestListener>[] = [];
let server: Server | undefined;
let blockRequests = 0;

/**
 * One block of requests in-process, its CPU measured here: what runs after the last answer within a turn of the
 * event loop is the block's, anything later (a settle batched for a few ms) is counted in the next block.
 */
async function block(options: BlockOptions): Promise<BlockCost> {
  const stream = options.stream ?? false;
  const fixed = Buffer.from(options.deployment ? deploymentBody(stream) : stream ? STREAM_CHAT_BODY : CHAT_BODY);
  const headers = Array.from({ length: options.keys }, (_, index) => authHeaders(benchKey(index)));
  const first = blockRequests;
  blockRequests += options.requests;
  // Every collection in the block, as it happens (a `gc` observer's entries arrive a turn of the loop later).
  const collections = new GCProfiler();
  collections.start();
  const wall = performance.now();
  const app = built[options.app ?? 0]!.app;
  const { cpuUs, statuses } = await cpuPerRequest(app, options.requests, options.concurrency, (i) => ({
    method: 'POST',
    url: CHAT_PATH,
    headers: headers[(first + i) % options.keys]!,
    body: options.freshPrompts ? Buffer.from(chatBody(first + i + 1)) : fixed,
  }));
  const wallUs = (performance.now() - wall) * 1000;
  const gcUs = collections.stop().statistics.reduce((sum, entry) => sum + entry.cost, 0);
  return { requests: options.requests, cpuUs: cpuUs * options.requests, gcUs, wallUs, non2xx: non2xx(statuses) };
}

async function handle(message: Message): Promise<unknown> {
  switch (message.type) {
    case 'start': {
      const first = await buildApp(message.spec!.app, message.spec!.options);
      built.push(first);
      server = createServer(first.app);
      server.keepAliveTimeout = 60_000;
      await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
      return { port: (server.address() as AddressInfo).port, note: first.note };
    }
    case 'build':
      built.push(await buildApp(message.spec!.app, message.spec!.options));
      return built.length - 1;
    case 'block':
      return block(message.block!);
    case 'close': {
      server?.closeAllConnections();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      for (const app of built) await app.close();
      setImmediate(() => process.exit(0));
      return {};
    }
    default:
      throw new Error(`unknown message ${message.type}`);
  }
}

process.on('message', (message: Message) => {
  handle(message).then(
    (value) => process.send?.({ id: message.id, ok: true, value }),
    (error: unknown) =>
      process.send?.({ id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
