// What the README's commands write into a checkout (a data directory with a ledger and keys.json, the usage log, the
// copy of docs/errors.md a pack makes) is ignored by git, so no key or ledger is committed by mistake.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';

const root = new URL('..', import.meta.url).pathname;

/** Whether git ignores `path` (relative to the root), as `git check-ignore` says: exit 0 ignored, 1 not. */
function ignored(path: string): boolean {
  const run = spawnSync('git', ['check-ignore', '--no-index', '-q', path], { cwd: root });
  if (run.status !== 0 && run.status !== 1) throw new Error(`git check-ignore ${path} failed: ${String(run.stderr)}`);
  return run.status === 0;
}

describe('.gitignore', () => {
  it("ignores every data directory the README's commands name, with its keys and ledger", () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const dirs = new Set([...readme.matchAll(/(?:TOLLGATE_DATA_DIR=|--data-dir )\.\/([\w.-]+)/g)].map((m) => m[1]!));
    expect([...dirs]).toEqual(['tollgate-data']);
    for (const dir of dirs)
      for (const path of [`${dir}/keys.json`, `${dir}/ledger/PG_VERSION`])
        expect([path, ignored(path)]).toEqual([path, true]);
  });

  it('ignores the usage log and the docs a pack copies, and none of the files the repository keeps', () => {
    for (const path of ['usage.jsonl', 'usage.jsonl.spool/x', 'packages/core/docs/errors.md'])
      expect([path, ignored(path)]).toEqual([path, true]);
    const tracked = execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
    expect(tracked).toContain('docs/errors.md');
    const trackedButIgnored = execFileSync('git', ['ls-files', '--cached', '--ignored', '--exclude-standard'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(trackedButIgnored).toBe('');
  });
});
