// The proxy's JSON config (the contract in examples/proxy/README.md): its schema, its types, and a validator that names the faulty field.
import express from 'express';
import { parse as parseJsonLocating } from 'jsonc-parser';
import type { ParseError } from 'jsonc-parser';
import { z } from 'zod';
import { attribution } from '@tollgate/auth';
import { createPricing, parseDuration, TollgateError } from '@tollgate/core';
import type { Pricing } from '@tollgate/core';
import { didYouMean, MAX_USD, MAX_USD_PER_MILLION_TOKENS, timeZoneProblem } from '@tollgate/core/kit';
import type { CalendarPeriod, OutagePolicy } from '@tollgate/core/kit';
import { resolveGuardOptions, resolvePromptGuardrails } from '@tollgate/guard/kit';
import { providerAdapters, upstreamKinds } from '@tollgate/providers/kit';
import type { AnomalyAction } from '@tollgate/guard/kit';
import { checkRouting } from './routing-config.js';
import type { RoutingConfig } from './routing-config.js';
import type { StoreOutageConfig } from './outage-setup.js';

/** The kind of an upstream whose entry names none and whose name no kind claims. */
const DEFAULT_UPSTREAM_KIND = 'openai';
/** Every kind of upstream the adapters declare (`ProviderAdapter.upstream`): how each is reached, what it speaks. */
const KINDS = [...upstreamKinds().values()];

/** The wire formats an upstream may speak: the kinds the adapters declare. */
export const UPSTREAM_KINDS = KINDS.map((kind) => kind.kind) as [string, ...string[]];
export type UpstreamKind = string;

/** The kind of an upstream that names none, from its name (the kind whose `names` hold it). */
export function defaultUpstreamKind(name: string): UpstreamKind {
  return KINDS.find(({ kind, wire }) => (wire.names ?? [kind]).includes(name))?.kind ?? DEFAULT_UPSTREAM_KIND;
}

/** Where each kind is usually reached, for the config's descriptions. */
const UPSTREAM_HINTS = KINDS.map(
  ({ kind, wire }) => `\`${wire.baseUrl}\` (api "${kind}"${wire.keyEnv ? `, key in ${wire.keyEnv}` : ''})`,
).join(', ');
/** The names that choose a kind, for the config's descriptions. */
const NAMED_KINDS = KINDS.flatMap(({ kind, wire }) => {
  const names = (wire.names ?? [kind]).filter((name) => name !== DEFAULT_UPSTREAM_KIND);
  return names.length > 0 ? [`"${kind}" for ${names.map((name) => `"${name}"`).join('/')}`] : [];
}).join(', ');

/** The levels of the proxy's log, most severe first; `silent` writes nothing. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A config that cannot run: every problem found, each naming its field (`tiers.free.requestsPerMinute ...`). */
export class ConfigError extends TollgateError {
  readonly issues: readonly string[];

  constructor(issues: string | readonly string[]) {
    const list = typeof issues === 'string' ? [issues] : issues;
    super(
      'ERR_TG_PROXY_INVALID_CONFIG',
      list.length === 1
        ? `Invalid proxy config: ${list[0]}`
        : `Invalid proxy config: ${list.length} problems:\n${list.map((issue) => `  - ${issue}`).join('\n')}\n`,
    );
    this.issues = list;
  }
}

// The rules fields are built from. A message is what follows the field's name in the error:
// `tiers.pro.requestsPerMinute` + ` must be a positive integer`.

const OBJECT = 'must be an object';
const POSITIVE_INTEGER = 'must be a positive integer';
const NON_EMPTY = 'must be a non-empty string';
const DURATION = 'must be a positive number of ms or a string like "10s", "5m"';
const SHA256_HEX = 'must be a SHA-256 hex digest (64 lowercase hex characters)';

/**
 * An object with exactly these fields: another name is refused, with a hint when it looks like a typo.
 * Several unknown names make one issue of several lines, one per name (describeIssue lists each).
 */
function fields<Shape extends z.ZodRawShape>(shape: Shape) {
  const known = Object.keys(shape).filter((name) => name !== '$schema');
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return OBJECT;
      return issue.keys
        .map((name) => `has no field "${name}"${didYouMean(name, known)} (known: ${known.join(', ')})`)
        .join('\n');
    },
  });
}

/** One of `names`; a near miss gets a hint. */
function choice<const Names extends readonly [string, ...string[]]>(names: Names, message: string) {
  return z.enum(names, {
    error: (issue) => `${message}${typeof issue.input === 'string' ? didYouMean(issue.input, names) : ''}`,
  });
}

function nonEmptyString(message = NON_EMPTY) {
  // /\S/ fails exactly the strings that trim() empties.
  return z.string(message).regex(/\S/, message);
}

function fraction(message: string) {
  return z.number(message).gt(0, message).max(1, message);
}

const positiveInteger = z.int(POSITIVE_INTEGER).positive(POSITIVE_INTEGER);
const PRICE = `must be a number of USD per million tokens, from 0 to ${MAX_USD_PER_MILLION_TOKENS.toLocaleString('en-US')}`;
const pricePerMTok = z.number(PRICE).min(0, PRICE).max(MAX_USD_PER_MILLION_TOKENS, PRICE);
const stringList = z.array(nonEmptyString(), 'must be an array of strings');
const trueOrFalse = z.boolean('must be true or false');
const sha256Hex = z.string(SHA256_HEX).regex(/^[0-9a-f]{64}$/, SHA256_HEX);
const environmentName = nonEmptyString().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');

/** Ms, or a string the core's parseDuration reads ("30s", "5m", "1h", "1d"). */
const duration = z
  .union([z.number(), z.string()], DURATION)
  .refine((value) => {
    try {
      return parseDuration(value) > 0;
    } catch {
      return false;
    }
  }, DURATION)
  .describe('Ms, or a string like "30s", "5m", "1h", "1d".');

/** A URL with one of `protocols` (`"https:"`), kept as written. */
function url(protocols: readonly string[]) {
  const names = protocols.join(' or ');
  const pattern = new RegExp(`^(?:${protocols.map((protocol) => protocol.replace(/:$/, '')).join('|')})$`);
  return z.url({
    protocol: pattern,
    error: (issue) => {
      const text = issue.input;
      if (typeof text !== 'string' || text.trim().length === 0) return NON_EMPTY;
      if (!URL.canParse(text)) return `must be a URL (${names}); got ${JSON.stringify(text)}`;
      return `must use ${names}; got ${JSON.stringify(new URL(text).protocol)}`;
    },
  });
}

/**
 * A JSON object of named entries, kept as a null-prototype record so names like "constructor" are
 * plain keys. "__proto__" cannot be kept as a name (the schema drops it), so it is refused aloud.
 */
function recordOf<Entry extends z.ZodType>(entry: Entry) {
  return z
    .preprocess(
      (value, context) => {
        if (typeof value === 'object' && value !== null && Object.hasOwn(value, '__proto__')) {
          context.addIssue({ code: 'custom', message: 'has an entry named "__proto__": choose another name' });
        }
        return value;
      },
      z.record(z.string().min(1, 'has an empty name'), entry, OBJECT),
    )
    .transform((record): Record<string, z.output<Entry>> => Object.assign(Object.create(null) as object, record));
}

// The config's sections, each field described as editors show it (the JSON Schema carries the descriptions).

const PERIOD = 'must be "hour", "day", "week", "month" or "quarter"';
const SOFT_LIMIT = 'must be a fraction greater than 0 and at most 1';
const budgetSchema = fields({
  usd: z
    .number(`must be a positive number of USD (at most ${MAX_USD.toLocaleString('en-US')})`)
    .gt(0, `must be a positive number of USD (at most ${MAX_USD.toLocaleString('en-US')})`)
    .max(
      MAX_USD,
      `must be a positive number of USD (at most ${MAX_USD.toLocaleString('en-US')}: amounts are counted in exact nano-USD)`,
    )
    .describe('The most that may be spent per period, in USD.'),
  period: choice(['hour', 'day', 'week', 'month', 'quarter'] as const satisfies readonly CalendarPeriod[], PERIOD)
    .default('month')
    .describe(
      'The calendar period the budget resets on, at local boundaries in `timezone`: "week" starts on Monday (ISO weeks), ' +
        '"quarter" on January, April, July and October 1st. Default: "month".',
    ),
  softLimit: z
    .union(
      [fraction(SOFT_LIMIT), z.array(fraction(SOFT_LIMIT), 'must be a list of fractions').min(1, 'must not be empty')],
      `${SOFT_LIMIT}, or a list of them`,
    )
    .optional()
    .describe(
      'Fraction of `usd` (0..1], or a list (`[0.5, 0.8, 0.95]`): each alerts `budget.threshold` once per period; downgrades start at the lowest.',
    ),
}).describe('A budget: `{ "usd": 5, "period": "day", "softLimit": 0.8 }`.');

