// The model catalogue: the one place that says, per model family, who serves it, what it costs and how it counts.
import { MAINTAINED_AS_OF, MAINTAINED_ROWS, MAINTAINED_SOURCE } from './catalogue-maintained.js';
import { catalogueRow, compileMatch } from './catalogue-rows.js';
import type { Matcher } from './catalogue-rows.js';
import type { ModelPrice, TierPrice } from './pricing.js';

/**
 * Where the shipped prices come from: the maintained source's rows (`pnpm prices:update` regenerates
 * catalogue-maintained.ts), our own fields laid over them (output limits, tokenizers, service tiers) and our own rows
 * only for models it has none for. See docs/prices.md.
 */
export const DEFAULT_PRICES_SOURCE = MAINTAINED_SOURCE;
export const DEFAULT_PRICES_AS_OF = MAINTAINED_AS_OF;

const O200K = 'o200k_base' as const;
const CL100K = 'cl100k_base' as const;

/**
 * Our fields over a maintained row, by its id or an id its match rule takes (then served under that id too, so dated
 * ids resolve to it as before): documented maximum output and context window (ours win: the source has no output
 * limit, and an embedding request's window is its 300,000-token request limit), and the tokenizer where it is public.
 */
const OUR_FIELDS: Readonly<Record<string, Partial<ModelPrice>>> = {
  'gpt-5.1': { maxOutputTokens: 128_000, contextWindow: 400_000, tokenizer: O200K },
  'gpt-5': { maxOutputTokens: 128_000, contextWindow: 400_000, tokenizer: O200K },
  'gpt-5-mini': { maxOutputTokens: 128_000, contextWindow: 400_000, tokenizer: O200K },
  'gpt-5-nano': { maxOutputTokens: 128_000, contextWindow: 400_000, tokenizer: O200K },
  'gpt-4.1': { maxOutputTokens: 32_768, contextWindow: 1_047_576, tokenizer: O200K },
  'gpt-4.1-mini': { maxOutputTokens: 32_768, contextWindow: 1_047_576, tokenizer: O200K },
  'gpt-4.1-nano': { maxOutputTokens: 32_768, contextWindow: 1_047_576, tokenizer: O200K },
  'gpt-4o': { maxOutputTokens: 16_384, contextWindow: 128_000, tokenizer: O200K },
  'gpt-4o-mini': { maxOutputTokens: 16_384, contextWindow: 128_000, tokenizer: O200K },
  'chatgpt-4o-latest': { maxOutputTokens: 16_384, contextWindow: 128_000, tokenizer: O200K },
  'gpt-4': { maxOutputTokens: 8_192, contextWindow: 8_192, tokenizer: CL100K },
  'gpt-4-turbo': { maxOutputTokens: 4_096, contextWindow: 128_000, tokenizer: CL100K },
  'gpt-3.5-turbo': { maxOutputTokens: 4_096, contextWindow: 16_385, tokenizer: CL100K },
  o1: { maxOutputTokens: 100_000, contextWindow: 200_000, tokenizer: O200K },
  'o1-mini': { maxOutputTokens: 65_536, contextWindow: 128_000, tokenizer: O200K },
  o3: { maxOutputTokens: 100_000, contextWindow: 200_000, tokenizer: O200K },
  'o3-mini': { maxOutputTokens: 100_000, contextWindow: 200_000, tokenizer: O200K },
  'o4-mini': { maxOutputTokens: 100_000, contextWindow: 200_000, tokenizer: O200K },
  'text-embedding-3-small': { kind: 'embedding', contextWindow: 300_000, tokenizer: CL100K },
  'text-embedding-3-large': { kind: 'embedding', contextWindow: 300_000, tokenizer: CL100K },
  'text-embedding-ada-002': { kind: 'embedding', contextWindow: 300_000, tokenizer: CL100K },
  'claude-opus-4-5': { maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-opus-4-1': { maxOutputTokens: 32_000, contextWindow: 200_000 },
  'claude-opus-4': { maxOutputTokens: 32_000, contextWindow: 200_000 },
  'claude-sonnet-4-5': { maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-sonnet-4': { maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-3-7-sonnet': { maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-haiku-4-5': { maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-3-5-haiku': { maxOutputTokens: 8_192, contextWindow: 200_000 },
  'claude-3-haiku': { maxOutputTokens: 4_096, contextWindow: 200_000 },
  'gemini-2.5-pro': { maxOutputTokens: 65_536, contextWindow: 1_048_576 },
  'gemini-2.5-flash': { maxOutputTokens: 65_536, contextWindow: 1_048_576 },
  'gemini-2.5-flash-lite': { maxOutputTokens: 65_536, contextWindow: 1_048_576 },
  'gemini-2.0-flash': { maxOutputTokens: 8_192, contextWindow: 1_048_576 },
  'mistral-large': { maxOutputTokens: 131_072, contextWindow: 131_072 },
  'mistral-medium': { maxOutputTokens: 131_072, contextWindow: 131_072 },
  codestral: { maxOutputTokens: 262_144, contextWindow: 262_144 },
  'ministral-8b': { maxOutputTokens: 131_072, contextWindow: 131_072 },
  'ministral-3b': { maxOutputTokens: 131_072, contextWindow: 131_072 },
  'open-mistral-nemo': { maxOutputTokens: 131_072, contextWindow: 131_072 },
};

/**
 * Models the maintained source has no row for, priced by us (a row of the source, when one appears, wins).
 * - `gpt-6.1-sol` (Codex's default model): OpenAI prices it as `gpt-6-sol`, with the same long-context prices above
 *   272K input tokens; to be replaced by the source's row when it lists it.
 * - `mistral-small`: Mistral Small 3.2 (2506), as of 2025-11 (mistral.ai/pricing); the source names only dated ids.
 * - `tts-1`, `tts-1-hd`, `dall-e-3`, `dall-e-2`: billed per character and per image, units the source does not price;
 *   OpenAI's pricing page (platform.openai.com/docs/pricing, "Audio models" / "Image generation"), as of 2025-11.
 */
const OUR_ROWS: Readonly<Record<string, ModelPrice | { sameAs: string }>> = {
  'gpt-6.1-sol': { sameAs: 'gpt-6-sol' },
  'mistral-small': {
    provider: 'mistral',
    inputPerMTok: 0.1,
    outputPerMTok: 0.3,
    maxOutputTokens: 131_072,
    contextWindow: 131_072,
  },
  'tts-1': { provider: 'openai', kind: 'speech', inputPerMTok: 0, outputPerMTok: 0, perMCharacters: 15 },
  'tts-1-hd': { provider: 'openai', kind: 'speech', inputPerMTok: 0, outputPerMTok: 0, perMCharacters: 30 },
  'dall-e-3': {
    provider: 'openai',
    kind: 'image',
    inputPerMTok: 0,
    outputPerMTok: 0,
    perImage: {
      'standard 1024x1024': 0.04,
      'standard 1024x1792': 0.08,
      'standard 1792x1024': 0.08,
      'hd 1024x1024': 0.08,
      'hd 1024x1792': 0.12,
      'hd 1792x1024': 0.12,
    },
  },
  'dall-e-2': {
    provider: 'openai',
    kind: 'image',
    inputPerMTok: 0,
    outputPerMTok: 0,
    perImage: { '256x256': 0.016, '512x512': 0.018, '1024x1024': 0.02 },
  },
};

/** OpenAI's priority prices where its pricing page gives them (USD per 1M tokens: input, cached input, output). */
const PRIORITY: Readonly<Record<string, readonly [number, number, number]>> = {
  'gpt-5.1': [2.5, 0.25, 20],
  'gpt-5': [2.5, 0.25, 20],
  'gpt-5-mini': [0.45, 0.045, 3.6],
  'gpt-4.1': [3.5, 0.875, 14],
  'gpt-4.1-mini': [0.7, 0.175, 2.8],
  'gpt-4.1-nano': [0.2, 0.05, 0.8],
  'gpt-4o': [4.25, 2.125, 17],
  'gpt-4o-mini': [0.25, 0.125, 1],
  o3: [3.5, 0.875, 14],
  'o4-mini': [2, 0.5, 8],
};
/**
 * A priority price OpenAI has not listed for a model is taken at twice the standard one, the highest of its listed
 * ratios (1.7x to 2x): never billed under what the provider charges.
 */
const PRIORITY_UNLISTED = 2;
/** Models OpenAI serves at the Flex tier (half the standard prices, as Batch is). */
const FLEX = /^(o3|o4-mini|gpt-5|gpt-6)/;

function scaled(price: TierPrice, factor: number): TierPrice {
  const out: TierPrice = {};
  for (const [field, usd] of Object.entries(price) as [keyof TierPrice, number | undefined][])
    if (usd !== undefined) out[field] = Math.round(usd * factor * 1e6) / 1e6;
  return out;
}

/** The service tiers OpenAI and Anthropic bill (`service_tier` in OpenAI's answers; Batch at half price for both). */
function serviceTiersOf(id: string, row: ModelPrice): ModelPrice['serviceTiers'] {
  if (
    (row.kind !== undefined && row.kind !== 'generation') ||
    (row.provider !== 'openai' && row.provider !== 'anthropic')
  )
    return row.serviceTiers;
  const standard: TierPrice = {
    inputPerMTok: row.inputPerMTok,
    ...(row.cachedInputPerMTok === undefined ? {} : { cachedInputPerMTok: row.cachedInputPerMTok }),
    outputPerMTok: row.outputPerMTok,
  };
  const tiers: NonNullable<ModelPrice['serviceTiers']> = { batch: scaled(standard, 0.5) };
  if (row.provider === 'openai') {
    const listed = PRIORITY[id];
    tiers.priority = listed
      ? { inputPerMTok: listed[0], cachedInputPerMTok: listed[1], outputPerMTok: listed[2] }
      : scaled(standard, PRIORITY_UNLISTED);
    if (FLEX.test(id)) tiers.flex = scaled(standard, 0.5);
  }
  return { ...tiers, ...row.serviceTiers };
}

/**
 * Anthropic's fast mode (`usage.speed: "fast"`), USD per 1M tokens (input, output), across the whole context window;
 * the caching multipliers apply on top. Opus 5 and Opus 4.8: the pricing page's fast-mode table. Opus 5.5 serves fast
 * mode (Claude Code's fast-mode page) but no page read lists its price: taken at twice the standard, the ratio of every
 * model the pricing page lists, so a fast call is not billed at the standard price. See docs/prices.md.
 */
const ANTHROPIC_FAST: Readonly<Record<string, TierPrice>> = {
  'claude-opus-5': { inputPerMTok: 10, outputPerMTok: 50 },
  'claude-opus-4-8': { inputPerMTok: 10, outputPerMTok: 50 },
  'claude-opus-5-5': { inputPerMTok: 8, outputPerMTok: 40 },
};
/**
 * Anthropic's US-only inference (`usage.inference_geo: "us"`): 1.1x every token price for Claude Opus 4.6, Sonnet 4.6
 * and later models (the pricing page's data residency section); earlier models keep their prices.
 */
const ANTHROPIC_US_ONLY = /^claude-(opus-4-[6-9]|sonnet-4-[6-9]|(opus|sonnet|haiku|fable|mythos)-[5-9])/;
const US_ONLY_MULTIPLIER = 1.1;

/** The speeds and regions Anthropic bills apart, over what the row already names. */
function anthropicModifiersOf(id: string, row: ModelPrice): Partial<ModelPrice> {
  if (row.provider !== 'anthropic' || row.kind === 'embedding') return {};
  const fast = ANTHROPIC_FAST[id];
  return {
    ...(fast ? { speeds: { fast, ...row.speeds } } : {}),
    ...(ANTHROPIC_US_ONLY.test(id) ? { inferenceGeos: { us: US_ONLY_MULTIPLIER, ...row.inferenceGeos } } : {}),
  };
}

/** The catalogue on `day` (YYYY-MM-DD): every row by id, and the match rules of the maintained rows in their order. */
function buildCatalogue(day: string): {
  prices: Readonly<Record<string, ModelPrice>>;
  matchers: readonly { id: string; matches: Matcher }[];
} {
  const prices: Record<string, ModelPrice> = {};
  const matchers = MAINTAINED_ROWS.map((row) => ({ id: row.id, row, matches: compileMatch(row.match) }));
  const maintainedFor = (id: string) => matchers.find((m) => m.id === id) ?? matchers.find((m) => m.matches(id));
  for (const { id, row } of matchers) prices[id] = catalogueRow(row, day, OUR_FIELDS[id]);
  for (const [id, fields] of Object.entries(OUR_FIELDS)) {
    if (prices[id]) continue;
    const maintained = maintainedFor(id);
    if (!maintained) throw new Error(`catalogue: our fields for ${id} name no row of ${MAINTAINED_SOURCE}`);
    prices[id] = catalogueRow(maintained.row, day, fields);
  }
  for (const [id, row] of Object.entries(OUR_ROWS)) {
    if (maintainedFor(id)) continue;
    prices[id] = 'sameAs' in row ? prices[row.sameAs]! : row;
  }
  for (const [id, row] of Object.entries(prices)) {
    const serviceTiers = serviceTiersOf(id, row);
    prices[id] = { ...row, ...(serviceTiers ? { serviceTiers } : {}), ...anthropicModifiersOf(id, row) };
  }
  return {
    prices: Object.freeze(prices),
    matchers: matchers.map(({ id, matches }) => ({ id, matches })),
  };
}

const SHIPPED = buildCatalogue(new Date().toISOString().slice(0, 10));

/** The shipped rows (USD per 1M tokens, standard tier), by model id, with their tiers, limits and tokenizers. */
export const DEFAULT_PRICES: Readonly<Record<string, ModelPrice>> = SHIPPED.prices;
/** The maintained source's match rules for dated and aliased ids, tried in its order after an id and its family. */
export const DEFAULT_MATCHERS = SHIPPED.matchers;
