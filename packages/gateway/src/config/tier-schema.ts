// The config's tiers (limits, model allowlists, tools, shadow) and its response cache.
import { z } from 'zod';
import { choice, duration, fields, nonEmptyString, positiveInteger, stringList, trueOrFalse } from './rules.js';
import { sessionBudgetSchema } from './budget-limit-schema.js';

const perKeySchema = fields({
  requestsPerMinute: positiveInteger.optional().describe('Requests per minute of each key of the tier.'),
  requestsPerDay: positiveInteger.optional().describe('Requests per day (24 h) of each key of the tier.'),
  tokensPerMinute: positiveInteger.optional().describe('Tokens (input and output) per minute of each key.'),
  tokensPerDay: positiveInteger.optional().describe('Tokens (input and output) per day (24 h) of each key.'),
});

export const shadow = trueOrFalse.describe(
  "true records what would have been refused (rate and token limits, budgets, the guard's blocks) without refusing it: " +
    'the request is served, its usage record carries `shadowRefusal` (the error code) and ' +
    '`tollgate_shadow_refusals_total` counts it. Default: false.',
);

const TOOL_PATTERN = 'must be "*" or "<server>/<tool>" (the tool may end in *, e.g. "search/*")';
export const toolPatterns = z.array(
  nonEmptyString(TOOL_PATTERN).regex(/^(\*|[A-Za-z0-9_-]+\/[^/\s]+)$/, TOOL_PATTERN),
  'must be an array of tool patterns ("search/web_search", "search/*")',
);

export const tierSchema = fields({
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
  sessionBudget: sessionBudgetSchema.optional(),
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

export const cacheSchema = fields({
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
