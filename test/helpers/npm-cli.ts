// A real client's command line from npm for the client tests (Codex, Claude Code): `<ENV>_BIN` when set, else installed
// once into a cache directory of its own; and one run of it with stdin closed, its output kept, killed past 120 s.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** What a run printed and how it exited (`code` null: killed, or it could not start, the reason in `stderr`). */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The executable `bin` of the npm package `name@version`: `override` when given, else installed once under the temp
 * directory; undefined when it cannot be had (no registry) or `works` says the install is not whole.
 */
export function npmCli(options: {
  name: string;
  version: string;
  bin: string;
  override: string | undefined;
  works?: (bin: string) => boolean;
}): string | undefined {
  if (options.override) return options.override;
  const works = options.works ?? (() => true);
  const prefix = path.join(tmpdir(), `tollgate-${options.name.replace(/^@[^/]+\//, '')}-${options.version}`);
  const bin = path.join(prefix, 'node_modules', '.bin', options.bin);
  if (existsSync(bin) && works(bin)) return bin;
  mkdirSync(prefix, { recursive: true });
  const install = spawnSync(
    'npm',
    ['install', '--prefix', prefix, '--no-audit', '--no-fund', `${options.name}@${options.version}`],
    { stdio: 'ignore', timeout: 300_000 },
  );
  return install.status === 0 && existsSync(bin) && works(bin) ? bin : undefined;
}

/** Runs `bin args` in `cwd` with only `env` (and PATH); stdin closed: both CLIs wait on an open one for more prompt. */
export function runCli(bin: string, args: string[], cwd: string, env: Record<string, string>): Promise<CliRun> {
  const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  return new Promise((resolve) => {
    // A `<ENV>_BIN` that cannot run is a failed run, with the reason in stderr.
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
