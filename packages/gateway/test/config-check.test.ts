// One validation finds every problem of a config in one pass (its fields, the names across them, the environment),
// each with the value given: `tollgate-gateway --check`, the start and createGateway say the same list; a config names
// its upstreams (the mock only on purpose); a validated config changed afterwards, and keys reloaded while running,
// go through the same validation.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createServer } from 'node:net';
import { afterAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { checkGatewayConfig } from '../src/check.js';
import { ConfigError, createGateway, createGatewayApp, validateConfig } from '../src/index.js';
import type { GatewayConfig } from '../src/index.js';
import { WITH_MOCK } from './helpers/mock-upstream.js';

const root = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'tollgate-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A shape error, an unknown tier, an unknown model and an unset variable: four kinds of problem in one file. */
const fourProblems = {
  upstreams: { openai: { baseUrl: 'https://api.openai.com/v1', apiKeyEnv: 'TG_CHECK_UNSET_KEY' } },
  tiers: { free: { requestsPerMinute: '5', models: ['gpt-4o-mnii'] } },
  tenants: { acme: { tier: 'pro' } },
};
const expected = [
  'tiers.free.requestsPerMinute must be a positive integer; got "5"',
  'tenants.acme.tier names an unknown tier "pro"',
  'tiers.free.models[0] names an unknown model "gpt-4o-mnii"; did you mean "gpt-4o-mini"? (add it under "models" with its prices if it is yours)',
  'upstreams.openai.apiKeyEnv names TG_CHECK_UNSET_KEY, which is not set: set it, or the proxy would call openai without credentials',
];

function problemsOf(make: () => unknown): readonly string[] {
  try {
    make();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error('the config was accepted');
}

/** `tollgate-gateway ARGS` from the sources, as a process of its own. */
async function gatewayBin(args: string[], env: Record<string, string> = {}) {
  return promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--conditions=source', 'packages/gateway/src/bin.ts', ...args],
    { cwd: root, env: { ...process.env, TOLLGATE_CONFIG: '', REDIS_URL: '', PORT: '', ...env } },
  ).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

/** A port of this machine that nothing listens on (taken, then let go). */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function configFile(name: string, config: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(config));
  return file;
}

describe('every problem in one pass', () => {
  it('a shape error, an unknown tier, an unknown model and an unset variable, each with its value', () => {
    expect(problemsOf(() => validateConfig(fourProblems, { env: {} }))).toEqual(expected);
    // createGateway and createGatewayApp say the same list (the environment is the one they are given).
    expect(problemsOf(() => createGateway(fourProblems as unknown as GatewayConfig, { env: {} }))).toEqual(expected);
    expect(problemsOf(() => createGatewayApp(fourProblems as unknown as GatewayConfig, { env: {} }))).toEqual(expected);
  });

  it('a name pointing at an entry the schema refused is not reported twice, and array positions stay true', () => {
    const problems = problemsOf(() =>
      validateConfig({
        ...WITH_MOCK,
        models: { mine: { provider: 'openai', inputPerMTok: 'cheap', outputPerMTok: 1 } },
        tiers: { free: { models: ['mine'] } },
        keys: [
          { id: 'a', sha256: 'short' },
          { id: 'b', sha256: 'b'.repeat(64), tier: 'gold' },
        ],
      }),
    );
    expect(problems).toEqual([
      expect.stringMatching(/^models\.mine\.inputPerMTok must be a number of USD per million tokens, .*; got "cheap"$/),
      'keys[0].sha256 must be a SHA-256 hex digest (64 lowercase hex characters); got "short"',
      // keys[0] was taken out before the names were checked: the second key is still called keys[1].
      'keys[1].tier names an unknown tier "gold"',
    ]);
    // An upstream refused is neither missing nor pointed at in vain by its models.
    expect(
      problemsOf(() =>
        validateConfig({
          upstreams: { openai: { baseUrl: 'ftp://api.example' } },
          models: { mine: { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1 } },
        }),
      ),
    ).toEqual(['upstreams.openai.baseUrl must use http: or https:; got "ftp:"']);
  });

  it('the environment the parts read: webhook secrets and MCP headers, every one unset', () => {
    const problems = problemsOf(() =>
      validateConfig(
        {
          ...WITH_MOCK,
          alerts: {
            webhooks: [
              { url: 'https://hooks.example/a', secretEnv: 'TG_CHECK_HOOK_A' },
              { url: 'https://hooks.example/b', secretEnv: 'TG_CHECK_HOOK_B' },
            ],
          },
          mcpServers: { search: { url: 'http://127.0.0.1:9/mcp', headers: { authorization: 'TG_CHECK_MCP' } } },
        },
        { env: {} },
      ),
    );
    expect(problems).toEqual([
      'alerts.webhooks[0].secretEnv names TG_CHECK_HOOK_A, which is not set in the environment',
      'alerts.webhooks[1].secretEnv names TG_CHECK_HOOK_B, which is not set in the environment',
      'mcpServers.search.headers.authorization names TG_CHECK_MCP, which is not set in the environment',
    ]);
  });
});

describe('tollgate-gateway --check', () => {
  it('exits 1 listing every problem with its value, without serving', async () => {
    const file = configFile('four.json', fourProblems);
    const ran = await gatewayBin(['--check', '--config', file], { TG_CHECK_UNSET_KEY: '' });
    expect(ran.code).toBe(1);
    expect(ran.stdout).toBe('');
    expect(ran.stderr).toBe(`${file} would not serve, 4 problems:\n${expected.map((p) => `  - ${p}\n`).join('')}`);
    expect(ran.stderr).not.toContain('listening');
  }, 60_000);

  it('exits 0 with one line saying what it would serve', async () => {
    const key = generateApiKey();
    const file = configFile('good.json', {
      upstreams: { openai: { baseUrl: 'https://api.openai.com/v1', apiKeyEnv: 'TG_CHECK_SET_KEY' } },
      postgresUrl: 'postgres://postgres:secret@127.0.0.1:5432/test',
      tiers: { free: { requestsPerMinute: 5 } },
      tenants: { acme: { tier: 'free' }, globex: { tier: 'free' } },
      keys: [{ id: 'k', sha256: hashApiKey(key), tenant: 'acme' }],
    });
    const ran = await gatewayBin(['--check', '--config', file], {
      TG_CHECK_SET_KEY: 'sk-set',
      REDIS_URL: 'redis://127.0.0.1:6379',
    });
    expect(ran).toEqual({
      code: 0,
      stdout:
        `${file} would serve: 2 tenants, 1 key; stores: Redis at redis://127.0.0.1:6379; ` +
        'ledger: PostgreSQL at postgres://127.0.0.1:5432/test; upstreams: openai\n',
      stderr: '',
    });
  }, 60_000);

  it('asks the Redis, the PostgreSQL and the price source the config names, and lists each that fails at once', async () => {
    const [redisPort, postgresPort] = [await closedPort(), await closedPort()];
    const missing = join(dir, 'no-such-prices.json');
    const file = configFile('unreachable.json', {
      ...WITH_MOCK,
      redisUrl: `redis://127.0.0.1:${redisPort}`,
      postgresUrl: `postgres://postgres:secret@127.0.0.1:${postgresPort}/test`,
      prices: { source: missing },
    });
    const started = Date.now();
    const ran = await gatewayBin(['--check', '--config', file]);
    expect(ran.code).toBe(1);
    expect(ran.stdout).toBe('');
    const problems = ran.stderr.split('\n').filter((line) => line.startsWith('  - '));
    expect(ran.stderr.split('\n')[0]).toBe(`${file} would not serve, 3 problems:`);
    expect(problems[0]).toMatch(
      new RegExp(
        `^  - redisUrl: Redis does not answer at redis://127\\.0\\.0\\.1:${redisPort} \\(PING: .*ECONNREFUSED`,
      ),
    );
    expect(problems[1]).toMatch(
      new RegExp(
        `^  - postgresUrl: PostgreSQL does not answer at postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${postgresPort}/test ` +
          '\\(connect and SELECT 1: .*ECONNREFUSED',
      ),
    );
    expect(problems[2]).toContain(`  - prices.source: ${missing} was read and refused (ENOENT`);
    // REDIS_URL is what the start would use, so it is what is asked, under its own name.
    const fromEnv = await gatewayBin(['--check', '--config', file], { REDIS_URL: `redis://127.0.0.1:${redisPort}` });
    expect(fromEnv.stderr).toContain(`  - REDIS_URL: Redis does not answer at redis://127.0.0.1:${redisPort}`);
    expect(Date.now() - started).toBeLessThan(50_000);
  }, 60_000);

  it('refuses a price source that does not validate, as the refresh would; the servers never ask', async () => {
    const config = {
      ...WITH_MOCK,
      redisUrl: 'redis://127.0.0.1:6379',
      prices: {
        source: configFile('bad-prices.json', {
          'gpt-4o-mini': { litellm_provider: 'openai', input_cost_per_token: 'cheap', output_cost_per_token: 6e-7 },
        }),
      },
    };
    const checked = await checkGatewayConfig({ TOLLGATE_CONFIG: configFile('bad-source.json', config) });
    expect(checked.code).toBe(1);
    expect(checked.text).toContain(
      `  - prices.source: ${config.prices.source} was read and refused (prices source: ` +
        'gpt-4o-mini.input_cost_per_token must be a number of USD per token >= 0; got "cheap"',
    );
    // The config problems the servers and createGateway find stay what the file says: none here.
    expect(() => validateConfig(config, { env: {} })).not.toThrow();
    // A source that reads and validates is no problem.
    const good = configFile('good-prices.json', {
      'gpt-4o-mini': { litellm_provider: 'openai', input_cost_per_token: 1.5e-7, output_cost_per_token: 6e-7 },
    });
    const served = await checkGatewayConfig({
      TOLLGATE_CONFIG: configFile('good-source.json', { ...config, prices: { source: good } }),
    });
    expect(served).toEqual({ code: 0, text: expect.stringContaining('would serve') });
  }, 30_000);

  it('refuses a config that names no upstream, and says so of the mock named on purpose', async () => {
    const bare = configFile('bare.json', { redisUrl: 'redis://127.0.0.1:6379', tiers: { free: {} } });
    const refused = await gatewayBin(['--check', '--config', bare]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('the config names no "upstreams", so no provider would answer');
    expect(refused.stderr).toContain('"upstreams": { "mock": { "kind": "mock" } }');
    const mock = configFile('mock.json', { ...WITH_MOCK, tiers: { free: {} } });
    const served = await gatewayBin(['--check', '--config', mock]);
    expect(served.code).toBe(0);
    expect(served.stdout).toBe(
      `${mock} would serve: 0 tenants, 0 keys; stores: in memory (one process, lost at exit); ` +
        'ledger: none (usage records are not kept); upstreams: the built-in mock (fake answers, not a provider)\n',
    );
  }, 60_000);

  it('without a config, and on a text that is not JSON', async () => {
    const none = await gatewayBin(['--check']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('--check needs --config FILE (or TOLLGATE_CONFIG)');
    const text = join(dir, 'broken.json');
    writeFileSync(text, '{\n  "tiers": }\n');
    const broken = await gatewayBin(['--check', '--config', text]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain(`${text} is not valid JSON at line 2, column 12`);
  }, 60_000);
});

describe('the upstreams a config names', () => {
  it('none: refused at every door; the mock named on purpose: served', async () => {
    const bare = { tiers: { free: {} } } as GatewayConfig;
    const missing = 'the config names no "upstreams", so no provider would answer';
    expect(problemsOf(() => validateConfig(bare))[0]).toContain(missing);
    expect(problemsOf(() => createGateway(bare, { env: {} }))[0]).toContain(missing);
    const key = generateApiKey();
    const app = createGatewayApp(
      {
        ...WITH_MOCK,
        tenants: { acme: {} },
        keys: [{ id: 'k', sha256: hashApiKey(key), tenant: 'acme' }],
        log: { level: 'silent' },
      },
      { env: {}, log: () => undefined, metrics: false },
    );
    try {
      const answer = await request(app)
        .post('/v1/chat/completions')
        .set('authorization', `Bearer ${key}`)
        .send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
      expect(answer.status).toBe(200);
      expect(answer.body.choices[0].message.content).toContain('gateway mock provider');
    } finally {
      await app.close();
    }
  });

  it('the mock cannot stand beside another upstream, nor be of an unknown kind', () => {
    expect(
      problemsOf(() =>
        validateConfig({ upstreams: { mock: { kind: 'mock' }, openai: { baseUrl: 'https://api.openai.com/v1' } } }),
      ),
    ).toEqual(['upstreams.mock is the built-in mock, which answers every call: it cannot stand beside "openai"']);
    expect(problemsOf(() => validateConfig({ upstreams: { mock: { kind: 'mok' } } }))).toEqual([
      'upstreams.mock.kind must be "http" (the default: calls go to baseUrl) or "mock" (the built-in mock provider); got "mok"',
    ]);
  });
});

describe('a config validated before is judged as it is when served', () => {
  it('createGateway checks a config validateConfig returned and changed since', () => {
    const checked = validateConfig({
      ...WITH_MOCK,
      tiers: { free: { requestsPerMinute: 5 } },
      keys: [{ id: 'k', sha256: 'a'.repeat(64), tier: 'free' }],
    });
    checked.keys![0]!.tier = 'platinum';
    checked.tiers!.free!.requestsPerMinute = 0;
    expect(problemsOf(() => createGateway(checked, { env: {} }))).toEqual([
      'tiers.free.requestsPerMinute must be a positive integer; got 0',
      'keys[0].tier names an unknown tier "platinum"',
    ]);
  });
});

describe('keys reloaded while running', () => {
  const kept = generateApiKey();
  const config = {
    ...WITH_MOCK,
    tiers: { free: { requestsPerMinute: 60 } },
    tenants: { acme: { tier: 'free', budget: { usd: 1, period: 'day' as const } } },
    keys: [{ id: 'kept', sha256: hashApiKey(kept), tenant: 'acme' }],
    log: { level: 'silent' as const },
  };
  const status = async (app: ReturnType<typeof createGatewayApp>, key: string) =>
    (await request(app).get('/v1/models').set('authorization', `Bearer ${key}`)).status;

  it('reloadKeys refuses keys naming an unknown tenant or tier, and the keys in force stay', async () => {
    const app = createGatewayApp(config, { env: {}, log: () => undefined, metrics: false });
    try {
      const ghost = generateApiKey();
      const next = [
        ...config.keys,
        { id: 'ghost', sha256: hashApiKey(ghost), tenant: 'ghost-tenant' },
        { id: 'gold', sha256: hashApiKey(generateApiKey()), tier: 'gold' },
      ];
      expect(problemsOf(() => app.reloadKeys(next))).toEqual([
        'keys[1].tenant names an unknown tenant "ghost-tenant"',
        'keys[2].tier names an unknown tier "gold"',
      ]);
      expect(await status(app, kept)).toBe(200);
      expect(await status(app, ghost)).toBe(401);
      // A key of a known tenant is taken as before.
      app.reloadKeys([...config.keys, { id: 'new', sha256: hashApiKey(ghost), tenant: 'acme' }]);
      expect(await status(app, ghost)).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('a config file whose new key names a tenant the running config does not know is not taken (a restart is)', async () => {
    const app = createGatewayApp(config, { env: {}, log: () => undefined, metrics: false });
    try {
      const added = generateApiKey();
      const file = {
        ...config,
        tenants: { ...config.tenants, beta: { tier: 'free' } },
        keys: [...config.keys, { id: 'beta', sha256: hashApiKey(added), tenant: 'beta' }],
      };
      const reload = app.reloadConfigFile(JSON.stringify(file), join(dir, 'tollgate.json'));
      expect(reload.status).toBe('invalid');
      expect(reload.problems).toEqual(['keys[1].tenant names an unknown tenant "beta" (in the config being served)']);
      expect(await status(app, added)).toBe(401);
      expect(await status(app, kept)).toBe(200);
    } finally {
      await app.close();
    }
  });
});
