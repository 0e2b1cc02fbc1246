// Runs a test fixture in a child process of its own, from the packages' TypeScript sources (tsx, the `source` export
// condition): what a fresh process does, without what the test's own process already loaded. CI tests before it builds.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ChildRun {
  code: number | null;
  stdout: string;
  /** Its stderr, Node's experimental-feature warnings left out. */
  stderr: string;
}

/** Runs `file` (a .mts or .ts fixture) to its end. */
export async function runSourceChild(file: string, args: readonly string[] = []): Promise<ChildRun> {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', file, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += String(chunk)));
  child.stderr.on('data', (chunk: Buffer) => (stderr += String(chunk)));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, stdout, stderr: stderr.replace(/.*ExperimentalWarning.*\n?/g, '') };
}
