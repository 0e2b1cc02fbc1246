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

/**
 * A resolve hook that adds the `source` condition: a worker inherits its parent's flags (a parent started with
 * `--conditions=source` passes it on), but a parent under jest resolves by jest's own resolver, and a worker may not be
 * given the parent's flags again explicitly (V8's, such as the server's `--max-semi-space-size`, are refused there).
 */
const SOURCE_CONDITION_HOOK = `export function resolve(specifier, context, next) {
  return next(specifier, context.conditions.includes('source') ? context : { ...context, conditions: [...context.conditions, 'source'] });
}`;

/**
 * Starts `name` (a module in the caller's folder, without extension) in a worker thread at a lower priority.
 * `callerUrl` is the caller's `import.meta.url`. Run from source (tests, `tsx`), a worker does not take its parent's
 * loader: it registers tsx itself, then imports the TypeScript module, and resolves our packages by their `source`
 * export as the parent does (SOURCE_CONDITION_HOOK).
 */
export function startModuleWorker(callerUrl: string, name: string, options: WorkerOptions = {}): Worker {
  const fromSource = callerUrl.endsWith('.ts');
  const main = JSON.stringify(new URL(`./${name}.${fromSource ? 'ts' : 'js'}`, callerUrl).href);
  let load = `import(${main})`;
  if (fromSource) {
    // tsx's ESM door (its CommonJS one loads the ESM hooks by a path of its own that does not exist).
    const api = createRequire(callerUrl)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs');
    // Registered after tsx, so it runs first: every resolution, tsx's own too, asks for the `source` condition.
    const sourceFirst = JSON.stringify(`data:text/javascript,${encodeURIComponent(SOURCE_CONDITION_HOOK)}`);
    load =
      `import(${JSON.stringify(pathToFileURL(api).href)}).then((tsx) => { tsx.register(); ` +
      `require('node:module').register(${sourceFirst}); return ${load}; })`;
  }
  // An import that fails is the worker's error, as a module worker's would be.
  return new Worker(`${BACKGROUND}\n${load}.catch((error) => { setImmediate(() => { throw error; }); });`, {
    ...options,
    eval: true,
  });
}
