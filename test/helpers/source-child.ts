// Runs a test fixture in a child process of its own, from the packages' TypeScript sources (tsx, the `source` export
// condition): what a fresh process does, without what the test's own process already loaded. CI tests before it builds.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ChildRun {
  code: number | null;
  stdout: string;
  /** Its stderr, Node's experimental-feature warnings left out. */
  stderr: string;
}

/**
 * Starts `file` (a .mts or .ts fixture) with its stdin, stdout and stderr piped: for a test that talks to it.
 * `nodeArgs` go to node before the rest (a process started as the gateway is: its V8 flags).
 */
export function startSourceChild(
  file: string,
  args: readonly string[] = [],
  nodeArgs: readonly string[] = [],
): ChildProcessByStdio<Writable, Readable, Readable> {
  return spawn(process.execPath, [...nodeArgs, '--conditions=source', '--import', 'tsx', file, ...args], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Runs `file` (a .mts or .ts fixture) to its end. */
export async function runSourceChild(
  file: string,
  args: readonly string[] = [],
  nodeArgs: readonly string[] = [],
): Promise<ChildRun> {
  const child = startSourceChild(file, args, nodeArgs);
  child.stdin.end();
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += String(chunk)));
  child.stderr.on('data', (chunk: Buffer) => (stderr += String(chunk)));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, stdout, stderr: stderr.replace(/.*ExperimentalWarning.*\n?/g, '') };
}
