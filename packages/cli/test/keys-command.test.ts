// runKeysCommand: create/list/revoke/rotate/delete against a temp JSON config file and a real Redis, in process and as a subprocess.
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { parse as parseCsv } from 'csv-parse/sync';
import request from 'supertest';
import { readLockHolder } from '@tollgate/core/process-lock';
import { createRedisStores } from '@tollgate/redis';
import { API_KEY_PATTERN, apiKeyAuth, hashApiKey, keyRecordsFromConfig } from '@tollgate/auth';
import { identityServer, runKeys } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');

const run = runKeys;

/** The key printed by `create`/`rotate` (the one line holding a tgk_ key). */
/**
 * Another process's change reaches this process's key cache over pub/sub (typically well under
 * 1 ms, longer on a loaded machine): wait for the refusal, a bounded time, well below the cache's
 * 60 s age limit, so a change that is never delivered still fails here.
 */
async function refusedSoon(app: Parameters<typeof request>[0], key: string): Promise<number> {
  const until = Date.now() + 2000;
  for (;;) {
    const status = (await request(app).get('/x').set('x-api-key', key)).status;
    if (status !== 200 || Date.now() > until) return status;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function printedKey(stdout: string): string {
  const key = stdout
    .split('\n')
    .map((line) => line.trim())
    .find((line) => API_KEY_PATTERN.test(line));
  if (!key) throw new Error('no key printed');
  return key;
}

describe('keys command against a JSON config file', () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tollgate-keys-'));
    config = join(dir, 'tollgate.json');
    await writeFile(
      config,
      `${JSON.stringify({ port: 8787, tiers: { pro: { requestsPerMinute: 600 } }, keys: [{ id: 'existing', sha256: 'a'.repeat(64), tenant: 'acme', scopes: ['chat'], budget: { usd: 5, period: 'day' } }] }, null, 2)}\n`,
      { mode: 0o640 },
    );
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('create prints the key once and appends its record, leaving the rest of the file alone', async () => {
    const out = await run(
      'keys',
      'create',
      '--config',
      config,
      '--tenant',
      'acme',
      '--user',
      'alice',
      '--scopes',
      'chat,embeddings',
      '--feature',
      'support-bot',
      '--tier',
      'pro',
      '--expires',
      '30d',
      '--id',
      'acme-alice',
    );
    expect(out).toMatchObject({ code: 0, stderr: '' });
    const key = printedKey(out.stdout);
    expect(out.stdout.split(key)).toHaveLength(2);

    const file = JSON.parse(await readFile(config, 'utf8'));
    expect(file.port).toBe(8787);
    expect(file.tiers).toEqual({ pro: { requestsPerMinute: 600 } });
    expect(file.keys[0]).toEqual({
      id: 'existing',
      sha256: 'a'.repeat(64),
      tenant: 'acme',
      scopes: ['chat'],
      budget: { usd: 5, period: 'day' },
    });
    const entry = file.keys[1];
    expect(entry).toMatchObject({
      id: 'acme-alice',
      sha256: hashApiKey(key),
      tenant: 'acme',
      user: 'alice',
      tier: 'pro',
      feature: 'support-bot',
      scopes: ['chat', 'embeddings'],
    });
    const expiresIn = Date.parse(entry.expiresAt) - Date.now();
    expect(expiresIn).toBeGreaterThan(29 * 86_400_000);
    expect(expiresIn).toBeLessThanOrEqual(30 * 86_400_000);
    expect(JSON.stringify(file)).not.toContain(key);
    expect((await stat(config)).mode & 0o777).toBe(0o640);
    expect((await readdir(dir)).sort()).toEqual(['tollgate.json']);

    // The printed key works against the records the file now holds.
    const app = identityServer(apiKeyAuth({ keys: keyRecordsFromConfig(file.keys) }));
    const res = await request(app).get('/x').set('x-api-key', key);
    expect(res.body.identity).toMatchObject({
      keyId: 'acme-alice',
      tenantId: 'acme',
      userId: 'alice',
      tier: 'pro',
      feature: 'support-bot',
    });
  });

  it('refuses a taken id without touching the file', async () => {
    const before = await readFile(config, 'utf8');
    const out = await run('create', '--config', config, '--tenant', 'acme', '--id', 'acme-alice');
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/already exists/);
    expect(out.stdout).toBe('');
    expect(await readFile(config, 'utf8')).toBe(before);
  });

  it('list shows ids and status but never hashes, as a table, CSV or JSON', async () => {
    const out = await run('keys', 'list', '--config', config);
    expect(out.code).toBe(0);
    const lines = out.stdout.split('\n');
    expect(lines[0]).toMatch(/^id\s+status\s+tenant\s+user\s+tier\s+feature\s+scopes\s+models\s+expires\s+created$/);
    expect(lines[1]).toMatch(/^-+(\s+-+){9}$/);
    expect(out.stdout).toMatch(/\nexisting\s+active\s+acme\s+-\s+-\s+-\s+chat\s/);
    expect(out.stdout).toMatch(/\nacme-alice\s+active\s+acme\s+alice\s+pro\s+support-bot\s+chat,embeddings\s/);
    // Aligned: every line's status column starts where the header's does.
    const at = lines[0]!.indexOf('status');
    for (const line of lines.slice(2).filter(Boolean)) expect(line.slice(at)).toMatch(/^(active|revoked|expired)\b/);
    expect(out.stdout).not.toMatch(/[0-9a-f]{64}/);
    const csv = await run('keys', 'list', '--config', config, '--format', 'csv');
    const rows = parseCsv(csv.stdout, { columns: true }) as Record<string, string>[];
    expect(rows.find((row) => row.id === 'acme-alice')).toMatchObject({ tenant: 'acme', scopes: 'chat,embeddings' });
    expect(csv.stdout).not.toMatch(/sha256|[0-9a-f]{64}/);
    const json = await run('keys', 'list', '--config', config, '--json');
    const listed = JSON.parse(json.stdout);
    // In id order, as every list pages (the file's order was shown before).
    expect(listed.map((entry: { id: string; status: string }) => [entry.id, entry.status])).toEqual([
      ['acme-alice', 'active'],
      ['existing', 'active'],
    ]);
    expect(json.stdout).not.toMatch(/sha256|[0-9a-f]{64}/);
  });

  it('revoke disables the key in the file; the key then fails', async () => {
    const created = await run(
      'create',
      '--config',
      config,
      '--tenant',
      'beta',
      '--user',
      'bob',
      '--scopes',
      'chat',
      '--id',
      'beta-bob',
    );
    const key = printedKey(created.stdout);
    const out = await run('keys', 'revoke', 'beta-bob', '--config', config);
    expect(out.code).toBe(0);
    const file = JSON.parse(await readFile(config, 'utf8'));
    expect(file.keys.find((entry: { id: string }) => entry.id === 'beta-bob').disabled).toBe(true);
    const app = identityServer(apiKeyAuth({ keys: keyRecordsFromConfig(file.keys) }));
    expect((await request(app).get('/x').set('x-api-key', key)).status).toBe(401);
    expect((await run('list', '--config', config)).stdout).toMatch(/beta-bob\s+revoked/);
    expect((await run('revoke', 'nobody', '--config', config)).code).toBe(1);
  });

  it('rotate adds a key with the same attributes and puts the old one on a grace period; delete removes', async () => {
    const endBefore = JSON.parse(await readFile(config, 'utf8')).keys.find(
      (entry: { id: string }) => entry.id === 'acme-alice',
    ).expiresAt;
    const out = await run('rotate', 'acme-alice', '--config', config, '--id', 'acme-alice-2', '--grace', '1h');
    expect(out.code).toBe(0);
    const key = printedKey(out.stdout);
    const file = JSON.parse(await readFile(config, 'utf8'));
    const fresh = file.keys.find((entry: { id: string }) => entry.id === 'acme-alice-2');
    const old = file.keys.find((entry: { id: string }) => entry.id === 'acme-alice');
    expect(fresh).toMatchObject({
      sha256: hashApiKey(key),
      tenant: 'acme',
      user: 'alice',
      tier: 'pro',
      feature: 'support-bot',
      scopes: ['chat', 'embeddings'],
    });
    // The successor ends when the key it replaces was to end; the old one at the grace's end.
    expect(fresh.expiresAt).toBe(endBefore);
    expect(Date.parse(old.expiresAt) - Date.now()).toBeLessThanOrEqual(3_600_000);
    expect((await run('delete', 'acme-alice-2', '--config', config)).code).toBe(0);
    expect((await run('delete', 'acme-alice-2', '--config', config)).code).toBe(1);
  });

  it('rotate --grace 0 stops the old key at once, as the dashboard does; --grace keep leaves it', async () => {
    const created = await run('create', '--config', config, '--tenant', 'acme', '--id', 'zero-grace');
    const oldKey = printedKey(created.stdout);
    const rotated = await run('rotate', 'zero-grace', '--grace', '0', '--config', config, '--id', 'zero-grace-2');
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(/The old key "zero-grace" is revoked/);
    const newKey = printedKey(rotated.stdout);
    const file = JSON.parse(await readFile(config, 'utf8'));
    const app = identityServer(apiKeyAuth({ keys: keyRecordsFromConfig(file.keys) }));
    expect((await request(app).get('/x').set('x-api-key', oldKey)).status).toBe(401);
    expect((await request(app).get('/x').set('x-api-key', newKey)).body.identity.keyId).toBe('zero-grace-2');
    // A revoked key is not rotated again (the dashboard's rule too).
    const again = await run('rotate', 'zero-grace', '--config', config);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('is revoked: create a new key instead');

    const kept = await run('rotate', 'zero-grace-2', '--grace', 'keep', '--config', config, '--id', 'zero-grace-3');
    expect(kept.code).toBe(0);
    const after = JSON.parse(await readFile(config, 'utf8'));
    const previous = after.keys.find((entry: { id: string }) => entry.id === 'zero-grace-2');
    expect(previous.disabled).toBeUndefined();
    expect(previous.expiresAt).toBeUndefined();
  });

  it('rotate keeps the end date of a key that expires (the same instant), unless --expires gives a new one', async () => {
    const created = await run('create', '--config', config, '--tenant', 'acme', '--expires', '30d', '--id', 'month');
    expect(created.code).toBe(0);
    const endOf = async (id: string) =>
      JSON.parse(await readFile(config, 'utf8')).keys.find((entry: { id: string }) => entry.id === id)?.expiresAt;
    const end = await endOf('month');
    expect(Date.parse(end) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    const rotated = await run('rotate', 'month', '--grace', '0', '--config', config, '--id', 'month-2');
    expect(rotated.code).toBe(0);
    expect(await endOf('month-2')).toBe(end);
    const renewed = await run('rotate', 'month-2', '--config', config, '--id', 'month-3', '--expires', '7d');
    expect(renewed.code).toBe(0);
    expect(Date.parse(await endOf('month-3')) - Date.now()).toBeLessThan(7 * 86_400_000 + 60_000);
    expect(await endOf('month-2')).toBe(end);
  });

  it('create without --scopes says the key holds none', async () => {
    const out = await run('create', '--config', config, '--tenant', 'acme', '--id', 'no-scopes');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('no scopes: it passes no scope check');
  });

  it('rotate with a bad --grace or --expires stores nothing (a stored key that was never printed could not be used or found)', async () => {
    const before = await readFile(config, 'utf8');
    for (const grace of ['soon', '-1h', '1 fortnight']) {
      const out = await run('rotate', 'existing', '--config', config, '--id', 'existing-2', `--grace=${grace}`);
      expect(out.code).toBe(2);
      expect(out.stderr).toContain('--grace must be 0 (stop the old key now), a duration like 1h, or keep');
      expect(out.stdout).not.toMatch(/tgk_/);
      expect(await readFile(config, 'utf8')).toBe(before);
    }
    const past = await run('rotate', 'existing', '--config', config, '--expires', '2001-01-01');
    expect(past.code).toBe(2);
    expect(past.stderr).toContain('--expires must be in the future');
    expect(await readFile(config, 'utf8')).toBe(before);
  });

  it('creates a missing config file (private), and create without a target only prints the record', async () => {
    const fresh = join(dir, 'new.json');
    const out = await run('create', '--config', fresh, '--tenant', 'acme', '--scopes', 'chat');
    expect(out.code).toBe(0);
    expect(JSON.parse(await readFile(fresh, 'utf8')).keys).toHaveLength(1);
    expect((await stat(fresh)).mode & 0o777).toBe(0o600);

    const printed = await run('create', '--tenant', 'acme', '--user', 'carol', '--json');
    expect(printed.code).toBe(0);
    const { key, record, storedIn } = JSON.parse(printed.stdout);
    expect(storedIn).toBeNull();
    expect(record).toMatchObject({ sha256: hashApiKey(key), tenant: 'acme', user: 'carol', scopes: [] });
    expect(record.id).toMatch(/^acme-carol-[0-9a-f]{8}$/);
  });

  it('create --team charges the key to a team of its tenant; a team without a tenant is refused', async () => {
    const printed = await run('create', '--tenant', 'acme', '--team', 'research', '--json');
    expect(printed.code).toBe(0);
    const { record } = JSON.parse(printed.stdout);
    expect(record).toMatchObject({ tenant: 'acme', team: 'research' });
    expect(keyRecordsFromConfig([record])[0]).toMatchObject({ tenantId: 'acme', team: 'research' });
    expect(() => keyRecordsFromConfig([{ ...record, tenant: undefined }])).toThrow(/team needs the key's tenant/);
  });

  it('usage errors exit 2 with help on stderr; a broken config file exits 1 naming the field', async () => {
    for (const argv of [
      [],
      ['frobnicate'],
      ['list'],
      ['create', '--bogus'],
      ['create', '--expires', 'soon'],
      ['revoke', '--config', config],
      ['list', '--config', config, '--redis', 'redis://x'],
    ]) {
      const out = await run(...argv);
      expect(out.code).toBe(2);
      expect(out.stderr.length).toBeGreaterThan(0);
    }
    expect((await run('--help')).code).toBe(0);
    const typo = await run('lst', '--config', config);
    expect(typo).toMatchObject({ code: 2, stdout: '' });
    expect(typo.stderr).toContain('unknown command "lst"; did you mean "list"?');
    const flag = await run('list', '--confg', config);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('unknown option --confg; did you mean "--config"?');
    const format = await run('list', '--config', config, '--format', 'jsno');
    expect(format.code).toBe(2);
    expect(format.stderr).toContain('--format must be one of table, csv, json; got "jsno"; did you mean "json"?');
    const broken = join(dir, 'broken.json');
    await writeFile(broken, JSON.stringify({ keys: [{ id: 'x', sha256: 'short' }] }));
    const out = await run('list', '--config', broken);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/keys\[0\]\.sha256/);
  });

  it('runs as a subprocess, the way `pnpm tollgate keys` does', async () => {
    const { stdout } = await promisify(execFile)(
      join(root, 'node_modules', '.bin', 'tsx'),
      [
        '--conditions=source',
        join(here, 'fixtures', 'keys-cli.ts'),
        'keys',
        'create',
        '--config',
        config,
        '--tenant',
        'sub',
        '--id',
        'from-subprocess',
        '--json',
      ],
      { cwd: root },
    );
    const { key } = JSON.parse(stdout);
    const file = JSON.parse(await readFile(config, 'utf8'));
    expect(file.keys.find((entry: { id: string }) => entry.id === 'from-subprocess').sha256).toBe(hashApiKey(key));
    const failed = await promisify(execFile)(
      join(root, 'node_modules', '.bin', 'tsx'),
      ['--conditions=source', join(here, 'fixtures', 'keys-cli.ts'), 'keys', 'revoke', 'nobody', '--config', config],
      { cwd: root },
    ).catch((error: { code: number }) => error);
    expect((failed as { code: number }).code).toBe(1);
  });
});

describe("the config file's lock", () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tollgate-keys-lock-'));
    config = join(dir, 'tollgate.json');
    await writeFile(config, '{ "keys": [] }\n');
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a run killed while it holds the lock does not leave it held: the next run takes it over', async () => {
    const holder = spawn(
      process.execPath,
      ['--import', 'tsx', '--conditions=source', join(here, 'fixtures', 'hold-config-lock.ts'), config],
      { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = once(holder, 'exit');
    const lock = `${config}.lock`;
    try {
      const [first] = (await once(holder.stdout!, 'data')) as [Buffer];
      expect(first.toString()).toBe('holding\n');
      expect(readLockHolder(lock)?.pid).toBe(holder.pid);
    } finally {
      holder.kill('SIGKILL');
      await exited;
    }
    // What the killed run left behind: the lock, naming a process that is gone.
    expect(readLockHolder(lock)?.pid).toBe(holder.pid);

    const out = await run('create', '--config', config, '--tenant', 'acme', '--id', 'after-crash');
    expect(out).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(await readFile(config, 'utf8')).keys.map((key: { id: string }) => key.id)).toEqual([
      'after-crash',
    ]);
    expect(existsSync(lock)).toBe(false);
    expect((await readdir(dir)).sort()).toEqual(['tollgate.json']);
  }, 30_000);

  it('runs of one process wait for each other: no edit is lost', async () => {
    const ids = Array.from({ length: 5 }, (_, i) => `together-${i}`);
    const outs = await Promise.all(ids.map((id) => run('create', '--config', config, '--id', id)));
    expect(outs.map((out) => out.code)).toEqual(ids.map(() => 0));
    const stored = JSON.parse(await readFile(config, 'utf8')).keys.map((key: { id: string }) => key.id);
    expect(stored).toEqual(expect.arrayContaining(ids));
    expect(existsSync(`${config}.lock`)).toBe(false);
  });
});