/** One budget or a list of them, every entry holding at once; a period at most once in a list. */
const budgetsSchema = z
  .union(
    [
      budgetSchema,
      z
        .array(budgetSchema, 'must be a budget or a list of budgets')
        .min(1, 'must hold at least one budget')
        .superRefine((list, context) => {
          const seen = new Set<string>();
          list.forEach((budget, i) => {
            if (seen.has(budget.period))
              context.addIssue({
                code: 'custom',
                path: [i, 'period'],
                message: `repeats period "${budget.period}": give each period once in a list`,
              });
            seen.add(budget.period);
          });
        }),
    ],
    'must be a budget `{ "usd": 5, "period": "day" }` or a list of them',
  )
  .describe(
    'One budget, or a list of budgets that all hold at once (`[{ "usd": 10, "period": "day" }, { "usd": 200 }]`).',
  );

const upstreamSchema = fields({
  baseUrl: url(['http:', 'https:'])
    .transform((text) => text.replace(/\/+$/, ''))
    .describe(`e.g. ${UPSTREAM_HINTS}.`),
  apiKeyEnv: environmentName
    .optional()
    .describe('Name of the environment variable holding the upstream key (preferred over `apiKey`).'),
  apiKey: nonEmptyString()
    .optional()
    .describe('The upstream key itself (prefer `apiKeyEnv`: config files get copied around).'),
  api: choice(UPSTREAM_KINDS, `must be one of ${UPSTREAM_KINDS.map((kind) => `"${kind}"`).join(', ')}`)
    .optional()
    .describe(
      `The wire format this upstream speaks. Default, from the upstream's name: ${NAMED_KINDS}, else "${DEFAULT_UPSTREAM_KIND}".`,
    ),
  anthropicVersion: nonEmptyString()
    .optional()
    .describe('Sent to Anthropic upstreams when the client sent none. Default: "2023-06-01".'),
  apiVersion: nonEmptyString()
    .optional()
    .describe('Azure OpenAI: the `api-version` query parameter of every call. Default: "2024-10-21".'),
  deployments: recordOf(nonEmptyString())
    .optional()
    .describe(
      'Azure OpenAI: the deployment serving each model name (`{ "gpt-4o": "my-gpt4o" }`). Default: the model name.',
    ),
  connectTimeoutMs: positiveInteger.optional().describe('Milliseconds to open the TCP/TLS connection. Default: 10000.'),
  firstByteTimeoutMs: positiveInteger
    .optional()
    .describe('Milliseconds from sending the request to the response headers (first byte). Default: 120000.'),
  idleTimeoutMs: positiveInteger
    .optional()
    .describe('Milliseconds the response body may stay silent between chunks. Default: 120000.'),
});

const modelSchema = fields({
  provider: nonEmptyString().describe(
    'Which upstream serves the model (a key of `upstreams`; with the mock: a provider whose API the mock speaks, such as openai, anthropic or google).',
  ),
  inputPerMTok: pricePerMTok.describe('USD per million input tokens.'),
  cachedInputPerMTok: pricePerMTok
    .optional()
    .describe("USD per million input tokens read from the provider's prompt cache."),
  cacheWritePerMTok: pricePerMTok
    .optional()
    .describe("USD per million input tokens written to the provider's prompt cache."),
  cacheWrite1hPerMTok: pricePerMTok
    .optional()
    .describe('Cache write with a 1-hour lifetime. Default: cacheWritePerMTok.'),
  outputPerMTok: pricePerMTok.describe('USD per million output tokens.'),
  maxOutputTokens: positiveInteger
    .optional()
    .describe("The model's maximum output: the cap when a request sets none. Default: 16384."),
  contextWindow: positiveInteger.optional().describe("The model's context window in tokens."),
  tokenizer: choice(
    ['o200k_base', 'cl100k_base', 'approximate'],
    'must be "o200k_base", "cl100k_base" or "approximate"',
  )
    .optional()
    .describe(
      "How text is counted: `o200k_base`, `cl100k_base` (named here: the provider's own, counted exactly, the hard stop " +
        'cuts on it) or `approximate`. Default: "o200k_base" on an OpenAI-speaking upstream (an estimate; the hard stop ' +
        'cuts only on a lower bound), "approximate" elsewhere.',
    ),
  ownTokenizer: trueOrFalse
    .optional()
    .describe(
      "Whether `tokenizer` is the provider's own (its output counts are exact). Default: true when `tokenizer` is given.",
    ),
  kind: choice(['generation', 'embedding'], 'must be "generation" or "embedding"')
    .optional()
    .describe(
      'What the model does: "embedding" models are served on /v1/embeddings only (priced on input), "generation" ' +
        'models on the other provider routes. Default: "generation".',
    ),
});

const perKeySchema = fields({
  requestsPerMinute: positiveInteger.optional().describe('Requests per minute of each key of the tier.'),
  requestsPerDay: positiveInteger.optional().describe('Requests per day (24 h) of each key of the tier.'),
  tokensPerMinute: positiveInteger.optional().describe('Tokens (input and output) per minute of each key.'),
  tokensPerDay: positiveInteger.optional().describe('Tokens (input and output) per day (24 h) of each key.'),
});

const shadow = trueOrFalse.describe(
  "true records what would have been refused (rate and token limits, budgets, the guard's blocks) without refusing it: " +
    'the request is served, its usage record carries `shadowRefusal` (the error code) and ' +
    '`tollgate_shadow_refusals_total` counts it. Default: false.',
);

const TOOL_PATTERN = 'must be "*" or "<server>/<tool>" (the tool may end in *, e.g. "search/*")';
const toolPatterns = z.array(
  nonEmptyString(TOOL_PATTERN).regex(/^(\*|[A-Za-z0-9_-]+\/[^/\s]+)$/, TOOL_PATTERN),
  'must be an array of tool patterns ("search/web_search", "search/*")',
);

const USD_PER_CALL = `must be a number of USD from 0 to ${MAX_USD.toLocaleString('en-US')}`;
const mcpServerSchema = fields({
  url: url(['http:', 'https:']).describe('The MCP server (Streamable HTTP), e.g. `http://search.internal:3001/mcp`.'),
  headers: recordOf(environmentName)
    .optional()
    .describe(
      'Headers sent to the server with every message, each read from the environment variable named here (`{ "authorization": "SEARCH_MCP_AUTH" }`). Credentials never come from the client.',
    ),
  tools: recordOf(
    fields({
      usdPerCall: z
        .number(USD_PER_CALL)
        .min(0, USD_PER_CALL)
        .max(MAX_USD, USD_PER_CALL)
        .describe('What one call costs, reserved against budgets and recorded.'),
    }),
  )
    .optional()
    .describe('Prices per tool name (`{ "web_search": { "usdPerCall": 0.002 } }`). A tool not listed costs nothing.'),
  callTimeout: duration.optional().describe('How long one tool call may take. Default: "60s".'),
  sessionIdleTimeout: duration
    .optional()
    .describe('A client\'s session unused this long is closed (the client initializes anew). Default: "30m".'),
});

