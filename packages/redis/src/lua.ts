// Lua scripts called by SHA: loaded once, re-sent with EVAL only when Redis has forgotten them (NOSCRIPT).
import { createHash } from 'node:crypto';

/** Sends one Redis command (as its argument strings) and resolves with the raw reply. */
export type SendCommand = (args: string[]) => Promise<unknown>;

/**
 * Trims every line and drops blank and comment-only lines, so indentation changes in this
 * repository do not change a script's SHA1 (which a test pins).
 */
function normaliseLua(source: string): string {
  return source
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('--'))
    .join('\n');
}

export class LuaScript {
  readonly source: string;
  readonly sha1: string;

  constructor(
    readonly name: string,
    source: string,
  ) {
    this.source = normaliseLua(source);
    this.sha1 = createHash('sha1').update(this.source).digest('hex');
  }

  /**
   * One round trip in the steady state: EVALSHA. Redis answers NOSCRIPT after a restart or
   * SCRIPT FLUSH; EVAL then runs the script and caches it again for the next EVALSHA.
   */
  run(send: SendCommand, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    const command = new Array<string>(3 + keys.length + args.length);
    command[0] = 'EVALSHA';
    command[1] = this.sha1;
    command[2] = String(keys.length);
    let at = 3;
    for (const key of keys) command[at++] = key;
    for (const arg of args) command[at++] = typeof arg === 'string' ? arg : String(arg);
    return this.runCommand(send, command);
  }

  /** Sends `['EVALSHA', sha1, numkeys, ...keys, ...args]` of this script, built by the caller, with the same fallback. */
  async runCommand(send: SendCommand, command: string[]): Promise<unknown> {
    try {
      return await send(command);
    } catch (error) {
      if (!isNoScript(error)) throw error;
      return send(['EVAL', this.source, ...command.slice(2)]);
    }
  }
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}
