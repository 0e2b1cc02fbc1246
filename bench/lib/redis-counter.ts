// A counting TCP relay in front of Redis: every command a bench app sends, and every round trip it waits for.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ScriptBundle } from '../../packages/redis/src/script-bundle.js';
import { SCRIPTS } from '../../packages/redis/src/scripts.js';
import { REDIS_URL } from './fixtures.js';

export interface SeenCommand {
  /** Upper-case command name, e.g. EVALSHA; EVALSHA(bundle) for @tollgate/redis's script bundle. */
  name: string;
  /** The first key, when the command names one (EVAL/EVALSHA: after numkeys; most others: the first argument). */
  key?: string;
  at: number;
}

/** Commands without keys, or whose first argument is not a key. */
const KEYLESS = new Set([
  'PING',
  'TIME',
  'HELLO',
  'AUTH',
  'SELECT',
  'CLIENT',
  'SCRIPT',
  'INFO',
  'QUIT',
  'MULTI',
  'EXEC',
  'DISCARD',
  'FUNCTION',
  'COMMAND',
]);

/**
 * Parses RESP arrays of bulk strings (what every client sends) from a growing buffer.
 * Returns the commands found and how many bytes they used; an incomplete tail is left for later.
 */
function parseCommands(buffer: Buffer): { commands: string[][]; used: number } {
  const commands: string[][] = [];
  let offset = 0;
  outer: while (offset < buffer.length) {
    if (buffer[offset] !== 0x2a /* '*' */) {
      // An inline command: one line.
      const end = buffer.indexOf('\r\n', offset);
      if (end < 0) break;
      commands.push(buffer.toString('latin1', offset, end).split(' '));
      offset = end + 2;
      continue;
    }
    const headerEnd = buffer.indexOf('\r\n', offset);
    if (headerEnd < 0) break;
    const count = Number(buffer.toString('latin1', offset + 1, headerEnd));
    let cursor = headerEnd + 2;
    const args: string[] = [];
    for (let i = 0; i < count; i++) {
      const lengthEnd = buffer.indexOf('\r\n', cursor);
      if (lengthEnd < 0) break outer;
      const length = Number(buffer.toString('latin1', cursor + 1, lengthEnd));
      const start = lengthEnd + 2;
      if (start + length + 2 > buffer.length) break outer;
      // Arguments past the first few can be long scripts or payloads: keep only what naming needs.
      args.push(i < 4 ? buffer.toString('utf8', start, Math.min(start + length, start + 200)) : '');
      cursor = start + length + 2;
    }
    commands.push(args);
    offset = cursor;
  }
  return { commands, used: offset };
}

/** The SHA1 of @tollgate/redis's script bundle, and the start of its source (EVAL sends the source). */
const BUNDLE = new ScriptBundle(SCRIPTS).script;

function describeCommand(args: string[], at: number): SeenCommand {
  let name = (args[0] ?? '').toUpperCase();
  if (name === 'EVALSHA' || name === 'EVAL' || name === 'EVALSHA_RO' || name === 'EVAL_RO' || name === 'FCALL') {
    // The relay keeps the first 200 characters of each argument: enough to know the bundle's source.
    if (args[1] === BUNDLE.sha1 || (name === 'EVAL' && args[1] !== undefined && BUNDLE.source.startsWith(args[1])))
      name = `${name}(bundle)`;
    return Number(args[2]) > 0 && args[3] !== undefined ? { name, key: args[3], at } : { name, at };
  }
  if (KEYLESS.has(name) || args[1] === undefined) return { name, at };
  return { name, key: args[1], at };
}

/** The commands and flights (round trips) of one call, before it resolved and after it. */
interface Trip {
  before: SeenCommand[];
  after: SeenCommand[];
  tripsBefore: number;
  tripsAfter: number;
}

export class RedisCommandCounter {
  readonly commands: SeenCommand[] = [];
  /** Client flights: times a client sent after it had last heard from Redis (its own sequential waits). */
  roundTrips = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly target: { host: string; port: number }) {}

  /** A relay in front of the Redis at `url` (the shared one by default), started; its URL is `relayUrl`. */
  static async inFrontOf(url = REDIS_URL): Promise<{ counter: RedisCommandCounter; relayUrl: string }> {
    const target = new URL(url);
    const counter = new RedisCommandCounter({ host: target.hostname, port: Number(target.port || 6379) });
    return { counter, relayUrl: await counter.start() };
  }

  async start(): Promise<string> {
    this.server = createServer((client) => this.relay(client));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `redis://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private relay(client: Socket): void {
    const upstream = createConnection(this.target);
    this.sockets.add(client).add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let pending: Buffer = Buffer.alloc(0);
    let lastFromClient = false;
    client.on('data', (data: Buffer) => {
      upstream.write(data);
      if (!lastFromClient) this.roundTrips++;
      lastFromClient = true;
      pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
      const { commands, used } = parseCommands(pending);
      pending = pending.subarray(used);
      const at = performance.now();
      for (const args of commands) this.commands.push(describeCommand(args, at));
    });
    upstream.on('data', (data: Buffer) => {
      lastFromClient = false;
      client.write(data);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  }

  /** Waits until the relay has seen no command for `quietMs` (the settles after an answer are done), at most `maxMs`. */
  async quiet(quietMs: number, maxMs: number): Promise<void> {
    const deadline = performance.now() + maxMs;
    while (performance.now() < deadline) {
      const quietFor = performance.now() - (this.commands.at(-1)?.at ?? 0);
      if (quietFor >= quietMs) return;
      await sleep(quietMs - quietFor + 1);
    }
  }

  /** What `send` sent until it resolved ("before"), and after it until the relay was quiet for 20 ms ("after"). */
  async trip(send: () => Promise<unknown>, maxQuietMs = 500): Promise<Trip> {
    const start = this.commands.length;
    const startTrips = this.roundTrips;
    await send();
    const answered = this.commands.length;
    const answeredTrips = this.roundTrips;
    await this.quiet(20, maxQuietMs);
    return {
      before: this.commands.slice(start, answered),
      after: this.commands.slice(answered),
      tripsBefore: answeredTrips - startTrips,
      tripsAfter: this.roundTrips - answeredTrips,
    };
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
