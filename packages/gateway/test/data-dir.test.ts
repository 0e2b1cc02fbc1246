// holdDataDir: one process at a time holds a data directory; a lock left by a process that is gone is taken over.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { DataDirInUseError, embeddedLedgerLocation, holdDataDir } from '../src/data-dir.js';

const root = mkdtempSync(path.join(tmpdir(), 'tollgate-hold-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A lock naming `pid` on this host, in core's process-lock format. */
const holderJson = (pid: number) => JSON.stringify({ pid, host: hostname(), startedAt: new Date().toISOString() });

/** The pid of a process that ran and is gone. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

describe('holdDataDir', () => {
  it('makes the directory private, writes its pid, refuses a second holder and releases', () => {
    const dir = path.join(root, 'a', 'nested');
    const held = holdDataDir(dir);
    expect(JSON.parse(readFileSync(path.join(dir, 'tollgate.pid'), 'utf8')).pid).toBe(process.pid);
    expect(() => holdDataDir(dir)).toThrow(DataDirInUseError);
    held.release();
    expect(existsSync(path.join(dir, 'tollgate.pid'))).toBe(false);
    holdDataDir(dir).release();
  });

  it('takes over the lock of a process that is gone', () => {
    const dir = path.join(root, 'stale');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'tollgate.pid'), holderJson(deadPid()));
    const held = holdDataDir(dir);
    expect(JSON.parse(readFileSync(path.join(dir, 'tollgate.pid'), 'utf8')).pid).toBe(process.pid);
    held.release();
  });

  it('refuses while another live process holds it, naming that process', async () => {
    const dir = path.join(root, 'live');
    mkdirSync(dir);
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      writeFileSync(path.join(dir, 'tollgate.pid'), holderJson(other.pid!));
      expect(() => holdDataDir(dir)).toThrow(`is held by process ${other.pid}`);
    } finally {
      other.kill('SIGKILL');
      await once(other, 'exit');
    }
    // Gone now: taken over.
    holdDataDir(dir).release();
  });

  it('clears a takeover left by a starter that died mid-way, once it is old', () => {
    const dir = path.join(root, 'takeover');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'tollgate.pid'), holderJson(deadPid()));
    const takeover = path.join(dir, 'tollgate.pid.takeover');
    writeFileSync(takeover, '');
    const old = new Date(Date.now() - 60_000);
    utimesSync(takeover, old, old);
    holdDataDir(dir).release();
    expect(existsSync(takeover)).toBe(false);
  });
});

describe('embeddedLedgerLocation', () => {
  it('puts the ledger in the data directory unless the config names one or turns it off', () => {
    expect(embeddedLedgerLocation({ dataDir: '/d' })).toBe(path.join('/d', 'ledger'));
    expect(embeddedLedgerLocation({ dataDir: '/d', embeddedLedger: true })).toBe(path.join('/d', 'ledger'));
    expect(embeddedLedgerLocation({ dataDir: '/d', embeddedLedger: '/elsewhere' })).toBe('/elsewhere');
    expect(embeddedLedgerLocation({ dataDir: '/d', embeddedLedger: false })).toBeUndefined();
    expect(embeddedLedgerLocation({ dataDir: '/d', postgresUrl: 'postgres://x/y' })).toBeUndefined();
    expect(embeddedLedgerLocation({ embeddedLedger: true })).toBe('memory');
    expect(embeddedLedgerLocation({})).toBeUndefined();
  });
});
