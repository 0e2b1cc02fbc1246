// Lock files that name their holder: a lock whose process died on this host is stale; one it cannot check is not.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { lockHolderAlive, readLockHolder, thisLockHolder } from '@tollgate/core/process-lock';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-process-lock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('process locks', () => {
  it('reads the holder a lock names, and nothing from a lock that names none', () => {
    const path = join(dir, 'a.lock');
    writeFileSync(path, JSON.stringify(thisLockHolder()));
    expect(readLockHolder(path)).toMatchObject({ pid: process.pid, host: hostname() });
    writeFileSync(path, '');
    expect(readLockHolder(path)).toBeUndefined();
    expect(readLockHolder(join(dir, 'missing.lock'))).toBeUndefined();
  });

  it('takes a lock of a process that exited as stale, and one of a running process as held', async () => {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    const pid = child.pid!;
    await once(child, 'exit');
    const startedAt = new Date().toISOString();
    expect(lockHolderAlive({ pid, host: hostname(), startedAt })).toBe(false);
    // The parent of this test runs: a lock naming it is held.
    expect(lockHolderAlive({ pid: process.ppid, host: hostname(), startedAt })).toBe(true);
  });

  it('cannot check another host, and tells an earlier life of its own id from a lock it holds', () => {
    const startedAt = new Date().toISOString();
    expect(lockHolderAlive({ pid: 1, host: `not-${hostname()}`, startedAt })).toBe(true);
    expect(lockHolderAlive(undefined)).toBe(false);
    expect(lockHolderAlive({ pid: process.pid, host: hostname(), startedAt })).toBe(false);
    expect(lockHolderAlive({ pid: process.pid, host: hostname(), startedAt }, true)).toBe(true);
  });
});
