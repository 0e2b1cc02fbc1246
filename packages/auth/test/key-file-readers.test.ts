// keysWithRemovals: what a key file that does not validate still takes away from the running keys (and nothing more).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { startSourceChild } from '../../../test/helpers/source-child.js';
import { waitForKeyFileReaders } from '../src/key-file-readers.js';
import { keysWithRemovals } from '../src/index.js';

const record = (id: string, extra: Partial<ApiKeyRecord> = {}): ApiKeyRecord => ({
  id,
  sha256: id
    .padEnd(64, '0')
    .slice(0, 64)
    .replace(/[^0-9a-f]/g, 'a'),
  scopes: ['chat'],
  createdAt: '2026-01-01T00:00:00.000Z',
  ...extra,
});
const entry = (r: ApiKeyRecord, extra: Record<string, unknown> = {}) => ({ id: r.id, sha256: r.sha256, ...extra });

describe('keysWithRemovals', () => {
  const a = record('a');
  const b = record('b', { expiresAt: '2030-01-01T00:00:00.000Z' });
  const c = record('c');
  const running = [a, b, c];

  it('removes a key whose entry is gone, or names another hash; disables and shortens as the file says', () => {
    const next = keysWithRemovals(running, [
      entry(a, { disabled: true, tier: 42 }),
      entry(b, { expiresAt: '2027-01-01T00:00:00.000Z' }),
      { id: 'c', sha256: 'f'.repeat(64) },
    ]);
    expect(next.map((key) => key.id)).toEqual(['a', 'b']);
    expect(next[0]).toMatchObject({ disabled: true, scopes: ['chat'] });
    expect(next[1]!.expiresAt).toBe('2027-01-01T00:00:00.000Z');
  });

  it('never adds or widens: new keys, a later expiry, an enabled key and new scopes wait for a valid file', () => {
    const disabled = record('d', { disabled: true });
    const next = keysWithRemovals(
      [b, disabled],
      [
        entry(b, { expiresAt: '2040-01-01T00:00:00.000Z', scopes: ['admin'] }),
        entry(disabled, { disabled: false }),
        { id: 'new', sha256: 'e'.repeat(64) },
      ],
    );
    expect(next).toEqual([b, disabled]);
  });

  it('fails closed on what does not read: a garbled disabled or expiry, keys that are not an array', () => {
    const next = keysWithRemovals(running, [
      entry(a, { disabled: 'yes' }),
      entry(b, { expiresAt: 'soon' }),
      entry(c),
      entry(c),
    ]);
    expect(next[0]!.disabled).toBe(true);
    expect(Date.parse(next[1]!.expiresAt!)).toBeLessThanOrEqual(Date.now());
    // An id given twice: the stricter reading.
    expect(next[2]!.disabled).toBe(true);
    expect(keysWithRemovals(running, { a: 1 })).toEqual([]);
    expect(keysWithRemovals(running, undefined)).toEqual([]);
  });
});

describe("a key file's reader notes, read while they are written", () => {
  it('a reader rewriting its note is always seen, as having taken the text or not (never missed)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-notes-'));
    const path = join(dir, 'tollgate.json');
    const writer = startSourceChild(fileURLToPath(new URL('./fixtures/note-writer.ts', import.meta.url)), [
      path,
      '20000',
    ]);
    const exited = new Promise<number | null>((done) => writer.on('exit', done));
    // The writer says `done` after its last note and stays alive until told, so every read here is of a live reader.
    let said = '';
    writer.stdout.on('data', (chunk: Buffer) => (said += String(chunk)));
    let reads = 0;
    let missed = 0;
    while (!said.includes('done')) {
      // A turn of the event loop each time round, so the writer's `done` is heard.
      await new Promise((turn) => setImmediate(turn));
      const verdict = await waitForKeyFileReaders(path, 'text 0', 0);
      const seen = [...verdict.took, ...verdict.waiting].filter((note) => note.pid === writer.pid).length;
      // Before its first note there is nothing to see; after it, the writer is always there.
      if (reads > 0 || seen > 0) {
        reads += 1;
        if (seen !== 1) missed += 1;
      }
    }
    writer.stdin.end();
    expect(await exited).toBe(0);
    rmSync(dir, { recursive: true, force: true });
    // A command that missed a reader would say a revoke was taken everywhere while one process still serves the key.
    expect(reads).toBeGreaterThan(100);
    expect(missed).toBe(0);
  }, 60_000);
});
