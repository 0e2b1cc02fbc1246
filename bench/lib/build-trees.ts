// The builds the `builds` benchmark compares: this checkout's, and an earlier commit's in a git worktree of its own,
// installed and built once per commit and kept for the next run.
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** This checkout: the repository the bench runs from. */
const REPOSITORY_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Where earlier commits are checked out and built, one folder per commit (BENCH_BUILDS_DIR to put them elsewhere). */
const CACHE_DIR = process.env.BENCH_BUILDS_DIR ?? join(tmpdir(), 'tollgate-builds');

/** Written last in a built checkout: a folder without it was stopped half-way and is made again. */
const BUILT_MARK = '.tollgate-bench-built';

export interface BuiltTree {
  /** The checkout's root: its packages' `dist/` are what the benchmark loads. */
  dir: string;
  /** What was asked for (a ref, or "this checkout") and the commit it is. */
  ref: string;
  commit: string;
  subject: string;
  /** Files of the packages changed and not committed (this checkout only): the build is not exactly the commit. */
  uncommitted: number;
  /** What was done to have it: built now, found built, or built because its sources were newer. */
  prepared: string;
}

async function git(args: string[], cwd = REPOSITORY_ROOT): Promise<string> {
  const { stdout } = await run('git', args, { cwd, maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

/** Runs a command in `cwd`, its output to this process's (a build takes a minute: better seen than silent). */
async function step(command: string, args: string[], cwd: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} in ${cwd} exited with ${code}`)),
    );
  });
}

async function describeCommit(ref: string, cwd = REPOSITORY_ROOT): Promise<{ commit: string; subject: string }> {
  const commit = await git(['rev-parse', '--verify', `${ref}^{commit}`], cwd);
  return { commit, subject: await git(['log', '-1', '--format=%s', commit], cwd) };
}

/** The newest modification time of the files under `dir` (0 when there is none). */
function newestUnder(dir: string): number {
  if (!existsSync(dir)) return 0;
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** The packages whose `src/` changed after their `dist/index.js` was written (or that have none). */
function staleBuilds(root: string): string[] {
  const packages = join(root, 'packages');
  return readdirSync(packages).filter((name) => {
    const built = join(packages, name, 'dist', 'index.js');
    if (!existsSync(join(packages, name, 'src', 'index.ts'))) return false;
    return !existsSync(built) || newestUnder(join(packages, name, 'src')) > statSync(built).mtimeMs;
  });
}

/** This checkout, built: `pnpm build` runs first if a package's sources are newer than its build. */
export async function currentTree(log: (message: string) => void): Promise<BuiltTree> {
  const { commit, subject } = await describeCommit('HEAD');
  // What is built: a change elsewhere (the bench itself) leaves the build the commit's.
  const changed = await git(['status', '--porcelain', '--untracked-files=no', '--', 'packages', 'examples']);
  const uncommitted = changed.split('\n').filter(Boolean).length;
  const stale = staleBuilds(REPOSITORY_ROOT);
  let prepared = 'its `pnpm build` output, up to date';
  if (stale.length > 0) {
    log(`builds: ${stale.join(', ')} older than their sources: pnpm build in ${REPOSITORY_ROOT}`);
    await step('pnpm', ['build'], REPOSITORY_ROOT);
    prepared = `\`pnpm build\` run first (${stale.join(', ')} were older than their sources)`;
  }
  return { dir: REPOSITORY_ROOT, ref: 'this checkout (HEAD)', commit, subject, uncommitted, prepared };
}

/**
 * `ref` checked out in a git worktree of its own under the cache folder, installed from the lockfile (offline
 * first: the packages are in pnpm's store already when the lockfile is near this one) and built with `pnpm build`;
 * kept for the next run, found again by its commit. `git worktree remove <dir>` deletes one.
 */
export async function checkedOutTree(ref: string, log: (message: string) => void): Promise<BuiltTree> {
  const { commit, subject } = await describeCommit(ref);
  const dir = join(CACHE_DIR, commit);
  const mark = join(dir, BUILT_MARK);
  if (existsSync(mark) && (await readFile(mark, 'utf8')).trim() === commit)
    return { dir, ref, commit, subject, uncommitted: 0, prepared: `found built in ${dir}` };
  const started = Date.now();
  if (existsSync(dir)) {
    log(`builds: ${dir} was left half-made: removing it`);
    await git(['worktree', 'remove', '--force', dir]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
  await git(['worktree', 'prune']);
  log(`builds: git worktree add ${dir} ${commit.slice(0, 12)} (${ref})`);
  await git(['worktree', 'add', '--detach', dir, commit]);
  try {
    await step('pnpm', ['install', '--frozen-lockfile', '--offline'], dir);
  } catch (error) {
    log(`builds: offline install failed (${error instanceof Error ? error.message : String(error)}): online`);
    await step('pnpm', ['install', '--frozen-lockfile'], dir);
  }
  await step('pnpm', ['build'], dir);
  await writeFile(mark, `${commit}\n`);
  const seconds = Math.round((Date.now() - started) / 1000);
  return {
    dir,
    ref,
    commit,
    subject,
    uncommitted: 0,
    prepared: `checked out, installed and built in ${seconds} s (${dir})`,
  };
}
