// Keys an operator can trust: `tollgate keys` refuses a write the gateway would refuse (the file untouched), a revoke
// reaches every running gateway even while another part of the file is broken (or the command says which did not),
// and a key naming a tenant or tier the config does not know is never served; config files, data directories and
// Redis key stores, one and two processes.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { runCli } from '@tollgate/cli';
import {
  deleteRedisPrefix,
  healthDetails,
  MOCK_UPSTREAMS,
  newApiKey,
  REDIS_URL,
  sha256Hex,
  spawnProxy,
  waitFor,
} from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-key-trust-'));
const running: SpawnedProxy[] = [];

afterAll(async () => {
  await Promise.all(running.map((proxy) => proxy.stop()));
  rmSync(dir, { recursive: true, force: true });
});

async function start(env: Record<string, string>): Promise<SpawnedProxy> {
  const proxy = await spawnProxy({ REDIS_URL: '', TOLLGATE_DATA_DIR: '', ...env });
  running.push(proxy);
  return proxy;
}

/** `tollgate ...` as the operator runs it, in this process: its exit code and what it printed. */
async function tollgate(...argv: string[]) {
  return tollgateIn({ ...process.env, TOLLGATE_CONFIG: '' }, ...argv);
}

async function tollgateIn(env: NodeJS.ProcessEnv, ...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  };
  const code = await runCli(argv, io, env);
  return { code, stdout, stderr };
}

