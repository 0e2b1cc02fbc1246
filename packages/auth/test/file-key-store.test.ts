// fileKeyStore: keys in a config-format JSON file, changed under the `keys` command's lock, read again when another process changed it.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { editConfigKeys, fileKeyStore, generateApiKey, hashApiKey } from '@tollgate/auth';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-file-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const record = (id: string, key: string) => ({
  id,
  sha256: hashApiKey(key),
  tenantId: 'acme',
  scopes: ['chat'],
  createdAt: '2026-11-24T00:00:00.000Z',
});

describe('fileKeyStore', () => {
  it('starts empty without a file, writes each change to it (0600) and answers lookups synchronously', async () => {
    const file = path.join(dir, 'new.json');
    const store = fileKeyStore(file, { watchIntervalMs: 0 });
    expect(await store.list()).toEqual([]);
    await store.put(record('a', 'tgk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(store.findByHashSync!(hashApiKey('tgk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'))?.id).toBe('a');
    expect(await store.disable('a')).toBe(true);
    expect(await store.disable('missing')).toBe(false);
    const written = JSON.parse(readFileSync(file, 'utf8')) as {
      keys: { id: string; disabled?: boolean; tenant?: string }[];
    };
    expect(written.keys).toEqual([expect.objectContaining({ id: 'a', tenant: 'acme', disabled: true })]);
    // A second store on the same file (another process, or a restart) sees what the first wrote.
    const again = fileKeyStore(file, { watchIntervalMs: 0 });
    expect((await again.findById('a'))?.disabled).toBe(true);
    expect(await again.delete('a')).toBe(true);
    await store.reload();
    expect(await store.list()).toEqual([]);
  });

  it('keeps the other fields of the file, and sees keys another writer adds under its lock', async () => {
    const file = path.join(dir, 'shared.json');
    writeFileSync(file, JSON.stringify({ adminKeySha256: 'f'.repeat(64), keys: [] }));
    const store = fileKeyStore(file, { watchIntervalMs: 20 });
    try {
      // Another process's write, as `tollgate keys create --config` makes it: under the lock, the file rewritten.
      const key = generateApiKey();
      await editConfigKeys(file, (records) => ({
        changed: true,
        records: [...records, { ...record('cli-made', key), userId: 'bo' }],
        result: undefined,
      }));
      // Seen by polling: no call to reload.
      for (let i = 0; i < 200 && !store.findByHashSync!(hashApiKey(key)); i++)
        await new Promise((r) => setTimeout(r, 10));
      expect(store.findByHashSync!(hashApiKey(key))?.id).toBe('cli-made');
      await store.put(record('b', 'tgk_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'));
      const written = JSON.parse(readFileSync(file, 'utf8')) as { adminKeySha256: string; keys: { id: string }[] };
      expect(written.adminKeySha256).toBe('f'.repeat(64));
      expect(written.keys.map((key) => key.id).sort()).toEqual(['b', 'cli-made']);
    } finally {
      store.close();
    }
  });

  it('refuses a file that is not a keys file, and keeps its keys when the file turns bad later', async () => {
    const file = path.join(dir, 'bad.json');
    writeFileSync(file, '[1, 2]');
    expect(() => fileKeyStore(file, { watchIntervalMs: 0 })).toThrow(/must hold a JSON object/);
    writeFileSync(
      file,
      JSON.stringify({ keys: [{ id: 'a', sha256: hashApiKey('tgk_cccccccccccccccccccccccccccccccccc') }] }),
    );
    const store = fileKeyStore(file, { watchIntervalMs: 0 });
    writeFileSync(file, '{ not json');
    await expect(store.reload()).rejects.toThrow(/not valid JSON/);
    expect((await store.findById('a'))?.id).toBe('a');
  });
});