const tierSchema = fields({
  requestsPerMinute: positiveInteger
    .optional()
    .describe('Requests per minute of each tenant of the tier, its keys together (a key without a tenant: alone).'),
  requestsPerDay: positiveInteger
    .optional()
    .describe('Requests per day (24 h) of each tenant of the tier, its keys together (a key without a tenant: alone).'),
  tokensPerMinute: positiveInteger
    .optional()
    .describe(
      'Tokens (input and output) per minute of each tenant of the tier, its keys together ' +
        '(a key without a tenant: alone).',
    ),
  tokensPerDay: positiveInteger
    .optional()
    .describe('Tokens (input and output) per day (24 h) of each tenant of the tier, its keys together.'),
  perKey: perKeySchema
    .optional()
    .describe(
      "Limits of each key of the tier, held with the tenant's: `requestsPerMinute`, `requestsPerDay`, " +
        '`tokensPerMinute`, `tokensPerDay`.',
    ),
  shadow: shadow.optional(),
  models: stringList
    .optional()
    .describe(
      'Model allowlist: exact ids, `prefix*`, or `*`. Default: ["*"]. A caller whose tier is not in `tiers` gets ' +
        "`defaultTier`'s list, else no model.",
    ),
  maxOutputTokens: positiveInteger
    .optional()
    .describe('Output cap applied to every request of the tier (clamped, or set when absent).'),
  maxConcurrent: positiveInteger.optional().describe('Requests in flight at once per key.'),
  tools: toolPatterns
    .optional()
    .describe(
      'MCP tools (`server/tool`, `server/*`, `*`) the tier may call; a tool is allowed when the tier, the tenant or the key lists it. Default: none.',
    ),
  toolCallsPerMinute: positiveInteger
    .optional()
    .describe(
      'MCP tool calls per minute of each tenant of the tier, its keys together (a key without a tenant: alone).',
    ),
  cache: z
    .union([z.boolean(), fields({ ttl: duration.optional() })], 'must be true, false or { "ttl": "1h" }')
    .optional()
    .describe(
      '`false` keeps the tier\'s requests out of the response cache; `{ "ttl": "1h" }` keeps its answers that long instead of `cache.ttl`. Default: true (when `cache` is configured).',
    ),
});

const cacheSchema = fields({
  store: choice(['memory', 'redis'], 'must be "memory" or "redis"')
    .optional()
    .describe('Where answers are kept. Default: "redis" with Redis stores, else "memory".'),
  ttl: duration.optional().describe('How long an answer is served. Default: "10m".'),
  scope: choice(['tenant', 'key', 'global'], 'must be "tenant", "key" or "global"')
    .optional()
    .describe('Who shares answers: each tenant, each key, or every caller. Default: "tenant".'),
  maxEntryBytes: positiveInteger
    .optional()
    .describe('Answers larger than this many bytes are not stored. Default: 1000000.'),
  maxBytes: positiveInteger.optional().describe("The memory store's bound in bytes. Default: 67108864 (64 MiB)."),
  costFraction: z
    .number('must be a number from 0 to 1')
    .min(0, 'must be a number from 0 to 1')
    .max(1, 'must be a number from 0 to 1')
    .optional()
    .describe("Share of an answer's cost billed on a hit, 0 to 1. Default: 0."),
  promptCaching: z
    .union(
      [
        z.boolean(),
        fields({ ttl: choice(['5m', '1h'], 'must be "5m" or "1h"').optional(), minTokens: positiveInteger.optional() }),
      ],
      'must be true, false or { "ttl": "5m" | "1h", "minTokens": n }',
    )
    .optional()
    .describe(
      'Anthropic cache_control breakpoints on long tools and system prompts: true, or `{ "ttl": "5m" | "1h", "minTokens": n }`. Default: false.',
    ),
}).describe(
  'The response cache (@tollgate/cache) and automatic provider prompt caching; per tier `"cache": false` opts out. Default: off.',
);

const tenantSchema = fields({
  tier: nonEmptyString().optional().describe("The tier of the tenant's keys that name none (a key of `tiers`)."),
  budget: budgetsSchema.optional(),
  userBudget: budgetsSchema
    .optional()
    .describe(
      "A budget for every end user of the tenant (the key's `user`), each user on their own: the same user id in another tenant has another.",
    ),
  modelBudgets: recordOf(budgetsSchema)
    .optional()
    .describe(
      'Caps on the tenant\'s spend per model (`{ "gpt-4o": { "usd": 50, "period": "month" } }`): once one is spent, `downgrade` for that model applies, else 429; model groups skip a target whose budget is spent.',
    ),
  downgrade: recordOf(nonEmptyString())
    .optional()
    .describe(
      "Model substitutions applied once the tenant passed a budget's soft limit, or once a model's `modelBudgets` entry is spent.",
    ),
  tools: toolPatterns.optional().describe("MCP tools the tenant's keys may call, besides their tier's (`server/*`)."),
  shadow: shadow.optional(),
});

const featureSchema = fields({
  budget: budgetsSchema.optional().describe("The feature's budget, counting every tenant's use of it."),
}).describe('A feature: `{ "budget": { "usd": 30, "period": "month" } }`.');

const isoDateTime = nonEmptyString().refine((text) => !Number.isNaN(Date.parse(text)), 'must be an ISO 8601 date-time');
const keySchema = fields({
  id: nonEmptyString().describe("The key's name in logs, usage records and /admin/keys."),
  sha256: sha256Hex.describe('SHA-256 hex of the whole key string.'),
  tenant: nonEmptyString().optional().describe('The tenant the key belongs to (a key of `tenants`).'),
  user: nonEmptyString().optional().describe("The user the key's usage is recorded under."),
  feature: nonEmptyString().optional().describe("The feature the key's usage is recorded under."),
  tags: stringList
    .optional()
    .describe("Tags every request of the key carries in its usage record, besides those of the request's tags header."),
  tier: nonEmptyString()
    .optional()
    .describe("The key's tier (a key of `tiers`). Default: its tenant's tier, else `defaultTier`."),
  scopes: stringList.optional().describe('Scopes the key holds (see `requiredScope`).'),
  models: stringList.optional().describe("The key's own model allowlist, besides its tier's."),
  tools: toolPatterns.optional().describe("MCP tools the key may call, besides its tier's and its tenant's."),
  budget: budgetsSchema.optional(),
  createdAt: isoDateTime.optional().describe('ISO 8601 (written by `pnpm tollgate keys create`).'),
  expiresAt: isoDateTime.optional().describe('ISO 8601; the key stops working then.'),
  disabled: trueOrFalse.optional().describe('true refuses the key.'),
});

const jwtSchema = fields({
  issuer: nonEmptyString().optional().describe('The `iss` a token must carry.'),
  audience: nonEmptyString().optional().describe('The `aud` a token must carry.'),
  jwks: z
    .object(
      {
        keys: z
          .array(z.looseObject({}, 'must be a JWK object'), 'must be an array of JWK objects')
          .min(1, 'must hold at least one public key'),
      },
      OBJECT,
    )
    .optional()
    .describe('A static JWKS (`{ "keys": [...] }`).'),
  jwksUrl: url(['https:', 'http:']).optional().describe('A remote JWKS URL (fetched and cached).'),
  tenantClaim: nonEmptyString().optional().describe('The claim naming the tenant.'),
  tierClaim: nonEmptyString().optional().describe('The claim naming the tier.'),
  scopeClaim: nonEmptyString().optional().describe('The claim holding the scopes.'),
  userClaim: nonEmptyString().optional().describe('The claim naming the user.'),
  algorithms: stringList.optional().describe('Signature algorithms accepted.'),
})
  .refine((jwt) => jwt.jwks !== undefined || jwt.jwksUrl !== undefined, 'needs "jwks" or "jwksUrl"')
  .describe('Bearer JWTs accepted besides API keys; needs `jwks` or `jwksUrl`.');

const CLUSTER = 'must be a non-empty array of node URLs ("redis://host:port")';
const redisSchema = fields({
  cluster: z
    .array(url(['redis:', 'rediss:']), CLUSTER)
    .min(1, CLUSTER)
    .optional()
    .describe('URLs of some nodes of a Redis Cluster (`redis://host:port`); the stores spread over its shards.'),
  blocks: z
    .union(
      [
        trueOrFalse,
        fields({
          share: fraction('must be a number above 0 and at most 1 (a share of each limit and budget)')
            .optional()
            .describe(
              'The most a block holds, as a share of its limit (blocks are sized by demand: twice the requests a process saw within maxAge). Default: 0.05.',
            ),
          size: choice(['demand', 'share'], 'must be "demand" or "share"')
            .optional()
            .describe(
              '"demand": a block holds twice the requests the process saw within maxAge, at most share of the limit; "share": always share of the limit. Default: "demand".',
            ),
          maxAge: duration
            .optional()
            .describe('How long a block hands out before what it did not hand out goes back. Default: "10s".'),
        }),
      ],
      'must be true, false or { "share": 0.05, "size": "demand", "maxAge": "10s" }',
    )
    .optional()
    .describe(
      'Hot limits and budgets taken from Redis a block at a time and handed out in-process (blockStores): far fewer Redis calls. ' +
        'Never past a limit; a caller may be refused early by what other processes hold unused (at most share × limit each) for at most maxAge. Default: true.',
    ),
}).describe(
  'Redis options: a Redis Cluster instead of one server (`redisUrl`): `{ "cluster": ["redis://host:port", ...] }`; `blocks`.',
);