describe('keys command against Redis', () => {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const prefix = `tg-test:${randomUUID()}:`;
  const stores = createRedisStores({ url, prefix });
  const app = identityServer(apiKeyAuth({ keys: stores.keys }));

  afterAll(async () => {
    for (const record of await stores.keys.list()) await stores.keys.delete(record.id);
    await stores.close();
  });

  it('create stores the record in Redis and the key works at once; revoke stops it within the pub/sub delivery time', async () => {
    const out = await run(
      'keys',
      'create',
      '--redis',
      url,
      '--prefix',
      prefix,
      '--tenant',
      'acme',
      '--user',
      'alice',
      '--scopes',
      'chat',
      '--id',
      'redis-alice',
    );
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/Stored in Redis/);
    const key = printedKey(out.stdout);
    expect((await stores.keys.findById('redis-alice'))?.sha256).toBe(hashApiKey(key));
    expect((await request(app).get('/x').set('x-api-key', key)).body.identity).toMatchObject({
      keyId: 'redis-alice',
      tenantId: 'acme',
      userId: 'alice',
    });

    const listed = await run('list', '--redis', url, '--prefix', prefix);
    expect(listed.stdout).toMatch(/redis-alice\s+active/);
    expect(listed.stdout).not.toMatch(/[0-9a-f]{64}/);

    expect((await run('revoke', 'redis-alice', '--redis', url, '--prefix', prefix)).code).toBe(0);
    expect(await refusedSoon(app, key)).toBe(401);
    expect((await run('list', '--redis', url, '--prefix', prefix)).stdout).toMatch(/redis-alice\s+revoked/);
    expect((await run('revoke', 'nobody', '--redis', url, '--prefix', prefix)).code).toBe(1);
  });

  it('list reads the store a page at a time, by tenant and by the start of the id', async () => {
    for (let i = 0; i < 2100; i++)
      await stores.keys.put({
        id: `bulk-${String(i).padStart(4, '0')}`,
        sha256: hashApiKey(`bulk ${i}`),
        tenantId: i % 3 === 0 ? 'bulk-a' : 'bulk-b',
        scopes: [],
        createdAt: '2026-11-27T08:00:00.000Z',
      });
    const all = JSON.parse((await run('list', '--redis', url, '--prefix', prefix, '--json')).stdout) as {
      id: string;
    }[];
    expect(all.filter((entry) => entry.id.startsWith('bulk-'))).toHaveLength(2100);
    const ofA = await run('list', '--redis', url, '--prefix', prefix, '--tenant', 'bulk-a', '--q', 'bulk-00', '--json');
    const expected = Array.from({ length: 100 }, (_, i) => i)
      .filter((i) => i % 3 === 0)
      .map((i) => `bulk-00${String(i).padStart(2, '0')}`);
    expect(JSON.parse(ofA.stdout).map((entry: { id: string }) => entry.id)).toEqual(expected);
  });

  it('rotate on Redis keeps the end date too', async () => {
    await run('create', '--redis', url, '--prefix', prefix, '--tenant', 'acme', '--expires', '30d', '--id', 'r-month');
    const end = (await stores.keys.findById('r-month'))?.expiresAt;
    expect(end).toBeDefined();
    const rotated = await run('rotate', 'r-month', '--grace', '0', '--redis', url, '--prefix', prefix, '--id', 'r-2');
    expect(rotated.code).toBe(0);
    expect((await stores.keys.findById('r-2'))?.expiresAt).toBe(end);
  });

  it('rotate and delete work on Redis too', async () => {
    const created = await run('create', '--redis', url, '--prefix', prefix, '--tenant', 'acme', '--id', 'redis-rot');
    const oldKey = printedKey(created.stdout);
    const rotated = await run('rotate', 'redis-rot', '--redis', url, '--prefix', prefix, '--id', 'redis-rot-2');
    const newKey = printedKey(rotated.stdout);
    expect((await request(app).get('/x').set('x-api-key', oldKey)).status).toBe(200);
    expect((await request(app).get('/x').set('x-api-key', newKey)).body.identity.keyId).toBe('redis-rot-2');
    expect((await run('delete', 'redis-rot', '--redis', url, '--prefix', prefix)).code).toBe(0);
    expect(await refusedSoon(app, oldKey)).toBe(401);
  });
});
