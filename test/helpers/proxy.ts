// Test helpers: run the example proxy and its mock provider on real ports, in-process or as child processes.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createMemoryStores } from '@tollgate/core';
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import { pino } from 'pino';
import { createGatewayApp } from '../../packages/gateway/src/app.js';
import type { GatewayApp, GatewayDeps } from '../../packages/gateway/src/app.js';
import type { GatewayConfig } from '../../packages/gateway/src/config/index.js';
import { preloadTokenizers } from '@tollgate/providers';
import { createMockProvider } from '@tollgate/providers/mock';
import type { MockBehavior, MockProvider } from '@tollgate/providers/mock';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A fresh key in the tollgate format. */
export const newApiKey = generateApiKey;

/** SHA-256 hex of a key, as the config's `keys[].sha256` and `adminKeySha256` hold it. */
export const sha256Hex = hashApiKey;

export async function listen(server: Server): Promise<string> {
  if (!server.listening) await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

/** Closes a server and cuts whatever connections remain (kept-alive sockets, hanging streams). */
export async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

export interface RunningProxy {
  app: GatewayApp;
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** How a config names the built-in mock as its upstream, on purpose. */
export const MOCK_UPSTREAMS: NonNullable<GatewayConfig['upstreams']> = { mock: { kind: 'mock' } };
/** A config's fields that serve the built-in mock, to spread into a test's config. */
export const WITH_MOCK = { upstreams: MOCK_UPSTREAMS };

/** The proxy's access and error log, silent: a test that reads it passes a `logger` of its own. */
const silentLogger = pino({ level: 'silent' });

/** The proxy app from `config`, listening on an ephemeral port of 127.0.0.1. */
export async function startProxy(config: GatewayConfig, deps: GatewayDeps = {}): Promise<RunningProxy> {
  // Both encodings in before the first request, so its counts are exact, not the byte bound.
  await preloadTokenizers();
  // Blocks (on by default on Redis) held at most a second unless a test says otherwise: tests read budgets once the
  // blocks went back and their spend settled (10 s by default). Blocks at their defaults are tested on their own
  // (test/layer-conformance.test.ts, core's block tests) and measured in bench/deployment.ts.
  if (config.redis?.blocks === undefined) config = { ...config, redis: { ...config.redis, blocks: { maxAge: '1s' } } };
  // A test that names no upstream is served by the mock (`deps.mock`, else a fresh one), named as a config must.
  if (config.upstreams === undefined) config = { ...config, upstreams: MOCK_UPSTREAMS };
  const app = createGatewayApp(config, { log: () => undefined, logger: silentLogger, ...deps });
  const server = app.listen(0, '127.0.0.1');
  const url = await listen(server);
  return {
    app,
    url,
    server,
    async close() {
      await closeServer(server);
      await app.close();
    },
  };
}

export interface RunningMock {
  mock: MockProvider;
  /** Base URL without a path: OpenAI upstreams use `${url}/v1`, Anthropic ones `${url}`. */
  url: string;
  close(): Promise<void>;
}

/** The mock provider as a real upstream on its own port. */
export async function startMockUpstream(behavior: MockBehavior = {}): Promise<RunningMock> {
  const mock = createMockProvider(behavior);
  const server = mock.app.listen(0, '127.0.0.1');
  const url = await listen(server);
  return {
    mock,
    url,
    async close() {
      mock.close();
      await closeServer(server);
    },
  };
}

export interface SpawnedProxy {
  url: string;
  child: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Node running the proxy's TypeScript itself, as `pnpm start` does: signals reach the proxy, not a
 * wrapper (the tsx command relays SIGTERM, and kills a child that does not acknowledge it within 60 ms).
 */
const PROXY_COMMAND = ['--import', 'tsx', '--conditions=source', 'examples/proxy/src/main.ts'];

/**
 * How long a proxy may take to listen. It starts in 4–5 s on a quiet machine (PGlite's initdb is about 2.7 s of CPU,
 * the TypeScript's transform most of the rest); CI's `test:unit` on a busy two-core machine once took over 20 s, with
 * nothing wrong. A proxy that never listens still fails the test, with what it printed.
 */
const PROXY_START_MS = 60_000;

/** Runs `examples/proxy/src/main.ts` as its own process, the way `pnpm start` does, and waits until it listens. */
export async function spawnProxy(env: Record<string, string>, timeoutMs = PROXY_START_MS): Promise<SpawnedProxy> {
  const child = spawn(process.execPath, PROXY_COMMAND, {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      // A proxy that never listened is stopped, not left running: it would hold jest open after the run.
      child.kill('SIGKILL');
      reject(new Error(`proxy did not start in ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const onData = () => {
      const match = /listening on (http:\/\/localhost:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!.replace('localhost', '127.0.0.1'));
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`proxy exited with ${code} before listening:\n${output}`));
    });
  });
  return {
    url,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Runs main.ts expecting it to refuse to start; resolves with its exit code and output. */
export async function runProxyExpectingExit(
  env: Record<string, string>,
  timeoutMs = PROXY_START_MS,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, PROXY_COMMAND, {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, output };
}

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Deletes every Redis key under `prefix` (a test's own unique prefix; never a flush of the shared server). */
export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const { createClient } = await import('redis');
  const client = createClient({ url: REDIS_URL });
  client.on('error', () => undefined);
  await client.connect();
  try {
    let cursor = '0';
    do {
      const reply = await client.scan(cursor, { MATCH: `${prefix}*`, COUNT: 500 });
      cursor = String(reply.cursor);
      if (reply.keys.length > 0) await client.del(reply.keys);
    } while (cursor !== '0');
  } finally {
    await client.close();
  }
}

/** Redis stores on a prefix of the test's own, and how to give them back (closed, every key deleted). */
export function redisTestStores(name: string): { stores: TollgateStores; release(): Promise<void> } {
  const prefix = `tg-test:${name}:${randomUUID()}:`;
  const stores = createRedisStores({ url: REDIS_URL, prefix });
  return {
    stores,
    async release() {
      await stores.close();
      await deleteRedisPrefix(prefix);
    },
  };
}

/** Stores a test owns, and how to let them go. */
export type OwnedStores = { stores: TollgateStores; release(): Promise<void> };

/** `describe.each` rows: fresh memory stores, and Redis stores under a prefix of their own named for `name`. */
export function memoryAndRedisStores(name: string): [kind: 'memory' | 'Redis', storesFor: () => OwnedStores][] {
  return [
    [
      'memory',
      () => {
        const stores = createMemoryStores();
        return { stores, release: () => stores.close() };
      },
    ],
    ['Redis', () => redisTestStores(name)],
  ];
}

/**
 * Gateways on `owned`'s stores, the `index`th from `configOf(index)`: one on memory stores (its request windows are its
 * own limiter's: memory serves one process), two on Redis, the second with stores of its own on the same prefix, as
 * another process would have. `close` closes them and the second's stores; `owned` stays the caller's.
 */
export async function startSharingGateways(
  kind: 'memory' | 'Redis',
  owned: OwnedStores,
  configOf: (index: number) => GatewayConfig,
  depsOf: () => GatewayDeps = () => ({}),
): Promise<{ gateways: RunningProxy[]; close(): Promise<void> }> {
  const all = [owned.stores];
  if (kind === 'Redis') {
    const prefix = (owned.stores as { prefix?: string }).prefix!;
    all.push(createRedisStores({ url: REDIS_URL, prefix, timeoutMs: 5_000 }));
  }
  const gateways: RunningProxy[] = [];
  for (const [index, stores] of all.entries())
    gateways.push(await startProxy(configOf(index), { ...depsOf(), stores }));
  return {
    gateways,
    async close() {
      for (const gateway of gateways) await gateway.close();
      for (const stores of all.slice(1)) await stores.close();
    },
  };
}

/** The records of a JSONL usage log (none when it was never written). */
export function readUsageLog(file: string): UsageRecord[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as UsageRecord);
}

/** The error a promise rejects with; fails the test when it resolves. */
export async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('the request succeeded');
}

/** Sends until answered, 100 ms apart (about 15 s at most): a call refused while a store comes back is sent again. */
export async function sentUntilAnswered<T>(send: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await send();
    } catch (error) {
      if (attempt > 150) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** The details of a gateway's /healthz (upstreams, targets, stores): only the admin key sees them. */
export async function healthDetails<T = Record<string, unknown>>(url: string, adminKey: string): Promise<T> {
  return (await (await fetch(`${url}/healthz`, { headers: { authorization: `Bearer ${adminKey}` } })).json()) as T;
}

/** Polls `read` until it returns a value (about 5 s at most). */
export async function waitFor<T>(read: () => T | undefined | Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = await read();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export interface FakeUpstreamRequest {
  method: string;
  /** Path and query, as the upstream received them. */
  url: string;
  headers: IncomingHttpHeaders;
  /** The JSON body parsed (undefined when it was none). */
  body: unknown;
  /** The body's bytes as they came (a multipart upload, say). */
  raw: Buffer;
}

export interface FakeUpstream {
  /** Base URL without a path. */
  url: string;
  /** Every request received, oldest first. */
  requests: FakeUpstreamRequest[];
  close(): Promise<void>;
}

/** A bare node:http upstream that records each request and answers it with `answer`: a provider the mock does not imitate. */
export async function startFakeUpstream(
  answer: (request: FakeUpstreamRequest, res: ServerResponse) => void,
): Promise<FakeUpstream> {
  const requests: FakeUpstreamRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const text = raw.toString('utf8');
      let body: unknown;
      try {
        body = text.length > 0 ? JSON.parse(text) : undefined;
      } catch {
        body = text;
      }
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, raw };
      requests.push(request);
      answer(request, res);
    });
  });
  server.listen(0, '127.0.0.1');
  const url = await listen(server);
  return { url, requests, close: () => closeServer(server) };
}

/** A response's status and its JSON body (a body that is not JSON as `{ text }`). */
export async function answerOf(response: Response): Promise<{ status: number; body: Record<string, unknown> }> {
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { status: response.status, body: { text } };
  }
}