const globalSchema = fields({
  requestsPerMinute: positiveInteger.optional().describe('Requests per minute over all traffic.'),
  tokensPerMinute: positiveInteger.optional().describe('Tokens per minute over all traffic.'),
  budget: budgetsSchema.optional(),
  shadow: shadow.optional(),
}).describe('Ceilings over all traffic.');

const logSchema = fields({
  level: choice(LOG_LEVELS, `must be one of ${LOG_LEVELS.map((level) => `"${level}"`).join(', ')}`)
    .optional()
    .describe(
      'Lines below this level are not written (access lines are `info`, failures `error`, health checks `debug`). Default: "info".',
    ),
  destination: nonEmptyString()
    .optional()
    .describe('`stdout`, `stderr`, or the path of a file the lines are appended to. Default: "stderr".'),
}).describe('The access and error log (JSON lines, pino). Default: { "level": "info", "destination": "stderr" }.');

const sheddingSchema = fields({
  priorities: recordOf(z.number('must be a number (higher keeps service longer)'))
    .optional()
    .describe('Priority per tier: the lowest are shed first, the highest never. Default: every tier alike.'),
  maxConcurrency: positiveInteger
    .optional()
    .describe('Requests in flight in one process at which it counts as saturated. Default: no limit.'),
  maxEventLoopDelay: duration
    .optional()
    .describe('Event-loop delay (p99) at which it counts as saturated: ms or "100ms". Default: "100ms".'),
  maxUpstreamErrorRate: fraction('must be a fraction greater than 0 and at most 1')
    .optional()
    .describe('Share (0-1] of answers that were upstream failures at which it counts as saturated. Default: off.'),
}).describe("When the process is saturated, lower tiers get 503 first (the guard's loadShedder).");

// The guard's sections are typed here for editors; their ranges are the guard package's own rules
// (resolveGuardOptions, run after the schema), so the config and the package never disagree.
const ANOMALY_ACTIONS = ['alert', 'throttle', 'suspend'] as const satisfies readonly AnomalyAction[];
const NUMBER = 'must be a number';
const spendAnomalySchema = fields({
  bucketSeconds: z.number(NUMBER).optional().describe('Length of one bucket in seconds. Default: 60.'),
  zScore: z
    .number(NUMBER)
    .optional()
    .describe('A bucket this many standard deviations above both baselines is an anomaly. Default: 4.'),
  minBuckets: z
    .number(NUMBER)
    .optional()
    .describe('Buckets of history a key or tenant needs before any of its buckets can be an anomaly. Default: 10.'),
  minSpendUsd: z
    .number(NUMBER)
    .optional()
    .describe('A bucket must spend at least this (USD) to be an anomaly. Default: 0.05.'),
  action: choice(ANOMALY_ACTIONS, `must be one of ${ANOMALY_ACTIONS.join(', ')}`)
    .optional()
    .describe(
      'What an anomaly does: `alert` tells a person; `throttle` also scales the limits down; `suspend` also refuses the key. Default: "alert".',
    ),
  cooldown: duration
    .optional()
    .describe('How long a throttle lasts, and how long a subject stays quiet after an anomaly. Default: "15m".'),
  throttleScale: z
    .number(NUMBER)
    .optional()
    .describe("`throttle`: the factor applied to the subject's limits (0 < x < 1). Default: 0.1."),
  watch: z
    .array(choice(['key', 'tenant'], 'must be "key" or "tenant"'), 'must be a non-empty list of "key" and "tenant"')
    .optional()
    .describe('Watch API keys, tenants, or both. Default: ["key", "tenant"].'),
  fastWindow: duration.optional().describe('How far back the fast baseline looks. Default: "30m".'),
  slowWindow: duration.optional().describe('How far back the slow baseline looks. Default: "1d".'),
}).describe('Spend, tokens, requests and addresses per bucket against moving baselines.');

const repeatedRequestsSchema = fields({
  max: z
    .number(NUMBER)
    .optional()
    .describe('Sends of one request a key may make per window; the next is refused with 429. Default: 20.'),
  windowSeconds: z.number(NUMBER).optional().describe('Default: 60.'),
}).describe('The same request repeated by one key (a runaway loop).');

const authFailuresSchema = fields({
  max: z
    .number(NUMBER)
    .optional()
    .describe('Failed authentications an address may cause per window before it is blocked. Default: 20.'),
  windowSeconds: z.number(NUMBER).optional().describe('Default: 60.'),
  block: duration.optional().describe('How long an address stays blocked. Default: "5m".'),
  distinctKeys: z
    .number(NUMBER)
    .optional()
    .describe(
      'Distinct credentials failing from one address per window that make it credential stuffing. Default: 10.',
    ),
}).describe('Failed authentications per client address.');

const guardSchema = fields({
  spendAnomaly: spendAnomalySchema.optional(),
  repeatedRequests: repeatedRequestsSchema.optional(),
  authFailures: authFailuresSchema.optional(),
  shedding: sheddingSchema.optional(),
  bodyTimeout: duration
    .optional()
    .describe(
      'A provider route\'s body must arrive within this once the caller is identified: ms or "10s". Default: "10s".',
    ),
}).describe(
  'The guard (@tollgate/guard): each section listed turns its check on (`{}` takes its defaults). Default: off.',
);

// Checked by the guard package's own rules too (resolvePromptGuardrails: the deny patterns compile).
const guardrailsSchema = fields({
  maxPromptChars: positiveInteger
    .optional()
    .describe(
      "The most characters a request's prompt texts may hold together; longer is 400 prompt_rejected. Default: no limit.",
    ),
  deny: z
    .array(nonEmptyString(), 'must be an array of patterns')
    .optional()
    .describe(
      'Regular expressions (JavaScript syntax; a leading `(?i)` makes one case-insensitive) no prompt text may match; a match is 400 prompt_rejected naming `deny[<index>]`.',
    ),
  pii: choice(['off', 'mask', 'block'], 'must be "off", "mask" or "block"')
    .optional()
    .describe(
      'E-mail addresses, phone numbers and Luhn-valid card numbers in prompts: `mask` replaces them with [EMAIL], [PHONE], [CARD] before the upstream sees them; `block` refuses the prompt. Default: "off".',
    ),
}).describe(
  'Prompt checks before the provider call, on every provider route (@tollgate/guard promptGuardrails). Default: off.',
);

const HEADER_NAME = 'must be a header name (letters, digits, -) or false';
const attributionHeader = z
  .union([z.literal(false, HEADER_NAME), z.string(HEADER_NAME).regex(/^[A-Za-z0-9-]+$/, HEADER_NAME)], HEADER_NAME)
  .optional();
const ATTRIBUTION_FIELD = 'must be "user", "feature" or "tags"';
// Checked by the auth package's own rules too (attribution(): the headers differ).
const attributionSchema = fields({
  userHeader: attributionHeader.describe(
    'The header naming the end user a request is for, when its key names none; false reads none. Default: "x-tollgate-user".',
  ),
  featureHeader: attributionHeader.describe(
    'The header naming the feature a request is for, when its key names none; false reads none. Default: "x-tollgate-feature".',
  ),
  tagsHeader: attributionHeader.describe(
    'The header holding a request\'s tags, comma-separated; false reads none. Default: "x-tollgate-tags".',
  ),
  bodyUser: trueOrFalse
    .optional()
    .describe(
      "Whether the end user may also come from the body (OpenAI's `user`, Anthropic's `metadata.user_id`) when neither the key nor the header names one. Default: true.",
    ),
  require: z
    .array(choice(['user', 'feature', 'tags'], ATTRIBUTION_FIELD), 'must be an array of "user", "feature", "tags"')
    .optional()
    .describe(
      'Fields every provider request must end up with (from the key, a header or the body): without one it is refused with 400 attribution_required before any limit, reservation or upstream call. Default: none.',
    ),
  maxLength: z
    .int('must be an integer from 1 to 1024')
    .min(1, 'must be an integer from 1 to 1024')
    .max(1024, 'must be an integer from 1 to 1024')
    .optional()
    .describe('The most characters of an end user, a feature or one tag; longer is 400 invalid_request. Default: 128.'),
  maxTags: z
    .int('must be an integer from 1 to 256')
    .min(1, 'must be an integer from 1 to 256')
    .max(256, 'must be an integer from 1 to 256')
    .optional()
    .describe('The most tags of one request; more is 400 invalid_request. Default: 16.'),
}).describe(
  'Who each request is for, beyond its key: the end user, feature and tags, recorded on the usage record (`userId`, `feature`, `tags`). A value the key fixes is kept. Default: the headers below read, nothing required.',
);

