// One Lua script holding every store script as a local function, so that many store operations run in one EVALSHA.
import { LuaScript, type SendCommand } from './lua.js';

/** A store script call, as `LuaScript.run` sends it: `['EVALSHA', sha1, numkeys, ...keys, ...args]`. */
export type ScriptCommand = readonly string[];

/** What one operation of a bundle answered: its script's reply, or the error it raised. */
export type BundledReply = { ok: true; value: unknown } | { ok: false; error: BundledScriptError };

/** An error one operation of a bundle raised; the other operations of the bundle ran as usual. */
export class BundledScriptError extends Error {
  override readonly name = 'BundledScriptError';
  constructor(readonly script: string, message: string) {
    super(message);
  }
}

/** Lua keywords, the globals a Redis script sees, and the bundle's own locals: no script may shadow them. */
const TAKEN_NAMES = new Set([
  'and', 'break', 'do', 'else', 'elseif', 'end', 'false', 'for', 'function', 'if', 'in', 'local', 'nil', 'not', 'or',
  'repeat', 'return', 'then', 'true', 'until', 'while',
  'redis', 'cjson', 'cmsgpack', 'bit', 'struct', 'math', 'string', 'table', 'os', 'KEYS', 'ARGV', '_G', 'assert', 'error',
  'ipairs', 'pairs', 'next', 'pcall', 'xpcall', 'rawequal', 'rawget', 'rawset', 'select', 'setmetatable', 'getmetatable',
  'tonumber', 'tostring', 'type', 'unpack', 'loadstring', 'print',
  'scripts', 'readsClock', 'now', 'replies', 'k', 'a', 'op', 'index', 'nkeys', 'nargs', 'keys', 'args', 'i', 'ok', 'reply',
]);

/**
 * The bundle reads TIME once, when its first operation whose script reads `ARGV.now` comes up,
 * and hands it to each of those (the scripts' prelude reads it there, and calls TIME itself when
 * run alone). Each operation runs under pcall, so its error becomes its own reply: {1, reply} or
 * {0, error message}, one per operation, in order.
 * ARGV: the number of operations, then per operation its script's position, its number of keys,
 * its number of arguments and the arguments; KEYS: every operation's keys, one after the other.
 */
function bundleSource(scripts: readonly LuaScript[]): string {
  const functions = scripts.map((script) => `local function ${script.name}(KEYS, ARGV)\n${script.source}\nend`);
  return `
  ${functions.join('\n')}
  local scripts = {${scripts.map((script) => script.name).join(', ')}}
  local readsClock = {${scripts.map((script) => String(script.source.includes('ARGV.now'))).join(', ')}}
  local now
  local replies = {}
  local k = 1
  local a = 2
  for op = 1, tonumber(ARGV[1]) do
    local index = tonumber(ARGV[a])
    local nkeys = tonumber(ARGV[a + 1])
    local nargs = tonumber(ARGV[a + 2])
    a = a + 3
    -- Copied one by one: unpack() stops at a few thousand values, and a settle batch can carry more.
    local keys = {}
    for i = 1, nkeys do keys[i] = KEYS[k + i - 1] end
    k = k + nkeys
    local args = {}
    for i = 1, nargs do args[i] = ARGV[a + i - 1] end
    a = a + nargs
    if readsClock[index] then
      if now == nil then
        local time = redis.call('TIME')
        now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
      end
      args.now = now
    end
    local ok, reply = pcall(scripts[index], keys, args)
    if ok then
      replies[op] = {1, reply}
    else
      -- redis.call raises a table {err = message}; Lua itself raises a string.
      replies[op] = {0, type(reply) == 'table' and reply.err or tostring(reply)}
    end
  end
  return replies
  `;
}

/**
 * Built from the store scripts as they are written (scripts.ts stays the one place where each
 * operation is written): any `new LuaScript(name, source)` that reads its KEYS and ARGV can join.
 */
export class ScriptBundle {
  readonly script: LuaScript;
  readonly #scripts: readonly LuaScript[];
  /** Position (1-based, as in the bundle's Lua table) by SHA1. */
  readonly #positions = new Map<string, number>();

  constructor(scripts: Readonly<Record<string, LuaScript>>) {
    this.#scripts = Object.values(scripts);
    this.#scripts.forEach((script, index) => {
      if (!/^[A-Za-z_]\w*$/.test(script.name) || TAKEN_NAMES.has(script.name)) {
        throw new Error(`A bundled script needs a name that is a free Lua identifier; got ${JSON.stringify(script.name)}`);
      }
      this.#positions.set(script.sha1, index + 1);
    });
    this.script = new LuaScript('bundle', bundleSource(this.#scripts));
  }

  /** The position of the script with this SHA1, when the bundle holds it. */
  positionOf(sha1: string | undefined): number | undefined {
    return sha1 === undefined ? undefined : this.#positions.get(sha1);
  }

  /** Runs the calls (scripts of this bundle, in order) in one EVALSHA; one reply per call. */
  async run(send: SendCommand, calls: readonly ScriptCommand[]): Promise<BundledReply[]> {
    const keys: string[] = [];
    const args: string[] = [String(calls.length)];
    for (const command of calls) {
      const keyCount = Number(command[2]);
      args.push(String(this.#positions.get(command[1]!)), command[2]!, String(command.length - 3 - keyCount));
      for (let i = 3; i < 3 + keyCount; i++) keys.push(command[i]!);
      for (let i = 3 + keyCount; i < command.length; i++) args.push(command[i]!);
    }
    const replies = await this.script.run(send, keys, args);
    if (!Array.isArray(replies) || replies.length !== calls.length) {
      throw new Error(`the script bundle answered ${Array.isArray(replies) ? replies.length : typeof replies} replies for ${calls.length} operations`);
    }
    return replies.map((reply: unknown, index) => {
      const [status, value] = reply as [number, unknown];
      if (status === 1) return { ok: true, value: value ?? null };
      const script = this.#scripts[this.#positions.get(calls[index]![1]!)! - 1]!;
      return { ok: false, error: new BundledScriptError(script.name, String(value)) };
    });
  }
}
