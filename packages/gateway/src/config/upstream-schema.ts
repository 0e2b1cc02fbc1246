// The config's upstreams, models and MCP servers: where calls go, what a model costs, which tools are served.
import { z } from 'zod';
import { MAX_USD } from '@tollgate/core/options';
import { upstreamKinds } from '@tollgate/providers/routes';
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

/** The kind of an upstream whose entry names none and whose name no kind claims. */
const DEFAULT_UPSTREAM_KIND = 'openai';
/** Every kind of upstream the adapters declare (`ProviderAdapter.upstream`): how each is reached, what it speaks. */
const KINDS = [...upstreamKinds().values()];

/** The wire formats an upstream may speak: the kinds the adapters declare. */
const UPSTREAM_KINDS = KINDS.map((kind) => kind.kind) as [string, ...string[]];
type UpstreamKind = string;

/** The kind of an upstream that names none, from its name (the kind whose `names` hold it). */
export function defaultUpstreamKind(name: string): UpstreamKind {
  return KINDS.find(({ kind, wire }) => (wire.names ?? [kind]).includes(name))?.kind ?? DEFAULT_UPSTREAM_KIND;
}

/** The tokenizer a model served by an upstream of `kind` counts with when it names none (the kind's `modelTokenizer`). */
export function kindTokenizer(kind: UpstreamKind): string | undefined {
  return upstreamKinds().get(kind)?.wire.modelTokenizer;
}

const UPSTREAM_KIND_RULE = 'must be "http" (the default: calls go to baseUrl) or "mock" (the built-in mock provider)';

/** Where each kind is usually reached, for the config's descriptions. */
const UPSTREAM_HINTS = KINDS.map(
  ({ kind, wire }) => `\`${wire.baseUrl}\` (api "${kind}"${wire.keyEnv ? `, key in ${wire.keyEnv}` : ''})`,
).join(', ');
/** The names that choose a kind, for the config's descriptions. */
const NAMED_KINDS = KINDS.flatMap(({ kind, wire }) => {
  const names = (wire.names ?? [kind]).filter((name) => name !== DEFAULT_UPSTREAM_KIND);
  return names.length > 0 ? [`"${kind}" for ${names.map((name) => `"${name}"`).join('/')}`] : [];
}).join(', ');

/** An upstream reached over HTTP: the default kind. */
const httpUpstreamSchema = fields({
  kind: z
    .literal('http', UPSTREAM_KIND_RULE)
    .optional()
    .describe('"http" (the default): calls go to `baseUrl`; `{ "kind": "mock" }` is the built-in mock provider.'),
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
  jsonAsStream: trueOrFalse
    .optional()
    .describe(
      'Ask this upstream for a JSON call as a stream, held to its grant as streams are (false: as JSON, billed its ' +
        'real cost past its cap, for an upstream that cannot stream). Default: true.',
    ),
  countCutAnswers: trueOrFalse
    .optional()
    .describe(
      "Bill an answer without usage (cut at its grant, or its usage never came) whose model's tokenizer is not " +
        "published (Claude) this upstream's own count of what its client received (Anthropic's count_tokens), asked " +
        'before the call settles (false, failed or late: the upper count, flagged outputUpperBound). Default: true.',
    ),
  countTimeoutMs: positiveInteger
    .optional()
    .describe('Milliseconds that count may take before the upper count is billed instead. Default: 5000.'),
});

/** The built-in mock provider, chosen on purpose: fake answers, priced and recorded like real ones. */
const mockUpstreamSchema = fields({
  kind: z
    .literal('mock', UPSTREAM_KIND_RULE)
    .describe('The built-in mock provider (fake answers, for demos and tests); it must be the only upstream.'),
});

/** An upstream: one reached over HTTP, or the built-in mock named on purpose (`{ "kind": "mock" }`). */
export const upstreamSchema = z.discriminatedUnion('kind', [httpUpstreamSchema, mockUpstreamSchema], {
  error: (issue) => (issue.code === 'invalid_union' ? UPSTREAM_KIND_RULE : undefined),
});

/** The config's upstreams as a gateway calls them: those reached over HTTP; undefined when the mock serves. */
export function httpUpstreams<Upstream extends { kind?: string | undefined }>(
  upstreams: Readonly<Record<string, Upstream>> | undefined,
): Record<string, Exclude<Upstream, { kind: 'mock' }>> | undefined {
  if (upstreams === undefined || servesMock(upstreams)) return undefined;
  return upstreams as Record<string, Exclude<Upstream, { kind: 'mock' }>>;
}

/** Whether the config's upstreams are the built-in mock, named on purpose. */
function servesMock(upstreams: Readonly<Record<string, { kind?: string | undefined }>> | undefined): boolean {
  return upstreams !== undefined && Object.values(upstreams).some((upstream) => upstream.kind === 'mock');
}

