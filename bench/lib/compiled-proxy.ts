// The example proxy as a deployment runs it: `node --max-semi-space-size=8 examples/proxy/dist/main.js` (compiled by
// `pnpm build`; the image's Node flags, SERVER_NODE_ARGS) with its
// config in TOLLGATE_CONFIG, no tsx and no bench harness in the process; ready once /healthz answers.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_ARGS } from '../../packages/gateway/src/v8-flags.js';
import type { MemoryCgroup } from './memory-limit.js';
import { freePort } from './private-redis.js';

/** The example proxy compiled (`pnpm --filter @tollgate/example-proxy build`), as a deployment runs it. */
const COMPILED_MAIN = fileURLToPath(new URL('../../examples/proxy/dist/main.js', import.meta.url));

export interface RunningProxy {
  url: string;
  pid: number;
  close(): Promise<void>;
}

/**
 * `node examples/proxy/dist/main.js` with TOLLGATE_CONFIG naming `config` written to a file: what a deployment runs
 * (compiled JavaScript, the tollgate packages from their dist/), no tsx and no bench harness in the process.
 */
export async function startCompiledProxy(
  config: Record<string, unknown>,
  options: { execArgv?: string[]; cgroup?: MemoryCgroup; main?: string } = {},
): Promise<RunningProxy> {
  // `main`: another build's compiled proxy (a checked-out tree's, see build-trees.ts), to compare builds.
  const main = options.main ?? COMPILED_MAIN;
  if (!existsSync(main)) throw new Error(`${main} is missing: run pnpm build (it builds the example proxy too)`);
  const dir = await mkdtemp(path.join(tmpdir(), 'tollgate-dep-mem-'));
  const configPath = path.join(dir, 'tollgate.config.json');
  await writeFile(configPath, JSON.stringify(config));
  const port = await freePort();
  // Started as the image starts the gateway (SERVER_NODE_ARGS). `BENCH_PROXY_NODE_ARGS="--memory-reducer-favors-memory"`:
  // Node flags for every compiled proxy after those (V8 takes the last: `--max-semi-space-size=64` undoes the image's).
  const extra = process.env.BENCH_PROXY_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const command = [process.execPath, ...SERVER_NODE_ARGS, ...extra, ...(options.execArgv ?? []), main];
  // In a cgroup: a shell joins it, then becomes node (same pid), so node starts under the limit and sizes its heap by it.
  const [file, ...args] = options.cgroup
    ? ['/bin/sh', '-c', 'echo $$ > "$0" && exec "$@"', options.cgroup.procs, ...command]
    : command;
  // In its directory: the files a config names by a relative path (the usage log, the access log) go there.
  const child: ChildProcess = spawn(file!, args, {
    cwd: dir,
    env: { ...process.env, TOLLGATE_CONFIG: configPath, PORT: String(port), REDIS_URL: '' },
    // BENCH_PROXY_STDOUT=1 shows what the proxy prints (e.g. with `--trace-gc` in execArgv).
    stdio: ['ignore', process.env.BENCH_PROXY_STDOUT ? 'inherit' : 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => void (stderr = (stderr + chunk.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await gone;
    }
    await rm(dir, { recursive: true, force: true });
  };
  for (let waited = 0; ; waited += 100) {
    if (child.exitCode !== null) throw new Error(`the compiled proxy exited (${child.exitCode}): ${stderr}`);
    const healthy = await fetch(`${url}/healthz`).then(
      (answer) => answer.ok,
      () => false,
    );
    if (healthy) return { url, pid: child.pid!, close };
    if (waited > 30_000) {
      await close();
      throw new Error(`the compiled proxy did not answer /healthz within 30 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