const webhookSchema = fields({
  url: url(['http:', 'https:']).describe('Where each alert is POSTed.'),
  secretEnv: environmentName
    .optional()
    .describe('The environment variable holding the HMAC secret of `x-tollgate-signature`. Default: unsigned.'),
  format: choice(['json', 'slack'], 'must be "json" or "slack"')
    .optional()
    .describe('`json` (the event itself) or `slack` (an incoming-webhook message). Default: "json".'),
});

const OUTAGE_POLICY = 'must be "lease", "failOpen" or "failClosed"';
const outagePolicy = choice(
  ['lease', 'failOpen', 'failClosed'] as const satisfies readonly OutagePolicy[],
  OUTAGE_POLICY,
);
const DEFAULT_SLICE = 0.02;
const storeOutageSchema = z
  .union(
    [
      outagePolicy.transform((policy): StoreOutageConfig => ({
        requests: policy,
        tokens: policy,
        budget: policy,
        slice: DEFAULT_SLICE,
      })),
      fields({
        policy: outagePolicy.optional().describe('The policy of every layer that names none. Default: "failClosed".'),
        requests: outagePolicy.optional().describe('Request limits (tieredRateLimit).'),
        tokens: outagePolicy.optional().describe('Token limits (tokenRateLimit).'),
        budget: outagePolicy.optional().describe('Budgets (budgetGuard).'),
        slice: fraction('must be a number above 0 and at most 1 (a share of each limit and budget)')
          .optional()
          .describe(
            `The share of each limit and budget one process may grant on its own while Redis is out. Default: ${DEFAULT_SLICE}.`,
          ),
      }).transform((outage): StoreOutageConfig => {
        const all = outage.policy ?? 'failClosed';
        return {
          requests: outage.requests ?? all,
          tokens: outage.tokens ?? all,
          budget: outage.budget ?? all,
          slice: outage.slice ?? DEFAULT_SLICE,
        };
      }),
    ],
    'must be "lease", "failOpen", "failClosed" or an object',
  )
  .describe(
    'What request limits, token limits and budgets do while Redis is out: `"lease"`, `"failOpen"`, `"failClosed"`, or ' +
      '`{ "policy": "lease", "budget": "failClosed", "slice": 0.02 }` (a layer\'s own policy where given). Default: failClosed everywhere.',
  );

const TRUST_PROXY =
  'must be true, false, a number of hops, or addresses/subnets/names like "loopback" (a string or an array of strings)';
const EMBEDDED_LEDGER = 'must be true (in memory), false, or a directory path';
const SPOOL = 'must be a directory path, or false to turn the spool off';
const COUNT_CACHE = 'must be a whole number of characters, 0 or more';
const BODY_LIMIT = 'must be a positive number of bytes or a size like "1mb"';
const PORT = 'must be an integer from 0 to 65535';
const SQL_IDENTIFIER = 'must be a plain SQL identifier (letters, digits, _)';
const sqlIdentifier = nonEmptyString().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, SQL_IDENTIFIER);