const status = async (proxy: SpawnedProxy, key: string) =>
  (await fetch(`${proxy.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status;

const adminKey = newApiKey();
const baseConfig = {
  upstreams: MOCK_UPSTREAMS,
  adminKeySha256: sha256Hex(adminKey),
  tiers: { free: { requestsPerMinute: 50 }, pro: { requestsPerMinute: 600 } },
  tenants: { acme: { tier: 'pro' } },
};

describe('a config file read by two gateways (memory stores)', () => {
  const configPath = path.join(dir, 'tollgate.json');
  let a: SpawnedProxy;
  let b: SpawnedProxy;
  let key: string;

  it('a key for an unknown tenant or tier is refused with a did-you-mean, the file byte for byte as it was', async () => {
    writeFileSync(configPath, `${JSON.stringify(baseConfig, null, 2)}\n`);
    [a, b] = await Promise.all([start({ TOLLGATE_CONFIG: configPath }), start({ TOLLGATE_CONFIG: configPath })]);
    const before = readFileSync(configPath);
    const tenant = await tollgate('keys', 'create', '--config', configPath, '--tenant', 'acmee', '--scopes', 'chat');
    expect(tenant.code).toBe(1);
    expect(tenant.stderr).toContain('keys[0].tenant names an unknown tenant "acmee"; did you mean "acme"?');
    expect(tenant.stdout).not.toMatch(/tgk_/);
    const tier = await tollgate('keys', 'create', '--config', configPath, '--tenant', 'acme', '--tier', 'platinum');
    expect(tier.code).toBe(1);
    expect(tier.stderr).toContain('keys[0].tier names an unknown tier "platinum"');
    expect(readFileSync(configPath).equals(before)).toBe(true);
  }, 60_000);

  it('a key created is taken by both gateways before the command ends, and it says so', async () => {
    const created = await tollgate(
      'keys',
      'create',
      '--config',
      configPath,
      '--tenant',
      'acme',
      '--scopes',
      'chat',
      '--id',
      'acme-app',
    );
    expect(created.code).toBe(0);
    key = /tgk_\S+/.exec(created.stdout)![0];
    expect(created.stdout).toContain(`pid ${a.child.pid}`);
    expect(created.stdout).toContain(`pid ${b.child.pid}`);
    expect(await status(a, key)).toBe(200);
    expect(await status(b, key)).toBe(200);
  }, 30_000);

  it('with another part of the file broken by hand, a create is refused but a revoke reaches both gateways', async () => {
    const broken = JSON.parse(readFileSync(configPath, 'utf8'));
    broken.tiers.free.requestsPerMinut = 5;
    writeFileSync(configPath, `${JSON.stringify(broken, null, 2)}\n`);
    // Each gateway says the file was not taken, on /healthz and in its metric.
    for (const proxy of [a, b]) {
      const health = await waitFor(async () => {
        const body = await healthDetails<{
          status: string;
          configFiles?: { status: string; problems: string[] }[];
        }>(proxy.url, adminKey);
        // A watcher may read the file while writeFileSync has it half written ('unreadable'); the whole file follows.
        return body.status === 'degraded' && body.configFiles?.[0]?.status === 'invalid' ? body : undefined;
      }, 'the gateway to say its config file is not taken');
      expect(health.configFiles![0]!.status).toBe('invalid');
      expect(health.configFiles![0]!.problems.join()).toContain('did you mean "requestsPerMinute"?');
      const metrics = await (
        await fetch(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } })
      ).text();
      expect(metrics).toMatch(/tollgate_config_file_valid\{file="[^"]*tollgate\.json"\} 0/);
    }
    expect(a.output()).toContain('does not validate; its revocations, expiries and deletions are in force');

    const before = readFileSync(configPath);
    const create = await tollgate('keys', 'create', '--config', configPath, '--tenant', 'acme', '--scopes', 'chat');
    expect(create.code).toBe(1);
    expect(create.stderr).toContain('nothing was written');
    expect(readFileSync(configPath).equals(before)).toBe(true);

    const revoke = await tollgate('keys', 'revoke', 'acme-app', '--config', configPath);
    expect(revoke.code).toBe(0);
    expect(revoke.stderr).toContain('still does not validate');
    expect(revoke.stdout).toContain(`pid ${a.child.pid}`);
    expect(revoke.stdout).toContain(`pid ${b.child.pid}`);
    // Taken when the command says so: refused at once on both.
    expect(await status(a, key)).toBe(401);
    expect(await status(b, key)).toBe(401);
  }, 60_000);

  it('fixed, the file is taken whole again and /healthz is ok', async () => {
    writeFileSync(
      configPath,
      `${JSON.stringify({ ...JSON.parse(readFileSync(configPath, 'utf8')), ...baseConfig }, null, 2)}\n`,
    );
    for (const proxy of [a, b])
      await waitFor(
        async () =>
          ((await (await fetch(`${proxy.url}/healthz`)).json()) as { status: string }).status === 'ok'
            ? true
            : undefined,
        'the gateway to take the fixed file',
      );
    expect(await status(a, key)).toBe(401);
  }, 30_000);

  it('a revoke a running reader did not take exits 1 naming it; a reader that died is forgotten', async () => {
    const created = await tollgate('keys', 'create', '--config', configPath, '--tenant', 'acme', '--id', 'paused');
    const pausedKey = /tgk_\S+/.exec(created.stdout)![0];
    // b stops reading (paused), a keeps reading.
    b.child.kill('SIGSTOP');
    try {
      const revoke = await tollgate('keys', 'revoke', 'paused', '--config', configPath);
      expect(revoke.code).toBe(1);
      expect(revoke.stdout).toContain(`pid ${a.child.pid}`);
      expect(revoke.stderr).toContain(`Not taken within its time by pid ${b.child.pid}`);
      expect(await status(a, pausedKey)).toBe(401);
    } finally {
      b.child.kill('SIGCONT');
    }
    await waitFor(async () => ((await status(b, pausedKey)) === 401 ? true : undefined), 'b to take it once resumed');
    b.child.kill('SIGKILL');
    await new Promise((resolve) => b.child.once('exit', resolve));
    const again = await tollgate('keys', 'create', '--config', configPath, '--tenant', 'acme', '--id', 'after');
    expect(again.code).toBe(0);
    expect(again.stdout).not.toContain(`pid ${b.child.pid}`);
  }, 60_000);
});

describe('/admin/keys', () => {
  it('refuses a key naming a tenant, tier or tool server the config does not know, by the same rule', async () => {
    const configPath = path.join(dir, 'admin.json');
    writeFileSync(configPath, JSON.stringify(baseConfig));
    const proxy = await start({ TOLLGATE_CONFIG: configPath });
    const create = (body: object) =>
      fetch(`${proxy.url}/admin/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    for (const [body, param, text] of [
      [{ tenant: 'acmee' }, 'tenant', 'names an unknown tenant "acmee"; did you mean "acme"?'],
      [{ tier: 'fre' }, 'tier', 'names an unknown tier "fre"; did you mean "free"?'],
      [{ tools: ['search/*'] }, 'tools', 'whose server "search" is not in mcpServers'],
    ] as const) {
      const answer = await create(body);
      expect(answer.status).toBe(400);
      const { error } = (await answer.json()) as { error: { param: string; message: string } };
      expect(error.param).toBe(param);
      expect(error.message).toContain(text);
    }
    const made = await create({ tenant: 'acme', tier: 'free' });
    expect(made.status).toBe(201);
    expect(await status(proxy, ((await made.json()) as { key: string }).key)).toBe(200);
  }, 30_000);
});

