// The config's upstreams, models and MCP servers: where calls go, what a model costs, which tools are served.
import { z } from 'zod';
import { MAX_USD } from '@tollgate/core/options';
import { providerAdapters } from '@tollgate/providers/routes';
import {
  duration,
  environmentName,
  fields,
  nonEmptyString,
  positiveInteger,
  pricePerMTok,
  recordOf,
  choice,
  trueOrFalse,
  url,
} from './rules.js';

/** The upstream kinds the gateway itself knows how to reach (`openai-compatible`: Chat Completions as self-hosted servers speak it). */
const BUILT_IN_UPSTREAM_KINDS = ['openai', 'anthropic', 'openai-compatible', 'gemini', 'azure-openai'] as const;
/**
 * The adapters that say themselves how their upstream is reached (`ProviderAdapter.upstream`), with a kind of their
 * own (an adapter may instead say where an upstream of one of the gateway's kinds serves it, as embeddings on `openai`).
 */
const ADAPTER_UPSTREAMS = providerAdapters().flatMap((adapter) =>
  adapter.upstream && !(BUILT_IN_UPSTREAM_KINDS as readonly string[]).includes(adapter.upstream.kind)
    ? [adapter.upstream]
    : [],
);

/** The wire formats an upstream may speak: the gateway's own kinds, then each adapter's that declares one. */
export const UPSTREAM_KINDS: readonly [string, ...string[]] = [
  ...BUILT_IN_UPSTREAM_KINDS,
  ...ADAPTER_UPSTREAMS.map((upstream) => upstream.kind),
];
export type UpstreamKind = (typeof BUILT_IN_UPSTREAM_KINDS)[number] | (string & {});

/** The kind of an upstream that names none, from its name (an adapter's kind for its own names). */
export function defaultUpstreamKind(name: string): UpstreamKind {
  if (name === 'anthropic') return 'anthropic';
  if (name === 'gemini' || name === 'google') return 'gemini';
  return ADAPTER_UPSTREAMS.find((upstream) => (upstream.names ?? [upstream.kind]).includes(name))?.kind ?? 'openai';
}

/** Where each kind an adapter declares is usually reached, for the config's descriptions. */
const ADAPTER_UPSTREAM_HINTS = ADAPTER_UPSTREAMS.map(
  (upstream) => `\`${upstream.baseUrl}\` (api "${upstream.kind}", key in ${upstream.keyEnv})`,
).join(', ');

export const upstreamSchema = fields({
  baseUrl: url(['http:', 'https:'])
    .transform((text) => text.replace(/\/+$/, ''))
    .describe(
      `e.g. \`https://api.openai.com/v1\`, \`https://api.anthropic.com\`, \`https://generativelanguage.googleapis.com/v1beta\`${ADAPTER_UPSTREAM_HINTS ? ` or ${ADAPTER_UPSTREAM_HINTS}` : ''}.`,
    ),
  apiKeyEnv: environmentName
    .optional()
    .describe('Name of the environment variable holding the upstream key (preferred over `apiKey`).'),
  apiKey: nonEmptyString()
    .optional()
    .describe('The upstream key itself (prefer `apiKeyEnv`: config files get copied around).'),
  api: choice(UPSTREAM_KINDS, `must be one of ${UPSTREAM_KINDS.map((kind) => `"${kind}"`).join(', ')}`)
    .optional()
    .describe(
      `The wire format this upstream speaks. Default: "anthropic" for the name "anthropic", "gemini" for "gemini"/"google"${ADAPTER_UPSTREAMS.map((upstream) => `, "${upstream.kind}" for ${(upstream.names ?? [upstream.kind]).map((name) => `"${name}"`).join('/')}`).join('')}, else "openai".`,
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

export const modelSchema = fields({
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

const USD_PER_CALL = `must be a number of USD from 0 to ${MAX_USD.toLocaleString('en-US')}`;
export const mcpServerSchema = fields({
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