/** The whole config file. Rules across fields (names that point elsewhere, two ways to say one thing) run after it. */
const configSchema = fields({
  $schema: z
    .string()
    .optional()
    .describe('The JSON Schema editors check the file with (`./tollgate.config.schema.json`); the proxy ignores it.'),
  port: z
    .int(PORT)
    .min(0, PORT)
    .max(65535, PORT)
    .optional()
    .describe('Listen port (`PORT` in the environment wins). Default: 8787.'),
  redisUrl: url(['redis:', 'rediss:'])
    .optional()
    .describe('Redis for every store (`REDIS_URL` in the environment wins). Default: in-memory stores.'),
  redis: redisSchema.optional(),
  timezone: z
    .string({ error: (issue) => timeZoneProblem(issue.input) })
    .superRefine((name, context) => {
      const problem = timeZoneProblem(name);
      if (problem !== undefined) context.addIssue({ code: 'custom', message: problem });
    })
    .optional()
    .describe(
      'The IANA time zone whose local calendar cuts budget periods (a "day" budget resets at local midnight). Default: "UTC".',
    ),
  redisPrefix: nonEmptyString()
    .optional()
    .describe(
      'Prefix of every Redis key the proxy writes (several deployments may share one Redis). Default: "tollgate:".',
    ),
  storeOutage: storeOutageSchema.optional(),
  usageLog: nonEmptyString().optional().describe('Path of the JSONL usage log.'),
  dataDir: nonEmptyString()
    .optional()
    .describe(
      'A directory that keeps what the gateway knows across restarts, held by one process at a time: the embedded usage ' +
        'ledger (`ledger/`, PGlite, unless `postgresUrl` names one), the keys made through /admin/keys, the dashboard ' +
        'or `tollgate keys --config <dataDir>/keys.json` (`keys.json`, on memory stores; Redis keeps its own), and ' +
        'the usage spool (`spool/`). Read by `tollgate report --data-dir`.',
    ),
  postgresUrl: url(['postgres:', 'postgresql:'])
    .optional()
    .describe('PostgreSQL URL of the usage ledger (also read by `pnpm tollgate report`).'),
  postgresSchema: sqlIdentifier
    .optional()
    .describe("Schema of the usage ledger table. Default: the connection's search_path."),
  postgresTable: sqlIdentifier.optional().describe('Name of the usage ledger table. Default: "tollgate_usage".'),
  embeddedLedger: z
    .union([z.boolean(EMBEDDED_LEDGER), nonEmptyString(EMBEDDED_LEDGER)], EMBEDDED_LEDGER)
    .optional()
    .describe(
      'An embedded PostgreSQL (PGlite, the same SQL) as the usage ledger when there is no `postgresUrl`: `true` keeps it in memory, ' +
        'a path keeps it in that directory (one process at a time). Default: false (true in the zero-config demo).',
    ),
  spool: z
    .union([z.literal(false, SPOOL), nonEmptyString(SPOOL)], SPOOL)
    .optional()
    .describe(
      'Directory of the usage spool (calls sent and records not yet stored, kept through a crash); `false` turns it off. ' +
        'Default: with `usageLog`, `<usageLog>.spool`; with only `postgresUrl`, `.tollgate/spool`; else none.',
    ),
  adminKeySha256: sha256Hex
    .optional()
    .describe('SHA-256 hex of the admin key that opens `/admin/*`. Without it the admin routes answer 404.'),
  metrics: fields({ public: trueOrFalse.describe('true serves `/metrics` to anyone.') })
    .optional()
    .describe(
      '`/metrics` names tenants and their spend: it needs the admin key, or `{ "public": true }` to serve it to anyone. Default: behind the admin key.',
    ),
  bodyLimit: z
    .union(
      [
        z.int(BODY_LIMIT).positive(BODY_LIMIT),
        z.string(BODY_LIMIT).regex(/^\s*\d+(\.\d+)?\s*([kKmMgG]?[bB])?\s*$/, BODY_LIMIT),
      ],
      BODY_LIMIT,
    )
    .optional()
    .describe('Largest accepted JSON body: bytes, or a string like "1mb". Default: "1mb".'),
  countCacheChars: z
    .int(COUNT_CACHE)
    .min(0, COUNT_CACHE)
    .optional()
    .describe(
      'Characters of prompt text whose exact token counts the meter keeps, per tenant, so that a text sent again is not counted again; ' +
        '0 keeps none. Default: 4000000 (about 8 MB).',
    ),
  defaultTier: nonEmptyString()
    .optional()
    .describe('Tier of identities that name none (keys without tier or tenant tier). Default: "free" when defined.'),
  requiredScope: nonEmptyString()
    .optional()
    .describe(
      'Scope every proxied route requires; omit to require none. Some key in `keys` must hold it unless `jwt` is set.',
    ),
  upstreams: recordOf(upstreamSchema)
    .transform((upstreams) => {
      for (const [name, upstream] of Object.entries(upstreams)) upstream.api ??= defaultUpstreamKind(name);
      return upstreams;
    })
    .optional()
    .describe('The providers calls are sent to, by name. Default: the built-in mock provider.'),
  models: recordOf(modelSchema)
    .optional()
    .describe('Prices and limits per model id: adds or overrides a catalogue row.'),
  tiers: recordOf(tierSchema).optional().describe('Limits and model allowlists per tier name.'),
  tenants: recordOf(tenantSchema).optional().describe('Tier, budget and downgrades per tenant id.'),
  features: recordOf(featureSchema)
    .optional()
    .describe(
      'Budgets per feature (the key\'s `feature`), across tenants; `"*"` for every feature without its own entry.',
    ),
  mcpServers: recordOf(mcpServerSchema)
    .optional()
    .describe(
      'MCP servers served at `/mcp/<name>` behind the same keys: tools allowed by `tools` on tiers, tenants and keys, limited by `toolCallsPerMinute` and priced per call against budgets.',
    ),
  keys: z.array(keySchema, 'must be an array').optional().describe('API keys, stored as SHA-256 hex of the whole key.'),
  jwt: jwtSchema.optional(),
  global: globalSchema.optional(),
  log: logSchema.optional(),
  guard: guardSchema.optional(),
  guardrails: guardrailsSchema.optional(),
  attribution: attributionSchema.optional(),
  trustProxy: z
    .union(
      [
        z.boolean(TRUST_PROXY),
        z.int(TRUST_PROXY).min(0, TRUST_PROXY),
        nonEmptyString(TRUST_PROXY),
        z.array(nonEmptyString(), TRUST_PROXY).min(1, TRUST_PROXY),
      ],
      TRUST_PROXY,
    )
    .optional()
    .describe(
      "Express's `trust proxy`: which proxies in front may name the client address (`X-Forwarded-For`). Default: false.",
    ),
  alerts: fields({
    webhooks: z.array(webhookSchema, 'must be an array').optional().describe('Every alert is POSTed to each.'),
  })
    .optional()
    .describe(
      'Where events (budget spent, soft limit, anomaly, suspension, auth flood, store down) go besides the operator log.',
    ),
  cache: cacheSchema.optional(),
  export: fields({
    stripe: fields({
      apiKeyEnv: environmentName.describe('Name of the environment variable holding the Stripe secret key.'),
      eventName: nonEmptyString()
        .max(100, 'must be at most 100 characters')
        .describe("The meter's event name (`event_name`) in Stripe."),
      customers: recordOf(nonEmptyString().regex(/^cus_\w+$/, 'must be a Stripe customer id (cus_...)')).describe(
        'Tenant id → Stripe customer id: the records of these tenants are billed.',
      ),
      baseUrl: url(['http:', 'https:']).optional().describe('The Stripe API address. Default: https://api.stripe.com.'),
    }).describe(
      'Stripe billing meter events from priced usage records of mapped tenants (`identifier` = the record id, value in ' +
        'whole USD micro-units with the remainder carried per customer and UTC month: a month adds up to floor(its ' +
        'nano-USD / 1000)), retried until accepted, each once; needs the usage spool (`dataDir`, `usageLog`, ' +
        '`postgresUrl` or `spool`).',
    ),
  })
    .optional()
    .describe('Where usage records are sent besides the usage log and the ledger.'),
  // The routing sections are judged by the router's own option rules (routing-config.ts): here they are objects.
  modelGroups: recordOf(z.looseObject({}, OBJECT))
    .optional()
    .describe(
      'Model names a client may ask for, each served by one or more targets: `{ "strategy": "fallback", "targets": [{ "upstream", "model" }] }`.',
    ),
  requestClasses: recordOf(z.looseObject({}, OBJECT))
    .optional()
    .describe(
      'Model aliases (e.g. `auto`) whose rules pick a group by what the request is: `{ "rules": [{ "tools": true, "group": "smart" }], "default": "quick" }`.',
    ),
  retry: z
    .looseObject({}, OBJECT)
    .optional()
    .describe('`attempts`, `baseDelayMs`, `maxDelayMs`: retries across the targets of a group.'),
  circuitBreaker: z
    .looseObject({}, OBJECT)
    .optional()
    .describe('`failureThreshold`, `windowMs`, `failureRate`, `minimumCalls`, `cooldownMs`: per target.'),
  healthProbe: fields({
    intervalMs: positiveInteger.optional().describe('Milliseconds between probes. Default: 30000.'),
    timeoutMs: positiveInteger.optional().describe('Milliseconds a probe may take. Default: 5000.'),
  })
    .optional()
    .describe(
      'An optional periodic probe of every upstream (its model list, no tokens), reported on /healthz: an upstream that fails it makes the gateway `degraded`.',
    ),
})
  .transform(({ $schema: _editorsOnly, ...config }) => config)
  .meta({
    title: 'tollgate proxy config',
    description: 'The config file of the tollgate example proxy (TOLLGATE_CONFIG).',
  });

export type BudgetConfig = z.output<typeof budgetSchema>;
export type BudgetsConfig = z.output<typeof budgetsSchema>;
export type UpstreamConfig = z.output<typeof upstreamSchema>;
export type ModelConfig = z.output<typeof modelSchema>;
export type TierConfig = z.output<typeof tierSchema>;
export type CacheConfig = z.output<typeof cacheSchema>;
export type TenantConfig = z.output<typeof tenantSchema>;
export type McpServerConfig = z.output<typeof mcpServerSchema>;
export type KeyConfig = z.output<typeof keySchema>;
export type AttributionConfig = z.output<typeof attributionSchema>;
export type JwtConfig = z.output<typeof jwtSchema>;
export type RedisConfig = z.output<typeof redisSchema>;
export type GlobalConfig = z.output<typeof globalSchema>;
export type LogConfig = z.output<typeof logSchema>;
export type SheddingConfig = z.output<typeof sheddingSchema>;
export type GuardConfig = z.output<typeof guardSchema>;
export type GuardrailsConfig = z.output<typeof guardrailsSchema>;
export type WebhookConfig = z.output<typeof webhookSchema>;
/** The routing sections keep the router's own types: the schema only knows they are objects. */
export type ProxyConfig = Omit<z.output<typeof configSchema>, keyof RoutingConfig> & RoutingConfig;

/** An issue as sentences naming its field: `keys[0].tier ...`, `upstreams.openai.baseUrl ...`. */
function describeIssue(issue: z.core.$ZodIssue, at: readonly PropertyKey[] = []): string[] {
  const path = [...at, ...issue.path];
  if (issue.code === 'invalid_union') {
    // The one branch made for the value's kind (an object, a string) says what is wrong inside it.
    const matched = issue.errors.filter(
      (branch) => !branch.every((inner) => inner.path.length === 0 && isOtherKind(inner)),
    );
    if (matched.length === 1 && matched[0]!.length > 0)
      return matched[0]!.flatMap((inner) => describeIssue(inner, path));
  }
  if (issue.code === 'invalid_key')
    return [`${fieldName(path.slice(0, -1))} ${issue.issues[0]?.message ?? issue.message}`];
  return issue.message.split('\n').map((line) => `${fieldName(path)} ${line}`);
}

/** The issue says the value is of another kind than the schema's (a number where a name was expected). */
function isOtherKind(issue: z.core.$ZodIssue): boolean {
  if (issue.code === 'invalid_type') return true;
  return issue.code === 'invalid_value' && !issue.values.some((value) => typeof value === typeof issue.input);
}

function fieldName(path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'the config';
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
}

/**
 * Validates a parsed JSON config and returns a clean copy. Throws ConfigError listing every
 * faulty field (e.g. `tiers.free.requestsPerMinute must be a positive integer`): first what the
 * schema finds, or, when the fields are sound, what names and rules across them find.
 */
