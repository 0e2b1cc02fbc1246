// Starts the gateway as the example proxy does, in a child process of its own, and reads which modules it loaded
// (test/fixtures/loaded-modules.ts): what a deployment pays for in memory is what its config asks for.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Loaded only when a config asks: the Redis stores', the PostgreSQL ledger's, the token checks' and CSV's packages. */
export const ON_DEMAND = [
  '@redis/client',
  'cluster-key-slot',
  'rate-limit-redis',
  'pg',
  'jose',
  'openid-client',
  'passport',
  'passport-http-bearer',
  'csv-stringify',
];

export interface GatewayRun {
  /** The exit code: 0 after a stop, 1 when the start refused. */
  code: number | null;
  /** stdout and stderr together. */
  output: string;
  /** The file URL of every module loaded, once each. */
  modules: Set<string>;
}

/** The npm package (`pg`, `@redis/client`) or workspace package (`@tollgate/redis`) a module's file belongs to. */
export function packageOf(module: string): string | undefined {
  const installed = /.*\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(module);
  if (installed) return installed[1];
  const workspace = /\/packages\/([^/]+)\//.exec(module);
  return workspace ? `@tollgate/${workspace[1]}` : undefined;
}

/** The file names of the modules loaded from the workspace package `name` (`@tollgate/redis`). */
export function filesOfPackage(modules: Set<string>, name: string): string[] {
  return [...modules].filter((module) => packageOf(module) === name).map((module) => module.split('/').pop()!);
}

/** The Redis stores' package: the guard loads its scripts' door (lua.ts) on any stores, the rest comes with the stores. */
export const REDIS_STORES_PACKAGE = '@tollgate/redis';

/**
 * Serves `config` (the file TOLLGATE_CONFIG names) with `env` added; once it listens, `whileUp` runs with its URL and the
 * gateway is stopped (SIGTERM). A start that refuses ends the run by itself, `whileUp` not called.
 */
export async function runGateway(
  config: Record<string, unknown>,
  env: Record<string, string>,
  whileUp: (url: string) => Promise<void>,
): Promise<GatewayRun> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-loaded-'));
  const configFile = path.join(dir, 'tollgate.json');
  const modulesFile = path.join(dir, 'modules.txt');
  writeFileSync(configFile, JSON.stringify(config));
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'test/fixtures/loaded-modules.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env, TOLLGATE_CONFIG: configFile, PORT: '0', LOADED_MODULES_FILE: modulesFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const listening = new Promise<string | undefined>((resolve) => {
    const read = (chunk: Buffer) => {
      output += String(chunk);
      const match = /listening on http:\/\/localhost:(\d+)/.exec(output);
      if (match) resolve(`http://127.0.0.1:${match[1]}`);
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    void exited.then(() => resolve(undefined));
  });
  try {
    const url = await listening;
    if (url !== undefined) {
      try {
        await whileUp(url);
      } finally {
        child.kill('SIGTERM');
      }
    }
    const code = await exited;
    const lines = readFileSync(modulesFile, 'utf8').split('\n');
    const modules = new Set(
      lines.filter((line) => line !== '').map((line) => (line.startsWith('/') ? pathToFileURL(line).href : line)),
    );
    return { code, output, modules };
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