describe('a data directory on memory stores', () => {
  it('a key written to its keys.json for an unknown tier is refused by the command, and never served if written by hand', async () => {
    const dataDir = path.join(dir, 'data');
    const proxy = await start({ TOLLGATE_CONFIG: '', TOLLGATE_DATA_DIR: dataDir });
    const keysPath = path.join(dataDir, 'keys.json');
    const before = readFileSync(keysPath);
    const out = await tollgate('keys', 'create', '--config', keysPath, '--tenant', 'demo-pro', '--tier', 'platinum');
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('names an unknown tier "platinum"');
    expect(readFileSync(keysPath).equals(before)).toBe(true);

    // By hand, past the command: the gateway refuses the key rather than serve it on the default tier.
    const handKey = newApiKey();
    const file = JSON.parse(readFileSync(keysPath, 'utf8'));
    file.keys.push({ id: 'by-hand', sha256: sha256Hex(handKey), tenant: 'demo-pro', tier: 'platinum', scopes: [] });
    writeFileSync(keysPath, JSON.stringify(file));
    const good = await tollgate('keys', 'create', '--config', keysPath, '--tenant', 'demo-pro', '--id', 'good');
    expect(good.stderr).toContain('keys[');
    expect(good.code).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await status(proxy, handKey)).toBe(401);
    expect(proxy.output()).toContain('refused a key from the key store: key "by-hand".tier names an unknown tier');
  }, 60_000);
});

describe('a Redis key store shared by two gateways', () => {
  const prefix = `tg-key-trust-${process.pid}:`;
  afterAll(() => deleteRedisPrefix(prefix));

  it('a revoke stops the key on both within the pub/sub delivery; a key naming an unknown tier is never served', async () => {
    const configPath = path.join(dir, 'redis.json');
    writeFileSync(configPath, JSON.stringify({ ...baseConfig, redisPrefix: prefix }));
    const env = { TOLLGATE_CONFIG: configPath, REDIS_URL };
    const [a, b] = await Promise.all([start(env), start(env)]);
    const created = await tollgate('keys', 'create', '--redis', REDIS_URL, '--prefix', prefix, '--tenant', 'acme');
    const key = /tgk_\S+/.exec(created.stdout)![0];
    const id = /API key "([^"]+)"/.exec(created.stdout)![1]!;
    expect(await status(a, key)).toBe(200);
    expect(await status(b, key)).toBe(200);
    expect((await tollgate('keys', 'revoke', id, '--redis', REDIS_URL, '--prefix', prefix)).code).toBe(0);
    for (const proxy of [a, b])
      await waitFor(async () => ((await status(proxy, key)) === 401 ? true : undefined), 'the revoked key to stop');

    // With the gateway's config named, the command refuses it; without, it says it cannot check, and the gateways
    // refuse to serve it.
    const withConfig = { ...process.env, TOLLGATE_CONFIG: configPath };
    const refused = await tollgateIn(
      withConfig,
      'keys',
      'create',
      '--redis',
      REDIS_URL,
      '--prefix',
      prefix,
      '--tier',
      'platinum',
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('the key.tier names an unknown tier "platinum"');
    const platinum = await tollgate('keys', 'create', '--redis', REDIS_URL, '--prefix', prefix, '--tier', 'platinum');
    expect(platinum.stderr).toContain('not checked here');
    const platinumKey = /tgk_\S+/.exec(platinum.stdout)![0];
    expect(await status(a, platinumKey)).toBe(401);
    expect(await status(b, platinumKey)).toBe(401);
    expect(a.output()).toContain('names an unknown tier "platinum"');
  }, 60_000);
});
