// A config that cannot run is refused with every problem at once, each naming its field; JSON syntax errors name
// their line and column; a mistyped field, model or tier name gets the name it is closest to.
import { describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { ConfigError, parseConfig, validateConfig } from '../src/config/index.js';
import { rejection } from './helpers/config-rejection.js';

/** The problems a refused config is listed with. */
function issuesOf(config: object): readonly string[] {
  try {
    validateConfig({ ...WITH_MOCK, ...config });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error('the config was accepted');
}

/** What parseConfig says of a text that is not JSON. */
function syntaxError(text: string): string {
  try {
    parseConfig(text, 'tollgate.json');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues[0]!;
  }
  throw new Error('the text was accepted');
}

describe('config errors, all at once', () => {
  it('lists every field the schema refuses, each by its path, not only the first', () => {
    const config = {
      port: 70000,
      tiers: { free: { requestsPerMinute: 0, perKey: { tokensPerMinute: 'many' } } },
      tenants: { acme: { budget: { usd: -5, period: 'fortnight' } } },
      keys: [{ id: 'k', sha256: 'short' }],
      redisUrl: 'http://localhost',
      timezone: 'Europe/Berlim',
    };
    const issues = issuesOf(config);
    expect(issues).toEqual([
      'port must be an integer from 0 to 65535; got 70000',
      'redisUrl must use redis: or rediss:; got "http:"',
      'timezone must be an IANA time zone like "Europe/Berlin" or "UTC"; got "Europe/Berlim"; did you mean "Europe/Berlin"?',
      'tiers.free.requestsPerMinute must be a positive integer; got 0',
      'tiers.free.perKey.tokensPerMinute must be a positive integer; got "many"',
      'tenants.acme.budget.usd must be a positive number of USD (at most 1,000,000); got -5',
      'tenants.acme.budget.period must be "hour", "day", "week", "month" or "quarter"; got "fortnight"',
      'keys[0].sha256 must be a SHA-256 hex digest (64 lowercase hex characters); got "short"',
    ]);
    const message = rejection(config);
    expect(message).toMatch(/^Invalid proxy config: 8 problems:\n {2}- port must be/);
    for (const issue of issues) expect(message).toContain(`\n  - ${issue}`);
  });

  it('names each attribution field it refuses, the two headers that clash, and a required field it does not know', () => {
    expect(
      issuesOf({
        attribution: { userHeader: 'x user', require: ['user', 'email'], maxTags: 0, maxLength: 2000 },
      }),
    ).toEqual([
      'attribution.userHeader must be a header name (letters, digits, -) or false; got "x user"',
      'attribution.require[1] must be "user", "feature" or "tags"; got "email"',
      'attribution.maxLength must be an integer from 1 to 1024; got 2000',
      'attribution.maxTags must be an integer from 1 to 256; got 0',
    ]);
    expect(issuesOf({ attribution: { userHeader: 'X-Who', featureHeader: 'x-who' } })).toEqual([
      expect.stringMatching(/^attribution: userHeader, featureHeader, tagsHeader and teamHeader must differ/),
    ]);
    expect(
      validateConfig({ ...WITH_MOCK, attribution: { require: ['user', 'tags'], featureHeader: false } }).attribution,
    ).toEqual({
      require: ['user', 'tags'],
      featureHeader: false,
    });
  });

  it('names each unknown field of an object, with the known one it is closest to', () => {
    expect(issuesOf({ tiers: { pro: { requestsPerMinut: 5, tokensPerMinte: 10, colour: 'red' } } })).toEqual([
      expect.stringMatching(
        /^tiers\.pro has no field "requestsPerMinut"; did you mean "requestsPerMinute"\? \(known: /,
      ),
      expect.stringMatching(/^tiers\.pro has no field "tokensPerMinte"; did you mean "tokensPerMinute"\? \(known: /),
      expect.stringMatching(/^tiers\.pro has no field "colour" \(known: /),
    ]);
    expect(issuesOf({ postgresURL: 'postgres://x' })).toEqual([
      expect.stringMatching(/^the config has no field "postgresURL"; did you mean "postgresUrl"\?/),
    ]);
  });

  it('lists every name that points nowhere: tiers, tenants, models, with the closest known name', () => {
    const issues = issuesOf({
      tiers: { free: { models: ['gpt-4o-mini', 'gpt-4o-mnii', 'claude-*'] }, pro: {} },
      defaultTier: 'fre',
      tenants: {
        acme: { tier: 'por', budget: { usd: 5, softLimit: 0.8 }, downgrade: { 'gpt-4o': 'gpt-4o-mnii' } },
        globex: { tier: 'gold', downgrade: { 'gtp-4o': 'gpt-4o-mini' } },
      },
      keys: [{ id: 'k1', sha256: 'a'.repeat(64), tenant: 'acm', tier: 'fee' }],
    });
    expect(issues).toEqual([
      'defaultTier names an unknown tier "fre"; did you mean "free"?',
      'tenants.acme.tier names an unknown tier "por"; did you mean "pro"?',
      'tenants.globex.tier names an unknown tier "gold"',
      'keys[0].tier names an unknown tier "fee"; did you mean "free"?',
      'keys[0].tenant names an unknown tenant "acm"; did you mean "acme"?',
      'tiers.free.models[1] names an unknown model "gpt-4o-mnii"; did you mean "gpt-4o-mini"? (add it under "models" with its prices if it is yours)',
      'tenants.acme.downgrade.gpt-4o names an unknown model "gpt-4o-mnii"; did you mean "gpt-4o-mini"?',
      'tenants.globex.downgrade names an unknown model "gtp-4o"; did you mean "gpt-4o"?',
    ]);
  });

  it('names what is wrong in budget lists, thresholds, end-user, model and feature budgets', () => {
    expect(
      issuesOf({
        tenants: {
          acme: {
            budget: [
              { usd: 5, period: 'day' },
              { usd: 50, period: 'day' },
            ],
            userBudget: { usd: 1, period: 'year' },
            modelBudgets: { 'gpt-4o-mnii': { usd: 5 } },
          },
          globex: { budget: { usd: 5, softLimit: [0.5, 1.5] } },
        },
        features: { bot: { budget: [] } },
        global: { budget: { usd: 0 } },
      }),
    ).toEqual([
      'tenants.acme.budget[1].period repeats period "day": give each period once in a list',
      'tenants.acme.userBudget.period must be "hour", "day", "week", "month" or "quarter"; got "year"',
      'tenants.globex.budget.softLimit[1] must be a fraction greater than 0 and at most 1; got 1.5',
      'features.bot.budget must hold at least one budget; got []',
      'global.budget.usd must be a positive number of USD (at most 1,000,000); got 0',
      // Found in the same pass as the fields above: the model budget's name points nowhere.
      'tenants.acme.modelBudgets names an unknown model "gpt-4o-mnii"; did you mean "gpt-4o-mini"?',
    ]);
    expect(issuesOf({ tenants: { acme: { budget: { usd: 5 }, downgrade: { 'gpt-4o': 'gpt-4o-mini' } } } })).toEqual([
      'tenants.acme.downgrade applies once a budget passes its softLimit or a modelBudgets entry is spent: give tenants.acme.budget a softLimit',
    ]);
    // A model budget caps a model the config can price.
    expect(issuesOf({ tenants: { acme: { modelBudgets: { 'gpt-4o-mnii': { usd: 5 } } } } })).toEqual([
      'tenants.acme.modelBudgets names an unknown model "gpt-4o-mnii"; did you mean "gpt-4o-mini"?',
    ]);
    const config = validateConfig({
      ...WITH_MOCK,
      tenants: {
        acme: {
          budget: [
            { usd: 10, period: 'day' },
            { usd: 200, softLimit: [0.5, 0.8, 0.95] },
          ],
          userBudget: { usd: 1, period: 'day' },
          modelBudgets: { 'gpt-4o': [{ usd: 50 }] },
          downgrade: { 'gpt-4o': 'gpt-4o-mini' },
        },
      },
      features: { 'support-bot': { budget: { usd: 30, period: 'day' } }, '*': { budget: { usd: 5 } } },
    });
    expect(config.tenants?.acme?.budget).toEqual([
      { usd: 10, period: 'day' },
      { usd: 200, period: 'month', softLimit: [0.5, 0.8, 0.95] },
    ]);
  });

  it("knows the config's own models, dated ids and model groups as models", () => {
    const config = validateConfig({
      upstreams: { openai: { baseUrl: 'https://api.openai.com/v1' } },
      models: { 'my-model': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 2 } },
      modelGroups: { smart: { targets: [{ upstream: 'openai', model: 'gpt-4o' }] } },
      tiers: { pro: { models: ['my-model', 'gpt-4o-2024-08-06', 'smart', 'claude-*'] } },
      tenants: { acme: { budget: { usd: 5, softLimit: 0.8 }, downgrade: { 'gpt-4o': 'my-model' } } },
    });
    expect(config.tiers?.pro?.models).toHaveLength(4);
    expect(
      rejection({
        upstreams: { openai: { baseUrl: 'https://api.openai.com/v1' } },
        modelGroups: { smart: { targets: [{ upstream: 'openai', model: 'gpt-4o-mnii' }] } },
      }),
    ).toContain(
      'modelGroups.smart.targets[0].model "gpt-4o-mnii" has no price: add it to models (every target is billed as itself); did you mean "gpt-4o-mini"?',
    );
  });

  it('says a price the pricing table refuses as a config problem', () => {
    expect(
      issuesOf({
        models: {
          m: { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1, tokenizer: 'approximate', ownTokenizer: true },
        },
      }),
    ).toEqual(['models: ownTokenizer of model "m" needs a tokenizer that names an encoding']);
  });
});

describe('config JSON syntax errors', () => {
  it('name the line and column of a message that gives a position', () => {
    const text = '{\n  "port": 8787,\n  "tiers": { "free" 5 }\n}\n';
    // Column 21 is the 5 where a colon belongs (Node's words for it vary between versions).
    expect(syntaxError(text)).toMatch(/^tollgate\.json is not valid JSON at line 3, column 21: \S/);
    expect(syntaxError(text)).not.toMatch(/position/);
  });

  it('name the line and column where Node names none', () => {
    // Node 20: `Unexpected token '}', "..." is not valid JSON`, with no position.
    const text = '{\n  "port": 8787,\n  "tiers": {\n    "free": { "requestsPerMinute": }\n  }\n}\n';
    expect(syntaxError(text)).toBe("tollgate.json is not valid JSON at line 4, column 36: Unexpected token '}'");
    const trailing = '{\n  "keys": [\n    "a",\n  ]\n}';
    expect(syntaxError(trailing)).toMatch(/^tollgate\.json is not valid JSON at line 4, column 3: /);
  });

  it('name the end of a text that stops short, and of an empty one', () => {
    expect(syntaxError('{\n  "port": 8787')).toMatch(/^tollgate\.json is not valid JSON at line 2, column 15: /);
    expect(syntaxError('')).toBe('tollgate.json is not valid JSON at line 1, column 1: Unexpected end of JSON input');
  });
});

describe('usageRetention', () => {
  it('is refused shorter than a quarter, with the value given, and reaches the ledger sink as ms', async () => {
    expect(issuesOf({ usageRetention: '30d' })).toEqual([
      'usageRetention must be at least "93d" (a budget\'s spend is rebuilt from the raw rows of its current period, a quarter at most); got "30d"',
    ]);
    expect(issuesOf({ usageRetention: 'forever' })[0]).toMatch(/^usageRetention must be /);
    const { meteringOptions } = await import('../src/config/metering-options.js');
    const config = validateConfig({ ...WITH_MOCK, usageRetention: '400d', postgresUrl: 'postgres://db/ledger' });
    expect(meteringOptions(config, {})).toMatchObject({ retentionMs: 400 * 86_400_000 });
  });
});
