// A price file (LiteLLM's model_prices_and_context_window.json, or @pydantic/genai-prices' data) read into rows.
import { catalogueRow, compileMatch } from './catalogue-rows.js';
import type { Matcher } from './catalogue-rows.js';
import { GENAI_PROVIDERS, genaiRows } from './genai-prices.js';
import { TollgateError } from './errors.js';
import type { ModelKind, ModelPrice, TierPrice } from './pricing.js';

/**
 * LiteLLM's providers whose rows are taken, to the catalogue's provider (the upstream kind that serves them), in the
 * order a row wins over another of the same id: a provider's own API first (`gemini/gemini-2.5-pro` is Google's
 * price; the unprefixed row of that id is Vertex's, `vertex_ai-language-models`, served by no upstream here), Azure's
 * only for an id no provider's own row prices. Vertex, Bedrock and the rest are served by no upstream here.
 */
const PROVIDERS: Readonly<Record<string, string>> = {
  openai: 'openai',
  'text-completion-openai': 'openai',
  anthropic: 'anthropic',
  gemini: 'google',
  mistral: 'mistral',
  azure: 'azure-openai',
};
const RANK: Readonly<Record<string, number>> = { 'azure-openai': 1 };

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

/** A price file's cost rows by model id, its match rules, and the rows it holds that were refused (named, with why). */
export interface SourcePrices {
  rows: Record<string, ModelPrice>;
  /** Match rules for dated and aliased ids, in the file's order (a genai-prices file's). */
  matchers: { id: string; matches: Matcher }[];
  refused: { model: string; reason: string }[];
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

/**
 * One row of the file as a catalogue row; undefined when it is not one this gateway serves; a string saying why when it
 * is one and cannot be taken (a cost the provider bills is missing: taking it would bill that class at $0).
 */
function rowOf(id: string, row: Record<string, unknown>, provider: string): ModelPrice | string | undefined {
  const kind = MODES[typeof row.mode === 'string' ? row.mode : 'chat'];
  if (kind === undefined) return undefined;
  const costs = costsOf(row, id, '');
  if (costs.inputPerMTok === undefined) return 'no input_cost_per_token';
  if (kind === 'generation' && costs.outputPerMTok === undefined) return 'no output_cost_per_token';
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

/** The rows of a LiteLLM file, keyed by id without the provider prefix, the better-ranked provider's where two meet. */
function readLiteLlm(file: Record<string, unknown>): SourcePrices {
  const rows: Record<string, ModelPrice> = {};
  const refusedRows: SourcePrices['refused'] = [];
  for (const key of Object.keys(file).sort()) {
    const row = file[key];
    if (typeof row !== 'object' || row === null || key === 'sample_spec') continue;
    const provider = PROVIDERS[String((row as Record<string, unknown>).litellm_provider)];
    if (provider === undefined) continue;
    const price = rowOf(key, row as Record<string, unknown>, provider);
    if (price === undefined) continue;
    if (typeof price === 'string') {
      refusedRows.push({ model: key, reason: price });
      continue;
    }
    const slash = key.indexOf('/');
    const id = slash > 0 ? key.slice(slash + 1) : key;
    const held = rows[id];
    if (held !== undefined && (RANK[held.provider] ?? 0) <= (RANK[provider] ?? 0)) continue;
    rows[id] = price;
  }
  return { rows, matchers: [], refused: refusedRows };
}

/** The rows of a @pydantic/genai-prices data file (a list of providers), with its match rules. */
function readGenai(file: readonly unknown[]): SourcePrices {
  const { rows, skipped } = genaiRows(file, new Date().toISOString().slice(0, 10));
  const prices: Record<string, ModelPrice> = {};
  for (const row of rows) prices[row.id] ??= catalogueRow(row, new Date().toISOString().slice(0, 10), undefined);
  const matchers = rows.map((row) => ({ id: row.id, matches: compileMatch(row.match) }));
  const refusedRows = skipped.filter((entry) => entry.reason.startsWith('no '));
  return { rows: prices, matchers, refused: refusedRows };
}

/**
 * Reads a price file: LiteLLM's `model_prices_and_context_window.json` (an object of model ids) or @pydantic/genai-prices'
 * `data.json` (a list of providers). Each row of a provider served here is taken; a row missing a cost its provider
 * bills is left out and named in `refused`. A file that is no JSON, or whose costs are not all numbers >= 0, is refused
 * whole (TollgateError).
 */
export function readSourcePrices(text: string): SourcePrices {
  let file: unknown;
  try {
    file = JSON.parse(text);
  } catch (error) {
    throw refused(`not JSON (${(error as Error).message})`);
  }
  if (typeof file !== 'object' || file === null)
    throw refused(
      `must be LiteLLM's model_prices_and_context_window.json (an object of model ids) or @pydantic/genai-prices' ` +
        `data.json (a list of providers); got ${file === null ? 'null' : `a ${typeof file}`}`,
    );
  const source = Array.isArray(file) ? readGenai(file) : readLiteLlm(file as Record<string, unknown>);
  if (Object.keys(source.rows).length === 0) throw refused('holds no priced model of a provider served here');
  return source;
}

/**
 * The part of a price file `readSourcePrices` reads (the same rows, refusals and version): the rows of providers served
 * here. The whole file is checked first, refused the same way. A large file is cut down to it in a worker thread
 * (`price-read.ts`), so that the event loop parses little.
 */
export function servedPart(text: string): string {
  readSourcePrices(text);
  const file = JSON.parse(text) as Record<string, unknown> | unknown[];
  if (Array.isArray(file))
    return JSON.stringify(
      file.filter((entry) => GENAI_PROVIDERS[String((entry as { id?: unknown } | null)?.id)] !== undefined),
    );
  const part: Record<string, unknown> = {};
  for (const [key, row] of Object.entries(file))
    if (typeof row === 'object' && row !== null && PROVIDERS[String((row as Record<string, unknown>).litellm_provider)])
      part[key] = row;
  return JSON.stringify(part);
}
