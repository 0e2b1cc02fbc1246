// A worker thread that runs a module beside its caller: its JavaScript from dist, its TypeScript source through tsx.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * The first lines of every such worker: on Linux its thread takes a lower priority (nice 10, a thread's own), so that a
 * process held to one core gives its request loop the CPU about nine times in ten while both want it. Not the lowest:
 * on a machine busy with other processes a worker at nice 19 waits minutes, and detection with it.
 */
const BACKGROUND = `try {
  const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
  if (tid > 0) require('node:os').setPriority(tid, 10);
} catch {}`;

const SOURCE_CONDITION = '--conditions=source';

/**
 * Starts `name` (a module in the caller's folder, without extension) in a worker thread at a lower priority.
 * `callerUrl` is the caller's `import.meta.url`. Run from source (tests, `tsx`), a worker does not take its parent's
 * loader: it registers tsx itself, then imports the TypeScript module, and resolves our packages by their `source`
 * export as the parent does (a parent under jest resolves them by its own resolver, not by a flag the worker inherits).
 */
export function startModuleWorker(callerUrl: string, name: string, options: WorkerOptions = {}): Worker {
  const fromSource = callerUrl.endsWith('.ts');
  const main = JSON.stringify(new URL(`./${name}.${fromSource ? 'ts' : 'js'}`, callerUrl).href);
  let load = `import(${main})`;
  let execArgv = options.execArgv;
  if (fromSource) {
    const inherited = execArgv ?? process.execArgv;
    execArgv = inherited.includes(SOURCE_CONDITION) ? inherited : [...inherited, SOURCE_CONDITION];
    // tsx's ESM door (its CommonJS one loads the ESM hooks by a path of its own that does not exist).
    const api = createRequire(callerUrl)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs');
    load = `import(${JSON.stringify(pathToFileURL(api).href)}).then((tsx) => { tsx.register(); return ${load}; })`;
  }
  // An import that fails is the worker's error, as a module worker's would be.
  return new Worker(`${BACKGROUND}\n${load}.catch((error) => { setImmediate(() => { throw error; }); });`, {
    ...options,
    ...(execArgv && { execArgv }),
    eval: true,
  });
}
