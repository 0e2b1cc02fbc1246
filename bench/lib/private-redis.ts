// A redis-server of the bench's own (same binary, free port), so its INFO counts only the bench's traffic.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { createClient } from 'redis';

/** What Redis spent on commands, and its process CPU, at one moment. */
interface RedisCost {
  /** Commands by name (lower case, as INFO commandstats names them): calls and µs spent running them. */
  commands: Map<string, { calls: number; usec: number }>;
  /** used_cpu_user + used_cpu_sys of the server process, in µs: command execution plus networking and parsing. */
  processCpuUs: number;
}

/** Commands the bench itself sends to read the figures: not part of any case's cost. */
const OWN_COMMANDS = new Set(['info', 'config', 'ping', 'hello', 'client', 'select']);

/** Per request, between two readings. */
export interface CostPerRequest {
  calls: number;
  commandUs: number;
  processCpuUs: number;
  /** Calls per request by command name. */
  byCommand: Map<string, { calls: number; usec: number }>;
}

/** A TCP port nothing listens on now (the kernel's pick). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The redis-server's CPU so far (user + system, µs), from the text of `INFO cpu`. */
function redisProcessCpuUs(infoCpu: string): number {
  const seconds = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(infoCpu)?.[1] ?? 0);
  return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6;
}

export class PrivateRedis {
  #child: ChildProcess | undefined;
  #client: ReturnType<typeof createClient> | undefined;
  #port = 0;

  get url(): string {
    return `redis://127.0.0.1:${this.#port}`;
  }

  /** Starts `redis-server` from PATH (or REDIS_SERVER) with no persistence; rejects if it cannot. */
  async start(): Promise<void> {
    this.#port = await freePort();
    const binary = process.env.REDIS_SERVER ?? 'redis-server';
    const child = spawn(
      binary,
      ['--port', String(this.#port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.#child = child;
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        if (!chunk.toString().includes('Ready to accept connections')) return;
        child.stdout?.off('data', onData);
        resolve();
      };
      child.stdout?.on('data', onData);
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`${binary} exited with ${code}`)));
    });
    child.stdout?.resume();
    child.stderr?.resume();
    this.#client = createClient({ url: this.url });
    this.#client.on('error', () => undefined);
    await this.#client.connect();
  }

  async version(): Promise<string> {
    return /redis_version:(\S+)/.exec(await this.#client!.info('server'))?.[1] ?? 'unknown';
  }

  /** CONFIG RESETSTAT: commandstats start from zero (the process CPU is not reset: read it before and after). */
  async resetStats(): Promise<void> {
    await this.#client!.configResetStat();
  }

  async cost(): Promise<RedisCost> {
    const [commandstats, cpu] = [await this.#client!.info('commandstats'), await this.#client!.info('cpu')];
    const commands = new Map<string, { calls: number; usec: number }>();
    for (const match of commandstats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
      commands.set(match[1]!, { calls: Number(match[2]), usec: Number(match[3]) });
    }
    return { commands, processCpuUs: redisProcessCpuUs(cpu) };
  }

  /** A redis-server of the bench's own, started; undefined (and `why` logged) when none can start here. */
  static async startOrNone(log: (message: string) => void, who: string): Promise<PrivateRedis | undefined> {
    const redis = new PrivateRedis();
    try {
      await redis.start();
      return redis;
    } catch (error) {
      log(`${who}: no redis-server of its own (${String(error)})`);
      await redis.stop();
      return undefined;
    }
  }

  async stop(): Promise<void> {
    if (this.#client?.isOpen) await this.#client.quit().catch(() => undefined);
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
}

/** The commands that run scripts: what the cases send (§4 lists every command they send, through a relay). */
const SCRIPT_COMMANDS = new Set(['evalsha', 'eval', 'evalsha_ro', 'eval_ro', 'fcall']);

/**
 * What happened between two readings, per request. INFO also lists the commands scripts run
 * inside (the INCR, HMGET... of a Lua script), whose time is already in their script's:
 * `calls` and `commandUs` count the script commands only (every case here sends nothing else).
 */
export function costPerRequest(before: RedisCost, after: RedisCost, requests: number): CostPerRequest {
  const byCommand = new Map<string, { calls: number; usec: number }>();
  let calls = 0;
  let usec = 0;
  for (const [name, now] of after.commands) {
    if (OWN_COMMANDS.has(name)) continue;
    const then = before.commands.get(name) ?? { calls: 0, usec: 0 };
    const delta = { calls: (now.calls - then.calls) / requests, usec: (now.usec - then.usec) / requests };
    if (delta.calls === 0) continue;
    byCommand.set(name, delta);
    if (!SCRIPT_COMMANDS.has(name)) continue;
    calls += delta.calls;
    usec += delta.usec;
  }
  return { calls, commandUs: usec, processCpuUs: (after.processCpuUs - before.processCpuUs) / requests, byCommand };
}

/** What one case spent in Redis over its measured rounds, summed, and the requests they served. */
interface RedisSpend extends CostPerRequest {
  requests: number;
}

/** Redis cost per case, summed over its measured rounds (warm-ups left out). */
export class CostLedger {
  readonly #totals = new Map<string, RedisSpend>();

  /** Adds a round's cost (per request, as costPerRequest gives it) over `requests` to `name`'s. */
  add(name: string, cost: CostPerRequest, requests: number): void {
    const sum = this.#totals.get(name) ?? {
      requests: 0,
      calls: 0,
      commandUs: 0,
      processCpuUs: 0,
      byCommand: new Map(),
    };
    sum.requests += requests;
    sum.calls += cost.calls * requests;
    sum.commandUs += cost.commandUs * requests;
    sum.processCpuUs += cost.processCpuUs * requests;
    for (const [command, value] of cost.byCommand) {
      const total = sum.byCommand.get(command) ?? { calls: 0, usec: 0 };
      sum.byCommand.set(command, {
        calls: total.calls + value.calls * requests,
        usec: total.usec + value.usec * requests,
      });
    }
    this.#totals.set(name, sum);
  }

  /** The sums over every measured round of `name`. */
  totals(name: string): RedisSpend | undefined {
    return this.#totals.get(name);
  }

  /** Per request over every measured round of `name`. */
  perRequest(name: string): CostPerRequest | undefined {
    const sum = this.#totals.get(name);
    if (!sum || sum.requests === 0) return undefined;
    const per = (value: number) => value / sum.requests;
    const byCommand = new Map(
      [...sum.byCommand].map(([command, v]) => [command, { calls: per(v.calls), usec: per(v.usec) }]),
    );
    return { calls: per(sum.calls), commandUs: per(sum.commandUs), processCpuUs: per(sum.processCpuUs), byCommand };
  }
}
