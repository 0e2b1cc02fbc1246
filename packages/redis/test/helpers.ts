// Real Redis for the @tollgate/redis tests: the shared server, or a private redis-server this file starts and stops.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { createClient } from 'redis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export const uniquePrefix = () => `tg-test:${randomUUID()}:`;

/** Fails (never skips) with a fix when the shared Redis is not there. */
export async function requireRedis(): Promise<void> {
  const client = createClient({ url: REDIS_URL, socket: { reconnectStrategy: false, connectTimeout: 2000 } });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    throw new Error(
      `These tests need Redis at ${REDIS_URL} (${(error as Error).message}). Start it with:\n  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`,
    );
  } finally {
    if (client.isOpen) await client.close();
  }
}

/** Every key under `prefix`, via SCAN (the shared server is never flushed). */
export async function keysWithPrefix(prefix: string): Promise<string[]> {
  const client = createClient({ url: REDIS_URL });
  client.on('error', () => undefined);
  await client.connect();
  const found: string[] = [];
  try {
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) found.push(...keys);
  } finally {
    await client.close();
  }
  return found;
}

export async function deleteKeys(prefix: string): Promise<void> {
  const keys = await keysWithPrefix(prefix);
  if (keys.length === 0) return;
  const client = createClient({ url: REDIS_URL });
  client.on('error', () => undefined);
  await client.connect();
  await client.unlink(keys);
  await client.close();
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A redis-server of our own on `port`, so a test can stop and restart it without touching the shared one. */
export class PrivateRedis {
  #child: ChildProcess | undefined;
  /** `args`: more redis-server arguments (persistence for a test that kills and restarts it). */
  constructor(
    readonly port: number,
    readonly args: readonly string[] = [],
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        if (chunk.toString().includes('Ready to accept connections')) {
          child.stdout?.off('data', onData);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
    });
    child.stdout?.resume();
    child.stderr?.resume();
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) the server: a Redis that stalls without closing its connections. */
  signal(signal: 'SIGSTOP' | 'SIGCONT'): void {
    this.#child?.kill(signal);
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null) return;
    this.#child = undefined;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
}

/** Retries `attempt` until it resolves or `withinMs` passes. */
export async function eventually<T>(attempt: () => Promise<T>, withinMs = 10_000): Promise<T> {
  const until = Date.now() + withinMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
