// The proxy config: the example config with every contract name validates, and each kind of mistake is named by its field.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { parseConfig, validateConfig } from '@tollgate/gateway';
import { rejection } from '../../../packages/gateway/test/helpers/config-rejection.js';
import { WITH_MOCK } from '../../../packages/gateway/test/helpers/mock-upstream.js';

const example = JSON.parse(readFileSync(new URL('../config.example.json', import.meta.url), 'utf8')) as Record<
  string,
  unknown
>;

describe('proxy config validation', () => {
  it('counts a model of an OpenAI-speaking upstream with o200k_base, as an estimate, unless it names its tokenizer', () => {
    const config = validateConfig({
      upstreams: {
        openai: { baseUrl: 'https://api.openai.com/v1' },
        vllm: { baseUrl: 'http://10.0.0.5/v1', api: 'openai-compatible' },
        anthropic: { baseUrl: 'https://api.anthropic.com' },
      },
      models: {
        'ft-model': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1 },
        llama: { provider: 'vllm', inputPerMTok: 1, outputPerMTok: 1 },
        named: { provider: 'vllm', inputPerMTok: 1, outputPerMTok: 1, tokenizer: 'cl100k_base' },
        claude: { provider: 'anthropic', inputPerMTok: 1, outputPerMTok: 1 },
      },
    });
    expect(config.models!['ft-model']).toMatchObject({ tokenizer: 'o200k_base', ownTokenizer: false });
    expect(config.models!.llama).toMatchObject({ tokenizer: 'o200k_base', ownTokenizer: false });
    expect(config.models!.named).toMatchObject({ tokenizer: 'cl100k_base' });
    expect(config.models!.named!.ownTokenizer).toBeUndefined();
    expect(config.models!.claude!.tokenizer).toBeUndefined();
  });

  it('accepts the documented example config with every contract name', () => {
    const config = validateConfig(example);
    expect(Object.keys(config).sort()).toEqual(
      [
        'port',
        'redisUrl',
        'redisPrefix',
        'usageLog',
        'adminKeySha256',
        'upstreams',
        'models',
        'tiers',
        'tenants',
        'keys',
        'global',
      ].sort(),
    );
    expect(config.tiers?.free?.requestsPerMinute).toBe(5);
    expect(config.tenants?.acme?.budget).toEqual({ usd: 100, period: 'month', softLimit: 0.8 });
    expect(config.upstreams?.anthropic).toMatchObject({ api: 'anthropic' });
    expect(config.upstreams?.openai).toMatchObject({ api: 'openai' });
  });

  it('accepts a Redis Cluster by the URLs of some of its nodes', () => {
    const cluster = ['redis://10.0.0.1:6379', 'rediss://user:secret@10.0.0.2:6380'];
    expect(validateConfig({ ...WITH_MOCK, redis: { cluster } }).redis).toEqual({ cluster });
  });

  it('accepts a config of the mock provider named on purpose, and no limits', () => {
    expect(validateConfig(WITH_MOCK)).toEqual(WITH_MOCK);
  });

  it("accepts a tier's perKey limits beside its tenant limits", () => {
    const perKey = { requestsPerMinute: 60, tokensPerMinute: 200_000 };
    const tier = { requestsPerMinute: 600, tokensPerMinute: 2_000_000, perKey };
    expect(validateConfig({ ...WITH_MOCK, tiers: { pro: tier } }).tiers?.pro).toEqual(tier);
  });

  it('accepts a timezone and week and quarter budgets', () => {
    const config = validateConfig({
      ...WITH_MOCK,
      timezone: 'Asia/Kolkata',
      tenants: { acme: { budget: { usd: 5, period: 'week' } } },
      global: { budget: { usd: 500, period: 'quarter' } },
    });
    expect(config.timezone).toBe('Asia/Kolkata');
    expect(config.tenants?.acme?.budget).toEqual({ usd: 5, period: 'week' });
    expect(config.global?.budget).toEqual({ usd: 500, period: 'quarter' });
  });

  it('accepts a spool directory, or false to turn the spool off', () => {
    expect(validateConfig({ ...WITH_MOCK, usageLog: 'usage.jsonl', spool: '/var/spool/tollgate' }).spool).toBe(
      '/var/spool/tollgate',
    );
    expect(validateConfig({ ...WITH_MOCK, usageLog: 'usage.jsonl', spool: false }).spool).toBe(false);
  });

  it.each([
    [{ tiers: { free: { requestsPerMinute: 0 } } }, 'tiers.free.requestsPerMinute must be a positive integer'],
    [{ tiers: { free: { requestsPerMinute: '5' } } }, 'tiers.free.requestsPerMinute must be a positive integer'],
    [{ tiers: { free: { tokensPerMinute: 1.5 } } }, 'tiers.free.tokensPerMinute must be a positive integer'],
    [{ tiers: { free: { maxOutputTokens: -1 } } }, 'tiers.free.maxOutputTokens must be a positive integer'],
    [{ tiers: { free: { models: 'gpt-4o' } } }, 'tiers.free.models must be an array of strings'],
    [{ tiers: { free: { perKey: { tokensPerMinute: 0 } } } }, 'tiers.free.perKey.tokensPerMinute must be a positive'],
    [{ tiers: { free: { perKey: { requestsPerMinut: 5 } } } }, 'perKey has no field "requestsPerMinut"; did you mean'],
    [
      { tenants: { acme: { budget: { usd: -5, period: 'day' } } } },
      'tenants.acme.budget.usd must be a positive number',
    ],
    [
      { tenants: { acme: { budget: { usd: 5, period: 'year' } } } },
      'tenants.acme.budget.period must be "hour", "day", "week", "month" or "quarter"',
    ],
    [{ timezone: 'Berlin' }, 'timezone must be an IANA time zone like "Europe/Berlin" or "UTC"; got "Berlin"'],
    [{ timezone: 5 }, 'timezone must be an IANA time zone'],
    [{ tenants: { acme: { budget: { usd: 5, softLimit: 1.5 } } } }, 'tenants.acme.budget.softLimit must be a fraction'],
    [{ tenants: { acme: { tier: 'gold' } } }, 'tenants.acme.tier names an unknown tier "gold"'],
    [{ keys: [{ id: 'k', sha256: 'abc' }] }, 'keys[0].sha256 must be a SHA-256 hex digest'],
    [{ keys: {} }, 'keys must be an array'],
    [{ port: 70000 }, 'port must be an integer from 0 to 65535'],
    [{ redisUrl: 'http://localhost' }, 'redisUrl must use redis: or rediss:'],
    [{ redis: { cluster: [] } }, 'redis.cluster must be a non-empty array of node URLs'],
    [
      { redis: { cluster: ['redis://10.0.0.1:6379', 'http://10.0.0.2:6379'] } },
      'redis.cluster[1] must use redis: or rediss:',
    ],
    [{ redis: { clustr: ['redis://10.0.0.1:6379'] } }, 'redis has no field "clustr"; did you mean "cluster"?'],
    [
      { redisUrl: 'redis://127.0.0.1:6379', redis: { cluster: ['redis://10.0.0.1:6379'] } },
      'redisUrl and redis.cluster are two ways to reach Redis: give one',
    ],
    [{ adminKeySha256: 'secret' }, 'adminKeySha256 must be a SHA-256 hex digest'],
    [{ upstreams: { openai: { baseUrl: 'ftp://x' } } }, 'upstreams.openai.baseUrl must use http: or https:'],
    [
      { upstreams: { openai: { baseUrl: 'https://x', apiKeyEnv: 'not a name' } } },
      'upstreams.openai.apiKeyEnv must be an environment variable name',
    ],
    [
      { models: { m: { provider: 'openai', inputPerMTok: 'cheap', outputPerMTok: 1 } } },
      'models.m.inputPerMTok must be a number of USD per million tokens, from 0 to 10,000',
    ],
    [{ models: { m: { provider: 'local', inputPerMTok: 1, outputPerMTok: 1 } } }, 'models.m.provider names "local"'],
    [
      { models: { m: { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1, tokenizer: 'llama2' } } },
      'models.m.tokenizer must be "o200k_base", "cl100k_base", "llama3", "tekken", "qwen2", "gemma" or "approximate"',
    ],
    [
      { models: { m: { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1, maxOutputTokens: 0 } } },
      'models.m.maxOutputTokens must be',
    ],
    [{ jwt: { issuer: 'https://idp' } }, 'jwt needs "jwks" or "jwksUrl"'],
    [{ jwt: { jwks: { keys: [] } } }, 'jwt.jwks.keys must hold at least one public key'],
    [{ global: { budget: { usd: 0 } } }, 'global.budget.usd must be a positive number'],
    [{ bodyLimit: 'lots' }, 'bodyLimit must be a positive number of bytes'],
    [{ countCacheChars: -1 }, 'countCacheChars must be a whole number of characters, 0 or more'],
    [{ countCacheChars: 1.5 }, 'countCacheChars must be a whole number of characters, 0 or more'],
    [{ spool: true }, 'spool must be a directory path, or false to turn the spool off'],
    [{ spool: ' ' }, 'spool must be a directory path, or false to turn the spool off'],
    [[], 'the config must be an object'],
  ])('rejects %j naming the field', (config, message) => {
    expect(rejection(config)).toContain(message);
  });

  it('rejects unknown field names with a "did you mean" hint, at every depth', () => {
    expect(rejection({ tier: {} })).toContain('the config has no field "tier"; did you mean "tiers"?');
    expect(rejection({ tiers: { free: { requestsPerMinut: 5 } } })).toContain(
      'tiers.free has no field "requestsPerMinut"; did you mean "requestsPerMinute"?',
    );
    expect(rejection({ tenants: { acme: { budget: { usd: 1, perod: 'day' } } } })).toContain('did you mean "period"?');
    expect(rejection({ keys: [{ id: 'a', sha256: 'a'.repeat(64), tenat: 'acme' }] })).toContain(
      'keys[0] has no field "tenat"; did you mean "tenant"?',
    );
  });

  it('rejects duplicate key ids and unknown tenants of keys', () => {
    const sha = 'a'.repeat(64);
    expect(
      rejection({
        keys: [
          { id: 'a', sha256: sha },
          { id: 'a', sha256: 'b'.repeat(64) },
        ],
      }),
    ).toContain('keys[1].id "a" is used twice');
    expect(rejection({ tenants: { acme: {} }, keys: [{ id: 'a', sha256: sha, tenant: 'acmee' }] })).toContain(
      'did you mean "acme"?',
    );
  });

  it('keeps names like constructor as plain entries, and refuses "__proto__" as a name', () => {
    const config = parseConfig(
      '{"upstreams":{"mock":{"kind":"mock"}},"tiers":{"constructor":{"requestsPerMinute":2},"toString":{"requestsPerMinute":3}}}',
    );
    expect(Object.keys(config.tiers!).sort()).toEqual(['constructor', 'toString']);
    expect(Object.getPrototypeOf(config.tiers)).toBeNull();
    expect(rejection(JSON.parse('{"tiers":{"__proto__":{"requestsPerMinute":1}}}'))).toContain(
      'tiers has an entry named "__proto__"',
    );
    expect(({} as Record<string, unknown>).requestsPerMinute).toBeUndefined();
    expect(rejection({ tenants: { acme: { tier: 'constructor' } } })).toContain('unknown tier "constructor"');
  });

  it('refuses a requiredScope that no configured key holds, unless JWTs (which may carry any scope) are accepted', () => {
    const keys = [
      { id: 'a', sha256: 'a'.repeat(64), scopes: ['chat'] },
      { id: 'b', sha256: 'b'.repeat(64) },
    ];
    expect(rejection({ requiredScope: 'chta', keys })).toContain(
      'requiredScope "chta" is held by no key in keys; did you mean "chat"?',
    );
    expect(rejection({ requiredScope: 'embeddings', keys })).toContain(
      'requiredScope "embeddings" is held by no key in keys',
    );
    expect(validateConfig({ ...WITH_MOCK, requiredScope: 'chat', keys }).requiredScope).toBe('chat');
    const jwt = { jwksUrl: 'https://idp.example/.well-known/jwks.json' };
    expect(validateConfig({ ...WITH_MOCK, requiredScope: 'embeddings', keys, jwt }).requiredScope).toBe('embeddings');
    // Without keys in the file, keys come from the key store (keys create --redis, /admin/keys), not read at start.
    expect(validateConfig({ ...WITH_MOCK, requiredScope: 'chat' }).requiredScope).toBe('chat');
  });

  it('reports JSON syntax errors as config errors', () => {
    expect(() => parseConfig('{"tiers": ', 'test.json')).toThrow(/test\.json is not valid JSON/);
  });
});