export function validateConfig(input: unknown, options: ValidateOptions = {}): ProxyConfig {
  const { problems, config } = configProblems(input, options);
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  VALIDATED.add(config);
  return config;
}

/** The clean copies validateConfig made: a gateway given one checks only the environment again. */
const VALIDATED = new WeakSet<object>();

/**
 * The config a gateway serves: what validateConfig returns for `config` in `env` (the same checks as the start, so
 * no door serves a config that was not validated); a clean copy validateConfig already made is checked for the
 * environment only. Throws a ConfigError listing every problem.
 */
export function servableConfig(config: unknown, env: NodeJS.ProcessEnv): ProxyConfig {
  if (typeof config !== 'object' || config === null || !VALIDATED.has(config)) return validateConfig(config, { env });
  const problems = upstreamCredentialProblems(config, env);
  if (problems.length > 0) throw new ConfigError(problems);
  return config as ProxyConfig;
}

/** What a validation checks beyond the file itself. */
export interface ValidateOptions {
  /**
   * The environment the config will run in: each upstream's `apiKeyEnv` must be set in it (else every call would go
   * upstream without credentials). Left out, the environment is not checked (a config checked on another machine).
   */
  env?: NodeJS.ProcessEnv;
}

/**
 * Every problem of a config, each naming its field: what the schema finds, or, when the fields are sound, what names
 * and rules across them find, then (with `env`) what the environment lacks. The clean copy when there is none.
 */
export function configProblems(
  input: unknown,
  options: ValidateOptions = {},
): { problems: readonly string[]; config?: ProxyConfig } {
  // reportInput: a union's branches are told apart by the kind of value they refused.
  const parsed = configSchema.safeParse(input, { reportInput: true });
  // The environment is read off the upstreams as given, so that one error lists its problems beside the file's.
  const environment = options.env ? upstreamCredentialProblems(input, options.env) : [];
  if (!parsed.success)
    return { problems: [...new Set(parsed.error.issues.flatMap((issue) => describeIssue(issue))), ...environment] };
  const config = parsed.data as ProxyConfig;
  const problems: string[] = [];
  checkChoices(config, problems);
  checkByOwners(config, problems);
  checkReferences(config, problems);
  checkModelNames(config, problems);
  checkToolReferences(config, problems);
  checkRequiredScope(config, problems);
  // Checked by the router's own option rules (routing-config.ts), so that the two never disagree.
  const routingProblem = checkRouting(config);
  if (routingProblem) problems.push(routingProblem);
  problems.push(...environment);
  if (problems.length > 0) return { problems };
  countingDefaults(config);
  return { problems, config };
}

