// A counting TCP relay in front of Redis: every command a bench app sends, and every round trip it waits for.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { ScriptBundle } from '../../packages/redis/src/script-bundle.js';
import { SCRIPTS } from '../../packages/redis/src/scripts.js';

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

export class RedisCommandCounter {
  readonly commands: SeenCommand[] = [];
  /** Client flights: times a client sent after it had last heard from Redis (its own sequential waits). */
  roundTrips = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly target: { host: string; port: number }) {}

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

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
