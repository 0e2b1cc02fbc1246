// Claude Code (npm `@anthropic-ai/claude-code`) for the client tests: `CLAUDE_BIN` when set, else installed once from
// npm (npm-cli.ts); undefined when neither works (no network), and its test fails saying so.
import { spawnSync } from 'node:child_process';
import { npmCli, runCli, type CliRun } from './npm-cli.js';

/** The version the tests were written against. */
export const CLAUDE_CODE_VERSION = '2.1.332';

/** The `claude` executable, installing it when needed; undefined when it cannot be had. */
export function findClaudeCode(): string | undefined {
  // Its postinstall puts the native binary of this platform (an optional dependency) in place of a stub.
  return npmCli({
    name: '@anthropic-ai/claude-code',
    version: CLAUDE_CODE_VERSION,
    bin: 'claude',
    override: process.env.CLAUDE_BIN,
    works: runs,
  });
}

/** Whether `bin --version` answers: an install cut short leaves the stub, which only prints how to finish it. */
function runs(bin: string): boolean {
  const version = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH } });
  return version.status === 0 && version.stdout.includes(CLAUDE_CODE_VERSION);
}

/**
 * `claude -p <prompt>` on `baseUrl` with `apiKey` (sent as `x-api-key`), at its default model, in a fresh `home`
 * (its config too), with its telemetry, auto-updater and other non-essential traffic off: it reaches the gateway only.
 */
export function claudePrint(
  bin: string,
  options: { baseUrl: string; apiKey: string; prompt: string; home: string; cwd: string },
): Promise<CliRun> {
  return runCli(bin, ['-p', options.prompt], options.cwd, {
    HOME: options.home,
    CLAUDE_CONFIG_DIR: options.home,
    ANTHROPIC_BASE_URL: options.baseUrl,
    ANTHROPIC_API_KEY: options.apiKey,
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  });
}
