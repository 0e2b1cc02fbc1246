// Claude Code (npm `@anthropic-ai/claude-code`) for the client tests: `CLAUDE_BIN` when set, else installed once from
// npm into a cache directory of its own; undefined when neither works (no network), and its test fails saying so.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** The version the tests were written against. */
export const CLAUDE_CODE_VERSION = '2.1.332';

/** The `claude` executable, installing it when needed; undefined when it cannot be had. */
export function findClaudeCode(): string | undefined {
  if (process.env.CLAUDE_BIN) return process.env.CLAUDE_BIN;
  const prefix = path.join(tmpdir(), `tollgate-claude-code-${CLAUDE_CODE_VERSION}`);
  const bin = path.join(prefix, 'node_modules', '.bin', 'claude');
  if (!existsSync(bin) || !runs(bin)) {
    mkdirSync(prefix, { recursive: true });
    // Its postinstall puts the native binary of this platform (an optional dependency) in place of a stub.
    const install = spawnSync(
      'npm',
      ['install', '--prefix', prefix, '--no-audit', '--no-fund', `@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}`],
      { stdio: 'ignore', timeout: 300_000 },
    );
    if (install.status !== 0 || !existsSync(bin) || !runs(bin)) return undefined;
  }
  return bin;
}

/** Whether `bin --version` answers: an install cut short leaves the stub, which only prints how to finish it. */
function runs(bin: string): boolean {
  const version = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH } });
  return version.status === 0 && version.stdout.includes(CLAUDE_CODE_VERSION);
}

/** What `claude -p` printed and how it exited. */
export interface ClaudeCodeRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `claude -p <prompt>` on `baseUrl` with `apiKey` (sent as `x-api-key`), at its default model, in a fresh `home`
 * (its config too), with its telemetry, auto-updater and other non-essential traffic off: it reaches the gateway only.
 */
export function claudePrint(
  bin: string,
  options: { baseUrl: string; apiKey: string; prompt: string; home: string; cwd: string },
): Promise<ClaudeCodeRun> {
  // stdin closed: with a pipe open, `claude -p` waits for more of the prompt on it.
  const child = spawn(bin, ['-p', options.prompt], {
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: options.home,
      CLAUDE_CONFIG_DIR: options.home,
      ANTHROPIC_BASE_URL: options.baseUrl,
      ANTHROPIC_API_KEY: options.apiKey,
      DISABLE_TELEMETRY: '1',
      DISABLE_AUTOUPDATER: '1',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  return new Promise((resolve) => {
    // A CLAUDE_BIN that cannot run is a failed run, with the reason in stderr.
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: `${stderr}${error.message}` });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
