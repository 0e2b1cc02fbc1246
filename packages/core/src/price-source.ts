// A maintained price file (LiteLLM's model_prices_and_context_window.json format) read into catalogue rows.
import { createHash } from 'node:crypto';
import { DEFAULT_PRICES } from './catalogue.js';
import { TollgateError } from './errors.js';
import type { ModelKind, ModelPrice, TierPrice } from './pricing.js';

/** LiteLLM's names for a provider the catalogue names otherwise. */
const LITELLM_ALIASES: Readonly<Record<string, string>> = { 'text-completion-openai': 'openai', gemini: 'google' };

/**
 * The providers whose rows are taken, LiteLLM's name to the catalogue's: those the shipped catalogue prices (an adapter
 * serves them), by their own name or LiteLLM's alias; others are served by no adapter here.
 */
const PROVIDERS: Readonly<Record<string, string>> = Object.fromEntries([
  ...[...new Set(Object.values(DEFAULT_PRICES).map((price) => price.provider))].map((name) => [name, name]),
  ...Object.entries(LITELLM_ALIASES),
]);

/** LiteLLM's modes served by the provider routes; image, audio, rerank and moderation rows are left out. */
const MODES: Readonly<Record<string, ModelKind>> = {
  chat: 'generation',
  completion: 'generation',
  responses: 'generation',
  embedding: 'embedding',
};

/** The cost fields of one row (USD per token) and the catalogue's field (USD per 1M tokens) each becomes. */
const COSTS = [
  ['input_cost_per_token', 'inputPerMTok'],
  ['cache_read_input_token_cost', 'cachedInputPerMTok'],
  ['cache_creation_input_token_cost', 'cacheWritePerMTok'],
  ['cache_creation_input_token_cost_above_1hr', 'cacheWrite1hPerMTok'],
  ['output_cost_per_token', 'outputPerMTok'],
] as const;

/** LiteLLM's suffix of a tier's costs, and the tier's name as the provider's answer says it (`service_tier`). */
const TIERS = [
  ['_flex', 'flex'],
  ['_priority', 'priority'],
  ['_batches', 'batch'],
] as const;

/** A price file's cost rows by model id, and its version: a hash of those rows, the same in every process. */
export interface SourcePrices {
  rows: Record<string, ModelPrice>;
  version: string;
}

function refused(message: string): TollgateError {
  return new TollgateError('ERR_TG_CORE_INVALID_PRICE', `prices source: ${message}`);
}

/** A cost as USD per 1M tokens; a cost that is present and no finite number >= 0 refuses the whole file. */
function perMillion(row: Record<string, unknown>, field: string, model: string): number | undefined {
  const value = row[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw refused(`${model}.${field} must be a number of USD per token >= 0; got ${JSON.stringify(value)}`);
  // Rounded to the catalogue's exactness (micro-USD per 1M tokens): 2.5e-6 reads back as 2.5, not 2.4999999999999996.
  return Math.round(value * 1e12) / 1e6;
}

function costsOf(row: Record<string, unknown>, model: string, suffix: string): TierPrice {
  const costs: TierPrice = {};
  for (const [from, to] of COSTS) {
    const usd = perMillion(row, from + suffix, model);
    if (usd !== undefined) costs[to] = usd;
  }
  return costs;
}

function tokenLimit(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** One row of the file as a catalogue row, or undefined when it is not one this gateway serves. */
function rowOf(id: string, row: Record<string, unknown>): ModelPrice | undefined {
  const provider = typeof row.litellm_provider === 'string' ? PROVIDERS[row.litellm_provider] : undefined;
  const kind = MODES[typeof row.mode === 'string' ? row.mode : 'chat'];
  if (provider === undefined || kind === undefined) return undefined;
  const costs = costsOf(row, id, '');
  if (costs.inputPerMTok === undefined) return undefined;
  const price: ModelPrice = { provider, inputPerMTok: costs.inputPerMTok, outputPerMTok: costs.outputPerMTok ?? 0 };
  Object.assign(price, costs);
  if (kind === 'embedding') price.kind = kind;
  const maxOutput = tokenLimit(row.max_output_tokens);
  if (maxOutput !== undefined) price.maxOutputTokens = maxOutput;
  const window = tokenLimit(row.max_input_tokens);
  // LiteLLM's max_input_tokens is the window the prompt and the answer share (128,000 for gpt-4o).
  if (window !== undefined) price.contextWindow = window;
  for (const [suffix, tier] of TIERS) {
    const tierCosts = costsOf(row, id, suffix);
    if (Object.keys(tierCosts).length > 0) (price.serviceTiers ??= {})[tier] = tierCosts;
  }
  return price;
}

/**
 * Reads a price file: each row of a provider served here, keyed by its id without LiteLLM's provider prefix
 * (`gemini/gemini-2.5-pro` is `gemini-2.5-pro`; a row named without the prefix wins). A file that is no JSON
 * object, or one whose costs are not all numbers >= 0, is refused whole (TollgateError).
 */
export function readSourcePrices(text: string): SourcePrices {
  let file: unknown;
  try {
    file = JSON.parse(text);
  } catch (error) {
    throw refused(`not JSON (${(error as Error).message})`);
  }
  // A list is another format (@pydantic/genai-prices' data.json is a list of providers, with match rules and prices by
  // prompt length and date): the message names the one format read, so that an operator knows what to point at.
  if (typeof file !== 'object' || file === null || Array.isArray(file))
    throw refused(
      `must be a JSON object of model ids to their prices, in LiteLLM's model_prices_and_context_window.json format; ` +
        `got ${Array.isArray(file) ? 'a list' : file === null ? 'null' : `a ${typeof file}`}`,
    );
  const rows: Record<string, ModelPrice> = {};
  const ids = Object.keys(file).sort();
  for (const key of ids) {
    const row = (file as Record<string, unknown>)[key];
    if (typeof row !== 'object' || row === null || key === 'sample_spec') continue;
    const price = rowOf(key, row as Record<string, unknown>);
    if (price === undefined) continue;
    const slash = key.indexOf('/');
    const id = slash > 0 && PROVIDERS[key.slice(0, slash)] !== undefined ? key.slice(slash + 1) : key;
    if (id !== key && (file as Record<string, unknown>)[id] !== undefined) continue;
    rows[id] = price;
  }
  if (Object.keys(rows).length === 0) throw refused('holds no priced model of a provider served here');
  // Of the rows, not the bytes: a copy that only re-orders or re-indents the file is the same version.
  const version = createHash('sha256').update(JSON.stringify(rows)).digest('hex').slice(0, 16);
  return { rows, version };
}
