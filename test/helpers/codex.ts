// The Codex CLI (npm `@openai/codex`) for the client tests: `CODEX_BIN` when set, else installed once from npm into a
// cache directory of its own; undefined when neither works (no network), and its test fails saying so.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** The version the tests were written against. */
export const CODEX_VERSION = '0.171.0';

/** The `codex` executable, installing it when needed; undefined when it cannot be had. */
export function findCodex(): string | undefined {
  if (process.env.CODEX_BIN) return process.env.CODEX_BIN;
  const prefix = path.join(tmpdir(), `tollgate-codex-${CODEX_VERSION}`);
  const bin = path.join(prefix, 'node_modules', '.bin', 'codex');
  if (!existsSync(bin)) {
    mkdirSync(prefix, { recursive: true });
    const install = spawnSync(
      'npm',
      ['install', '--prefix', prefix, '--no-audit', '--no-fund', `@openai/codex@${CODEX_VERSION}`],
      { stdio: 'ignore', timeout: 300_000 },
    );
    if (install.status !== 0 || !existsSync(bin)) return undefined;
  }
  return bin;
}

/** What `codex exec` printed and how it exited. */
export interface CodexRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `codex exec <prompt>` with the built-in OpenAI provider on `baseUrl` and `apiKey`, in a fresh CODEX_HOME. */
export function codexExec(
  bin: string,
  options: { baseUrl: string; apiKey: string; model: string; prompt: string; home: string; cwd: string },
): Promise<CodexRun> {
  // The built-in provider's base URL is the `openai_base_url` setting (0.171 reads no OPENAI_BASE_URL).
  const baseUrl = ['-c', `openai_base_url=${JSON.stringify(options.baseUrl)}`];
  const args = [
    'exec',
    ...baseUrl,
    '--skip-git-repo-check',
    '--sandbox',
    'read-only',
    '-m',
    options.model,
    options.prompt,
  ];
  // stdin closed: with a pipe open, `codex exec` waits to read more of the prompt from it.
  const child = spawn(bin, args, {
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: options.home,
      CODEX_HOME: options.home,
      CODEX_API_KEY: options.apiKey,
      OPENAI_API_KEY: options.apiKey,
      RUST_LOG: 'warn',
    },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  return new Promise((resolve) => {
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