/** An upstream whose `apiKeyEnv` names a variable that is not set would send every request without credentials. */
function upstreamCredentialProblems(input: unknown, env: NodeJS.ProcessEnv): string[] {
  const upstreams = isObject(input) && isObject(input.upstreams) ? input.upstreams : {};
  return Object.entries(upstreams).flatMap(([name, upstream]) => {
    if (!isObject(upstream) || typeof upstream.apiKeyEnv !== 'string' || upstream.apiKey !== undefined) return [];
    const value = env[upstream.apiKeyEnv];
    if (value !== undefined && value !== '') return [];
    return [
      `upstreams.${name}.apiKeyEnv names ${upstream.apiKeyEnv}, which is not set: set it, or the proxy would call ${name} without credentials`,
    ];
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A model with no `tokenizer`, served by an upstream whose kind names one (`modelTokenizer`: o200k_base for the kinds
 * that speak OpenAI's API), is estimated with it. That is not known to be its provider's own tokenizer (a self-hosted
 * Llama speaks OpenAI's API too), so the hard stop cuts it only on a lower bound (`ownTokenizer: false`); naming the
 * tokenizer declares it the provider's own.
 */
function countingDefaults(config: ProxyConfig): void {
  for (const model of Object.values(config.models ?? {})) {
    if (model.tokenizer !== undefined) continue;
    const kind = config.upstreams ? config.upstreams[model.provider]?.api : defaultUpstreamKind(model.provider);
    const tokenizer = kind === undefined ? undefined : upstreamKinds().get(kind)?.wire.modelTokenizer;
    if (tokenizer === undefined) continue;
    model.tokenizer = tokenizer;
    model.ownTokenizer = false;
  }
}

/** Two fields that say the same thing two ways. */
function checkChoices(config: ProxyConfig, problems: string[]): void {
  if (config.redis?.cluster && config.redisUrl !== undefined)
    problems.push('redisUrl and redis.cluster are two ways to reach Redis: give one');
  if (config.embeddedLedger !== undefined && config.embeddedLedger !== false && config.postgresUrl !== undefined) {
    problems.push('embeddedLedger and postgresUrl are two ledgers: give one');
  }
}

/** Values whose rules belong to another package: the guard's options and guardrails, attribution's, Express's `trust proxy` (it compiles the addresses). */
function checkByOwners(config: ProxyConfig, problems: string[]): void {
  const guard = config.guard;
  if (guard) {
    try {
      resolveGuardOptions({
        spendAnomaly: guard.spendAnomaly ?? false,
        repeatedRequests: guard.repeatedRequests ?? false,
        authFailures: guard.authFailures ?? false,
      });
    } catch (error) {
      problems.push(`guard.${(error as Error).message}`);
    }
  }
  if (config.guardrails) {
    try {
      resolvePromptGuardrails(config.guardrails);
    } catch (error) {
      problems.push(`guardrails.${(error as Error).message.replace(/ \(ERR_.*$/, '')}`);
    }
  }
  if (config.attribution) {
    try {
      attribution(config.attribution);
    } catch (error) {
      problems.push(`attribution: ${(error as Error).message.replace(/^attribution\(\): /, '')}`);
    }
  }
  if (config.trustProxy !== undefined) {
    try {
      express().set('trust proxy', config.trustProxy);
    } catch (error) {
      problems.push(`trustProxy: ${(error as Error).message}`);
    }
  }
}

/** The providers whose APIs the built-in mock speaks: those of every API a gateway serves. */
const MOCK_PROVIDERS: readonly string[] = [
  ...new Set(providerAdapters().flatMap((adapter) => (adapter.route ? [adapter.provider] : []))),
];

/** Names that point elsewhere in the config must exist there. */
function checkReferences(config: ProxyConfig, problems: string[]): void {
  const tiers = config.tiers ?? {};
  const tenants = config.tenants ?? {};
  const tierProblem = (field: string, name: string | undefined) => {
    if (name !== undefined && !Object.hasOwn(tiers, name))
      problems.push(`${field} names an unknown tier "${name}"${didYouMean(name, Object.keys(tiers))}`);
  };
  tierProblem('defaultTier', config.defaultTier);
  for (const [name, tenant] of Object.entries(tenants)) tierProblem(`tenants.${name}.tier`, tenant.tier);
  const ids = new Set<string>();
  const hashes = new Set<string>();
  const names = keyNamesOf(config);
  (config.keys ?? []).forEach((key, i) => {
    problems.push(...keyReferenceProblems(names, key, `keys[${i}]`));
    if (ids.has(key.id)) problems.push(`keys[${i}].id "${key.id}" is used twice`);
    if (hashes.has(key.sha256)) problems.push(`keys[${i}].sha256 is used twice`);
    ids.add(key.id);
    hashes.add(key.sha256);
  });
  const upstreams = config.upstreams;
  for (const [name, model] of Object.entries(config.models ?? {})) {
    const known = upstreams ? Object.hasOwn(upstreams, model.provider) : MOCK_PROVIDERS.includes(model.provider);
    if (!known)
      problems.push(
        `models.${name}.provider names "${model.provider}", which is not ${upstreams ? 'a key of upstreams' : `${MOCK_PROVIDERS.map((provider) => `"${provider}"`).join(', ')} (the mock serves only those)`}`,
      );
  }
  for (const tier of Object.keys(config.guard?.shedding?.priorities ?? {}))
    tierProblem('guard.shedding.priorities', tier);
}

/** Why `model` is no model the config knows (no price, and none of `aliases`), with the closest known name. */
function unknownModel(model: string, pricing: Pricing, aliases: readonly string[]): string | undefined {
  if (pricing.find(model) !== undefined || aliases.includes(model)) return undefined;
  return `names an unknown model "${model}"${didYouMean(model, [...pricing.models(), ...aliases])}`;
}

/**
 * Where the config names a model, the model must be one it can price (the catalogue or `models`;
 * dated ids resolve to their family) or one of its own aliases: a typo in a tier's allowlist would
 * refuse that model's callers for good, and one in a downgrade would never apply. Patterns
 * (`gpt-4o*`, `*`) pass. The targets of model groups are checked with the router's rules.
 */
function checkModelNames(config: ProxyConfig, problems: string[]): void {
  let pricing: Pricing;
  try {
    pricing = createPricing({ models: { ...config.models } });
  } catch (error) {
    // A price the pricing table refuses (a tokenizer rule across fields): said once, in the pricing's words.
    problems.push(`models: ${(error as Error).message.replace(/ \(ERR_TG_[^)]*\)$/, '')}`);
    return;
  }
  const aliases = [...Object.keys(config.modelGroups ?? {}), ...Object.keys(config.requestClasses ?? {})];
  for (const [tier, rules] of Object.entries(config.tiers ?? {})) {
    (rules.models ?? []).forEach((model, i) => {
      const problem = model.includes('*') ? undefined : unknownModel(model, pricing, aliases);
      if (problem)
        problems.push(`tiers.${tier}.models[${i}] ${problem} (add it under "models" with its prices if it is yours)`);
    });
  }
  for (const [name, tenant] of Object.entries(config.tenants ?? {})) {
    for (const [from, to] of Object.entries(tenant.downgrade ?? {})) {
      // Both ends are billed: a downgrade swaps one priced model for another.
      const fromProblem = unknownModel(from, pricing, []);
      if (fromProblem) problems.push(`tenants.${name}.downgrade ${fromProblem}`);
      const toProblem = unknownModel(to, pricing, []);
      if (toProblem) problems.push(`tenants.${name}.downgrade.${from} ${toProblem}`);
    }
    // A downgrade beside budgets none of which has a soft limit (and no model budget) would never apply.
    const budgets = tenant.budget === undefined ? [] : [tenant.budget].flat();
    if (
      tenant.downgrade &&
      budgets.length > 0 &&
      tenant.modelBudgets === undefined &&
      budgets.every((budget) => budget.softLimit === undefined)
    )
      problems.push(
        `tenants.${name}.downgrade applies once a budget passes its softLimit or a modelBudgets entry is spent: give tenants.${name}.budget a softLimit`,
      );
    for (const model of Object.keys(tenant.modelBudgets ?? {})) {
      // A model budget caps what is billed: a name no price matches would cap nothing.
      const problem = unknownModel(model, pricing, []);
      if (problem) problems.push(`tenants.${name}.modelBudgets ${problem}`);
    }
  }
}

/** MCP server names go in paths and tool names (`/mcp/search`, `search/web_search`); tool patterns name a server. */
function checkToolReferences(config: ProxyConfig, problems: string[]): void {
  const servers = Object.keys(config.mcpServers ?? {});
  for (const name of servers) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name))
      problems.push(
        `mcpServers has a server named "${name}": use 1-64 letters, digits, _ and - (it is a path segment)`,
      );
  }
  for (const [name, tier] of Object.entries(config.tiers ?? {}))
    problems.push(...toolServerProblems(tier.tools, servers, `tiers.${name}`));
  for (const [name, tenant] of Object.entries(config.tenants ?? {}))
    problems.push(...toolServerProblems(tenant.tools, servers, `tenants.${name}`));
}

/** Tool patterns whose server is not in mcpServers. */
function toolServerProblems(patterns: readonly string[] | undefined, servers: readonly string[], at: string): string[] {
  return (patterns ?? []).flatMap((pattern) => {
    const server = pattern.split('/')[0]!;
    if (pattern === '*' || servers.includes(server)) return [];
    return [
      `${at}.tools names "${pattern}", whose server "${server}" is not in mcpServers${didYouMean(server, servers)}`,
    ];
  });
}

/** The names a key may give: the config's tenants, tiers and MCP servers. */
export interface KeyNames {
  tenants: readonly string[];
  tiers: readonly string[];
  mcpServers: readonly string[];
}

/** The names a config's keys may give. */
export function keyNamesOf(config: Pick<ProxyConfig, 'tenants' | 'tiers' | 'mcpServers'>): KeyNames {
  return {
    tenants: Object.keys(config.tenants ?? {}),
    tiers: Object.keys(config.tiers ?? {}),
    mcpServers: Object.keys(config.mcpServers ?? {}),
  };
}

/** What a key names elsewhere in the config: its tenant, tier and tools' servers. */
export interface KeyReferences {
  tenant?: string | undefined;
  tier?: string | undefined;
  tools?: readonly string[] | undefined;
}

/**
 * The names a key gives that the config does not know, each naming its field (`keys[3].tier names an unknown tier
 * "platinum"; did you mean "pro"?`). One rule for every door a key comes in by: the config's `keys`, `tollgate keys`,
 * /admin/keys and the key stores a gateway reads (a key naming an unknown tier would be served on the default tier,
 * one naming an unknown tenant with no tenant budget).
 */
export function keyReferenceProblems(names: KeyNames, key: KeyReferences, at: string): string[] {
  const problems: string[] = [];
  const { tiers, tenants, mcpServers: servers } = names;
  if (key.tier !== undefined && !tiers.includes(key.tier))
    problems.push(`${at}.tier names an unknown tier "${key.tier}"${didYouMean(key.tier, tiers)}`);
  if (key.tenant !== undefined && !tenants.includes(key.tenant))
    problems.push(`${at}.tenant names an unknown tenant "${key.tenant}"${didYouMean(key.tenant, tenants)}`);
  problems.push(...toolServerProblems(key.tools, servers, at));
  return problems;
}

/**
 * A required scope that no configured key holds locks every one of them out. A JWT may carry any
 * scope, so with `jwt` it is fine; with no keys in the file, the keys live in the key store, which
 * is not read at start.
 */
function checkRequiredScope(config: ProxyConfig, problems: string[]): void {
  const scope = config.requiredScope;
  const keys = config.keys ?? [];
  if (scope === undefined || config.jwt !== undefined || keys.length === 0) return;
  if (keys.some((key) => key.scopes?.includes(scope))) return;
  const held = [...new Set(keys.flatMap((key) => key.scopes ?? []))];
  problems.push(
    `requiredScope "${scope}" is held by no key in keys${didYouMean(scope, held)} (their scopes: ${held.length > 0 ? held.join(', ') : 'none'}); give a key that scope, or configure jwt`,
  );
}

/**
 * Where JSON.parse stopped in `text`, as an offset: the position Node's message gives (`at position 42`);
 * when it gives none (`Unexpected token '}', "..." is not valid JSON`), where a locating parser finds
 * the first error; else the end of the text.
 */
function syntaxErrorOffset(text: string, message: string): number {
  const position = /\bposition (\d+)/.exec(message);
  if (position) return Number(position[1]);
  const errors: ParseError[] = [];
  parseJsonLocating(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  return errors[0]?.offset ?? text.length;
}

/** `line 3, column 7` (both from 1) of an offset in `text`. */
function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `line ${line}, column ${offset - (before.lastIndexOf('\n') + 1) + 1}`;
}

/** Parses JSON text and validates it; a JSON syntax error becomes a ConfigError too, naming its line and column. */
export function parseConfig(text: string, source = 'the config', options: ValidateOptions = {}): ProxyConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Node's own location words (a position, or a snippet of the text) go: the line and column say it.
    const reason = message
      .replace(/ in JSON at position \d+(?: \(line \d+ column \d+\))?$/, '')
      .replace(/, .* is not valid JSON$/s, '');
    throw new ConfigError(
      `${source} is not valid JSON at ${lineAndColumn(text, syntaxErrorOffset(text, message))}: ${reason}`,
    );
  }
  return validateConfig(parsed, options);
}

/**
 * The config file's JSON Schema (draft 2020-12), for editors: generated from the schema above, so
 * it says what the proxy accepts field by field (rules across fields are the proxy's alone).
 * `pnpm --filter @tollgate/example-proxy config-schema` writes it to tollgate.config.schema.json.
 */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(z.toJSONSchema(configSchema, { target: 'draft-2020-12', io: 'input' }), null, 2)}\n`;
}
