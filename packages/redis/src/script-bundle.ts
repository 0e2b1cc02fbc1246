// One Lua script holding every store script as a local function, so that many store operations run in one EVALSHA.
import { LuaScript, type SendCommand } from './lua.js';

/** A store script call, as `LuaScript.run` sends it: `['EVALSHA', sha1, numkeys, ...keys, ...args]`. */
export type ScriptCommand = readonly string[];

/** What one operation of a bundle answered: its script's reply, or the error it raised. */
type BundledReply = { ok: true; value: unknown } | { ok: false; error: BundledScriptError };

/** One operation of a bundle, as the stores queue it (no EVALSHA command built), told its outcome. */
export interface BundleOperation {
  /** The script's position in the bundle (`positionOf`). */
  readonly position: number;
  readonly keys: readonly string[];
  readonly args: readonly (string | number)[];
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** An error one operation of a bundle raised; the other operations of the bundle ran as usual. */
export class BundledScriptError extends Error {
  override readonly name = 'BundledScriptError';
  constructor(
    readonly script: string,
    message: string,
  ) {
    super(message);
  }
}

/** Lua keywords, the globals a Redis script sees, and the bundle's own locals: no script may shadow them. */
const TAKEN_NAMES = new Set([
  'and',
  'break',
  'do',
  'else',
  'elseif',
  'end',
  'false',
  'for',
  'function',
  'if',
  'in',
  'local',
  'nil',
  'not',
  'or',
  'repeat',
  'return',
  'then',
  'true',
  'until',
  'while',
  'redis',
  'cjson',
  'cmsgpack',
  'bit',
  'struct',
  'math',
  'string',
  'table',
  'os',
  'KEYS',
  'ARGV',
  '_G',
  'assert',
  'error',
  'ipairs',
  'pairs',
  'next',
  'pcall',
  'xpcall',
  'rawequal',
  'rawget',
  'rawset',
  'select',
  'setmetatable',
  'getmetatable',
  'tonumber',
  'tostring',
  'type',
  'unpack',
  'loadstring',
  'print',
  'scripts',
  'readsClock',
  'now',
  'replies',
  'k',
  'a',
  'op',
  'header',
  'index',
  'nkeys',
  'nargs',
  'keys',
  'args',
  'i',
  'ok',
  'reply',
]);

// An operation's header packs its script's position, its number of arguments and its number of
// keys into one number, exact in a double (below 2^53): one argument per operation instead of
// three, as node-redis encodes every argument on its own. For the few keys of a store operation it
// stays a small integer, which is cheap to turn into a string.
const POSITIONS = 2 ** 6;
const ARG_COUNTS = 2 ** 21;
const KEY_COUNTS = 2 ** 26;

/** `position + POSITIONS * (args + ARG_COUNTS * keys)`, the bundle's Lua reads it back. */
function operationHeader(position: number, keyCount: number, argCount: number): string {
  if (keyCount >= KEY_COUNTS || argCount >= ARG_COUNTS)
    throw new Error(`a bundled operation takes fewer than ${KEY_COUNTS} keys and ${ARG_COUNTS} arguments`);
  return String(position + POSITIONS * (argCount + ARG_COUNTS * keyCount));
}

/**
 * The bundle reads TIME once, when its first operation whose script reads `ARGV.now` comes up,
 * and hands it to each of those (the scripts' prelude reads it there, and calls TIME itself when
 * run alone). Each operation runs under pcall, so its error becomes its own reply: {1, reply} or
 * {0, error message}, one per operation, in order.
 * ARGV: the number of operations, then per operation its header (see `operationHeader`) and its
 * arguments; KEYS: every operation's keys, one after the other.
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
    local header = tonumber(ARGV[a])
    local index = header % ${POSITIONS}
    local nargs = math.floor(header / ${POSITIONS}) % ${ARG_COUNTS}
    local nkeys = math.floor(header / ${POSITIONS * ARG_COUNTS})
    a = a + 1
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
    if (this.#scripts.length >= POSITIONS) throw new Error(`a script bundle holds fewer than ${POSITIONS} scripts`);
    this.#scripts.forEach((script, index) => {
      if (!/^[A-Za-z_]\w*$/.test(script.name) || TAKEN_NAMES.has(script.name)) {
        throw new Error(
          `A bundled script needs a name that is a free Lua identifier; got ${JSON.stringify(script.name)}`,
        );
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
    const replies = new Array<BundledReply>(calls.length);
    const operations = calls.map((command, index): BundleOperation => {
      const keyCount = Number(command[2]);
      return {
        position: this.#positions.get(command[1]!)!,
        keys: command.slice(3, 3 + keyCount),
        args: command.slice(3 + keyCount),
        resolve: (value) => (replies[index] = { ok: true, value }),
        reject: (error) => (replies[index] = { ok: false, error: error as BundledScriptError }),
      };
    });
    await this.runOperations(send, operations);
    return replies;
  }

  /**
   * Runs the operations in one EVALSHA and tells each its reply or its script's error; rejects
   * (telling none) when the bundle as a whole failed.
   */
  async runOperations(send: SendCommand, operations: readonly BundleOperation[]): Promise<void> {
    // The EVALSHA is built in one array: ['EVALSHA', sha1, numkeys, ...every key, ...the ARGV above].
    let keyCount = 0;
    let argCount = 1;
    for (const { keys, args } of operations) {
      keyCount += keys.length;
      argCount += 1 + args.length;
    }
    const command = new Array<string>(3 + keyCount + argCount);
    command[0] = 'EVALSHA';
    command[1] = this.script.sha1;
    command[2] = String(keyCount);
    let k = 3;
    let a = 3 + keyCount;
    command[a++] = String(operations.length);
    for (const operation of operations) {
      command[a++] = operationHeader(operation.position, operation.keys.length, operation.args.length);
      for (const key of operation.keys) command[k++] = key;
      for (const arg of operation.args) command[a++] = typeof arg === 'string' ? arg : String(arg);
    }
    const replies = await this.script.runCommand(send, command);
    if (!Array.isArray(replies) || replies.length !== operations.length) {
      throw new Error(
        `the script bundle answered ${Array.isArray(replies) ? replies.length : typeof replies} replies for ${operations.length} operations`,
      );
    }
    for (let index = 0; index < operations.length; index++) {
      const operation = operations[index]!;
      const reply = replies[index] as [number, unknown];
      if (reply[0] === 1) operation.resolve(reply[1] ?? null);
      else operation.reject(new BundledScriptError(this.#scripts[operation.position - 1]!.name, String(reply[1])));
    }
  }
}