/** One service tier's prices: the classes it names replace the model's standard ones. */
const tierPriceSchema = fields({
  inputPerMTok: pricePerMTok.optional().describe('USD per million input tokens at this tier.'),
  cachedInputPerMTok: pricePerMTok.optional().describe('USD per million cache-read input tokens at this tier.'),
  cacheWritePerMTok: pricePerMTok.optional().describe('USD per million cache-write input tokens at this tier.'),
  cacheWrite1hPerMTok: pricePerMTok.optional().describe('Cache write with a 1-hour lifetime at this tier.'),
  outputPerMTok: pricePerMTok.optional().describe('USD per million output tokens at this tier.'),
});

/** The config's price source (`prices`). */
export const pricesSchema = fields({
  source: nonEmptyString().describe(
    "An http(s) URL or a file path holding prices in LiteLLM's model_prices_and_context_window.json format.",
  ),
  refresh: duration.optional().describe('How often the source is read again. Default: "1h".'),
});

const GEO_MULTIPLIER = 'must be a multiplier from 1 to 10';

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
    ['o200k_base', 'cl100k_base', 'llama3', 'tekken', 'qwen2', 'gemma', 'approximate'],
    'must be "o200k_base", "cl100k_base", "llama3", "tekken", "qwen2", "gemma" or "approximate"',
  )
    .optional()
    .describe(
      'How text is counted: `o200k_base`, `cl100k_base`, `llama3`, `tekken` (Mistral), `qwen2` or `gemma` (named here: ' +
        'the provider\'s own, counted exactly, the hard stop cuts on it) or `approximate`. Default: "o200k_base" on an ' +
        'OpenAI-speaking upstream (an estimate; the hard stop cuts only on a lower bound), "approximate" elsewhere.',
    ),
  ownTokenizer: trueOrFalse
    .optional()
    .describe(
      "Whether `tokenizer` is the provider's own (its output counts are exact). Default: true when `tokenizer` is given.",
    ),
  serviceTiers: recordOf(tierPriceSchema)
    .optional()
    .describe(
      'Prices per service tier, by the name the answers give it (`flex`, `priority`, `batch`): a request asking a ' +
        'tier reserves at its prices, and is billed at the tier its answer says served it. Default: none.',
    ),
  speeds: recordOf(tierPriceSchema)
    .optional()
    .describe(
      "Prices per speed, by the name the answers give it (Anthropic's `usage.speed`: `fast`): an answer that says it " +
        'ran at one is billed at them across its whole context window; a cache class not named is the standard one ' +
        "times the speed's input over the standard input. Default: none.",
    ),
  inferenceGeos: recordOf(z.number(GEO_MULTIPLIER).min(1, GEO_MULTIPLIER).max(10, GEO_MULTIPLIER))
    .optional()
    .describe(
      "Multipliers of every price by where inference ran, by the name the answers give it (Anthropic's " +
        '`usage.inference_geo`: `{ "us": 1.1 }`). Default: none.',
    ),
  kind: choice(
    ['generation', 'embedding', 'transcription', 'speech', 'image'],
    'must be "generation", "embedding", "transcription", "speech" or "image"',
  )
    .optional()
    .describe(
      'What the model does: "embedding" models are served on /v1/embeddings only (priced on input), "transcription" on ' +
        '/v1/audio/transcriptions, "speech" on /v1/audio/speech, "image" on /v1/images/generations, "generation" ' +
        'models on the other provider routes. Default: "generation".',
    ),
  audioInputPerMTok: pricePerMTok.optional().describe('USD per million audio tokens read. Default: inputPerMTok.'),
  audioOutputPerMTok: pricePerMTok.optional().describe('USD per million audio tokens written. Default: outputPerMTok.'),
  imageInputPerMTok: pricePerMTok.optional().describe('USD per million image tokens read. Default: inputPerMTok.'),
  imageOutputPerMTok: pricePerMTok.optional().describe('USD per million image tokens written. Default: outputPerMTok.'),
  audioPerMinute: pricePerMTok
    .optional()
    .describe('USD per minute of audio, billed to the second (whisper-1: 0.006). Default: not billed by the minute.'),
  perMCharacters: pricePerMTok
    .optional()
    .describe('USD per million characters of text (tts-1: 15). Default: not billed per character.'),
  perImage: recordOf(pricePerMTok)
    .optional()
    .describe(
      'USD per image by `"<quality> <size>"` or `"<size>"` (dall-e-3: `{ "hd 1024x1792": 0.12 }`); an image of another ' +
        'quality or size is billed at the dearest. Default: not billed per image.',
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
