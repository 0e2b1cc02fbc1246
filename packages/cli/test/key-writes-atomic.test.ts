// A revoke is never undone and never waits for a reader gone: `keys rotate` racing `keys revoke` on a Redis key store
// (many rounds), and a key file's reader notes with a heartbeat (a note left by a dead container expires; a live
// reader that has not taken the change is still waited for, within a bound).
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRedisStores } from '@tollgate/redis';
import type { RedisStores } from '@tollgate/redis';
import { hashApiKey, readersFolder } from '@tollgate/auth';
// How old a reader's note is when it counts as gone: the auth package's own figure, not exported for anyone else.
import { READER_NOTE_EXPIRY_MS } from '../../auth/src/key-file-readers.js';
import { runKeys } from './helpers.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const run = runKeys;

describe('keys rotate racing keys revoke on Redis', () => {
  const prefix = `tg-test:${randomUUID()}:`;
  let stores: RedisStores;

  beforeAll(() => {
    stores = createRedisStores({ url: REDIS_URL, prefix, keyCache: false });
  });

  afterAll(async () => {
    const keys = (await stores.sendCommand(['KEYS', `${prefix}*`])) as string[];
    if (keys.length > 0) await stores.sendCommand(['DEL', ...keys]);
    await stores.close();
  });

  it('leaves every revoked key revoked, whatever lands first (120 rounds)', async () => {
    const undone: string[] = [];
    let rotatedBeforeRevoke = 0;
    for (let round = 0; round < 120; round++) {
      const id = `race-${round}`;
      await stores.keys.put({ id, sha256: hashApiKey(`key-${round}`), scopes: ['chat'], createdAt: '2026-01-01' });
      // The revoke lands at a different point of the rotation each round: before its read, between, after its write.
      const rotation = run('rotate', id, '--redis', REDIS_URL, '--prefix', prefix, '--grace', '1h');
      await sleep(round % 12);
      const revoked = await stores.keys.disable(id);
      const { code } = await rotation;
      expect(revoked).toBe(true);
      if (code === 0) rotatedBeforeRevoke++;
      if ((await stores.keys.findById(id))?.disabled !== true) undone.push(id);
    }
    expect(undone).toEqual([]);
    // Both orders happened: some rotations came first (and set the grace), others found the key revoked.
    expect(rotatedBeforeRevoke).toBeGreaterThan(0);
    expect(rotatedBeforeRevoke).toBeLessThan(120);
  }, 120_000);

  it('a rotation of a revoked key is refused and adds no key', async () => {
    await stores.keys.put({ id: 'gone', sha256: hashApiKey('gone'), scopes: [], createdAt: '2026-01-01' });
    await stores.keys.disable('gone');
    const before = (await stores.keys.list()).length;
    const rotated = await run('rotate', 'gone', '--redis', REDIS_URL, '--prefix', prefix, '--id', 'gone-2');
    expect(rotated.code).toBe(1);
    expect(rotated.stderr).toContain('is revoked');
    expect((await stores.keys.list()).length).toBe(before);
  });
});

describe("a key file's reader notes", () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tollgate-readers-'));
    config = join(dir, 'tollgate.json');
    const keys = [{ id: 'app', sha256: hashApiKey('app'), scopes: [] }];
    await writeFile(config, JSON.stringify({ keys }));
    mkdirSync(readersFolder(config), { recursive: true });
  });

  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** A note as a gateway on another host (a container) leaves it, last alive `agoMs` ago. */
  async function note(name: string, agoMs: number) {
    const at = new Date(Date.now() - agoMs).toISOString();
    const note = { pid: 1, host: `container-${name}`, startedAt: at, sha256: '0'.repeat(64), taking: 'whole' };
    await writeFile(join(readersFolder(config), `${name}.json`), JSON.stringify({ ...note, takenAt: at, aliveAt: at }));
  }

  it('a note left by a reader that died does not hold up a revoke: exit 0 at once', async () => {
    await note('dead', READER_NOTE_EXPIRY_MS + 1_000);
    const started = Date.now();
    const revoked = await run('revoke', 'app', '--config', config);
    expect(revoked.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(revoked.stderr).not.toContain('Not taken');
  });

  it('a live reader that has not taken the change is waited for, then named, exit 1', async () => {
    await note('slow', 0);
    const started = Date.now();
    const deleted = await run('delete', 'app', '--config', config);
    const took = Date.now() - started;
    expect(deleted.code).toBe(1);
    expect(deleted.stderr).toContain('container-slow');
    // The command's bound (3 s), not forever.
    expect(took).toBeGreaterThanOrEqual(2_900);
    expect(took).toBeLessThan(6_000);
  }, 20_000);
});
