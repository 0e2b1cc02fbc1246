// Parent side of a bench child process: servers run apart from the load generator so they never share its event loop.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BlockCost, BlockOptions } from './server.js';

/** What a child builds: an app name from bench/lib/apps.ts and its JSON options. */
export interface ServerSpec {
  app: string;
  options?: Record<string, unknown>;
}

export interface BenchChild {
  readonly spec: ServerSpec;
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  /** The app's own remark on what it runs, if any. */
  readonly note?: string;
  /** Ask the child something (see bench/lib/server.ts for the message types). */
  call<T = unknown>(type: string, payload?: Record<string, unknown>): Promise<T>;
  close(): Promise<void>;
}

const SERVER_ENTRY = fileURLToPath(new URL('./server.ts', import.meta.url));

interface Reply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

interface ForkOptions {
  exposeGc?: boolean;
  env?: Record<string, string>;
  /** Node flags added to the child's (e.g. `--cpu-prof`, which NODE_OPTIONS does not take). */
  execArgv?: string[];
  /**
   * Without this process's `--conditions` (`-C`): packages resolve to their built `dist/` even when the parent runs
   * the sources (`--conditions=source`), as the `builds` benchmark needs for the builds it loads by path.
   */
  builtPackages?: boolean;
}

/** An execArgv without its `--conditions` flags, in either spelling (`--conditions=x`, `-C x`). */
function withoutConditions(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const flag = execArgv[i]!;
    if (flag === '--conditions' || flag === '-C') i++;
    else if (!flag.startsWith('--conditions=') && !flag.startsWith('-C=')) kept.push(flag);
  }
  return kept;
}

/** Forks a tsx child with the same loader and conditions as this process. */
export function forkBench(entry: string, options: ForkOptions = {}): ChildProcess {
  const execArgv = options.builtPackages ? withoutConditions(process.execArgv) : [...process.execArgv];
  if (options.exposeGc) execArgv.push('--expose-gc');
  if (options.execArgv) execArgv.push(...options.execArgv);
  // `BENCH_CHILD_NODE_ARGS="--trace-gc"`: Node flags for every child, to see inside a measured process.
  if (process.env.BENCH_CHILD_NODE_ARGS) execArgv.push(...process.env.BENCH_CHILD_NODE_ARGS.split(' ').filter(Boolean));
  return fork(entry, [], {
    execArgv,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** A forked bench child asked one message at a time, each answered once (`answerParent` in child-answers.ts). */
export interface AskingChild {
  ask<T>(message: Record<string, unknown>): Promise<T>;
  kill(): void;
}

export function forkAsking(entry: string, name: string, options: ForkOptions = {}): AskingChild {
  const child = forkBench(entry, options);
  let exit: Error | undefined;
  child.once('exit', (code, signal) => (exit = new Error(`the ${name} child exited (${code ?? signal})`)));
  return {
    ask<T>(message: Record<string, unknown>) {
      if (exit) return Promise.reject(exit);
      return new Promise<T>((resolve, reject) => {
        const onExit = () => reject(exit ?? new Error(`the ${name} child exited`));
        child.once('exit', onExit);
        child.once('message', (reply: { ok: boolean; value?: T; error?: string }) => {
          child.off('exit', onExit);
          if (reply.ok) resolve(reply.value!);
          else reject(new Error(reply.error ?? `the ${name} child failed`));
        });
        child.send(message);
      });
    },
    kill: () => child.kill(),
  };
}

/** Forks `entry`, asks it `request` once and resolves with its answer (or rejects with its error); kills it after. */
export async function askBenchChild<Value>(
  entry: string,
  request: Record<string, unknown>,
  name: string,
  options: ForkOptions = {},
): Promise<Value> {
  const child = forkAsking(entry, name, options);
  try {
    return await child.ask<Value>(request);
  } finally {
    child.kill();
  }
}

export async function startServer(
  spec: ServerSpec,
  options: Pick<ForkOptions, 'exposeGc' | 'builtPackages' | 'execArgv'> = {},
): Promise<BenchChild> {
  const child = forkBench(SERVER_ENTRY, options);
  let nextId = 1;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let exited = false;

  child.on('message', (message: Reply) => {
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.ok) waiter.resolve(message.value);
    else waiter.reject(new Error(message.error ?? 'child failed'));
  });
  child.on('exit', (code, signal) => {
    exited = true;
    for (const waiter of pending.values())
      waiter.reject(new Error(`bench child ${spec.app} exited (${code ?? signal})`));
    pending.clear();
  });

  const call = <T>(type: string, payload: Record<string, unknown> = {}): Promise<T> => {
    if (exited) return Promise.reject(new Error(`bench child ${spec.app} is gone`));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      child.send({ id, type, ...payload });
    });
  };

  const close = async () => {
    if (exited) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    try {
      await call('close');
    } catch {
      // The child may exit before it answers; the exit is what we wait for.
    }
    await gone;
    clearTimeout(timer);
  };

  try {
    const { port, note } = await call<{ port: number; note?: string }>('start', { spec });
    return { spec, port, note, url: `http://127.0.0.1:${port}`, pid: child.pid ?? -1, call, close };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}

/** Every spec built in one bench child (the first served): they share one heap and JIT, and are driven by index. */
export async function startTogether(
  specs: readonly ServerSpec[],
  options: Parameters<typeof startServer>[1] = {},
): Promise<BenchChild> {
  const child = await startServer(specs[0]!, options);
  for (const spec of specs.slice(1)) await child.call('build', { spec });
  return child;
}

/** One block of the child's app `app`, in-process there (see BlockOptions in server.ts). */
export function driveBlock(child: BenchChild, block: BlockOptions): Promise<BlockCost> {
  return child.call<BlockCost>('block', { block });
}

/**
 * Starts each case's server in turn, by name. A case that cannot start is left out: its reason goes to `missing` (the
 * section lists it under "Not measured") and to the log.
 */
export async function startEach<Case extends { name: string }, Server>(
  cases: readonly Case[],
  start: (benchCase: Case) => Promise<Server>,
  missing: string[],
  log: (message: string) => void,
): Promise<Map<string, Server>> {
  const servers = new Map<string, Server>();
  for (const benchCase of cases) {
    try {
      servers.set(benchCase.name, await start(benchCase));
    } catch (error) {
      missing.push(`${benchCase.name}: ${error instanceof Error ? error.message : String(error)}`);
      log(`${benchCase.name} unavailable (${String(error)})`);
    }
  }
  return servers;
}
