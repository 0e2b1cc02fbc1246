// Model prices per 1M tokens per token class, dated-id resolution, and the cost of a usage in nano-USD.
import { TollgateError } from './errors.js';
import type { Provider, TokenUsage } from './types.js';

/** USD per 1M tokens for each token class. */
export interface ModelPrice {
  provider: Provider;
  inputPerMTok: number;
  /** Cache read. Defaults to the input price when the provider has no discount. */
  cachedInputPerMTok?: number;
  /** Cache write. Defaults to the input price. */
  cacheWritePerMTok?: number;
  outputPerMTok: number;
}

/**
 * Shipped prices (USD per 1M tokens; standard tier, not batch, no long-context surcharge).
 * Sources: https://platform.openai.com/docs/pricing and https://docs.claude.com/en/docs/about-claude/pricing
 * (Anthropic cache write = 5-minute write, 1.25x input). Checked against those pages as of
 * 2025-11; re-check before relying on them, and override in code with `createPricing({ models })`.
 */
export const DEFAULT_PRICES_AS_OF = '2025-11';
export const DEFAULT_PRICES: Readonly<Record<string, ModelPrice>> = Object.freeze({
  // OpenAI
  'gpt-5.1': { provider: 'openai', inputPerMTok: 1.25, cachedInputPerMTok: 0.125, outputPerMTok: 10 },
  'gpt-5': { provider: 'openai', inputPerMTok: 1.25, cachedInputPerMTok: 0.125, outputPerMTok: 10 },
  'gpt-5-mini': { provider: 'openai', inputPerMTok: 0.25, cachedInputPerMTok: 0.025, outputPerMTok: 2 },
  'gpt-5-nano': { provider: 'openai', inputPerMTok: 0.05, cachedInputPerMTok: 0.005, outputPerMTok: 0.4 },
  'gpt-4.1': { provider: 'openai', inputPerMTok: 2, cachedInputPerMTok: 0.5, outputPerMTok: 8 },
  'gpt-4.1-mini': { provider: 'openai', inputPerMTok: 0.4, cachedInputPerMTok: 0.1, outputPerMTok: 1.6 },
  'gpt-4.1-nano': { provider: 'openai', inputPerMTok: 0.1, cachedInputPerMTok: 0.025, outputPerMTok: 0.4 },
  'gpt-4o': { provider: 'openai', inputPerMTok: 2.5, cachedInputPerMTok: 1.25, outputPerMTok: 10 },
  'gpt-4o-mini': { provider: 'openai', inputPerMTok: 0.15, cachedInputPerMTok: 0.075, outputPerMTok: 0.6 },
  'gpt-4-turbo': { provider: 'openai', inputPerMTok: 10, outputPerMTok: 30 },
  'gpt-3.5-turbo': { provider: 'openai', inputPerMTok: 0.5, outputPerMTok: 1.5 },
  o1: { provider: 'openai', inputPerMTok: 15, cachedInputPerMTok: 7.5, outputPerMTok: 60 },
  'o1-mini': { provider: 'openai', inputPerMTok: 1.1, cachedInputPerMTok: 0.55, outputPerMTok: 4.4 },
  o3: { provider: 'openai', inputPerMTok: 2, cachedInputPerMTok: 0.5, outputPerMTok: 8 },
  'o3-mini': { provider: 'openai', inputPerMTok: 1.1, cachedInputPerMTok: 0.55, outputPerMTok: 4.4 },
  'o4-mini': { provider: 'openai', inputPerMTok: 1.1, cachedInputPerMTok: 0.275, outputPerMTok: 4.4 },
  // Anthropic
  'claude-opus-4-5': { provider: 'anthropic', inputPerMTok: 5, cachedInputPerMTok: 0.5, cacheWritePerMTok: 6.25, outputPerMTok: 25 },
  'claude-opus-4-1': { provider: 'anthropic', inputPerMTok: 15, cachedInputPerMTok: 1.5, cacheWritePerMTok: 18.75, outputPerMTok: 75 },
  'claude-opus-4': { provider: 'anthropic', inputPerMTok: 15, cachedInputPerMTok: 1.5, cacheWritePerMTok: 18.75, outputPerMTok: 75 },
  'claude-sonnet-4-5': { provider: 'anthropic', inputPerMTok: 3, cachedInputPerMTok: 0.3, cacheWritePerMTok: 3.75, outputPerMTok: 15 },
  'claude-sonnet-4': { provider: 'anthropic', inputPerMTok: 3, cachedInputPerMTok: 0.3, cacheWritePerMTok: 3.75, outputPerMTok: 15 },
  'claude-3-7-sonnet': { provider: 'anthropic', inputPerMTok: 3, cachedInputPerMTok: 0.3, cacheWritePerMTok: 3.75, outputPerMTok: 15 },
  'claude-haiku-4-5': { provider: 'anthropic', inputPerMTok: 1, cachedInputPerMTok: 0.1, cacheWritePerMTok: 1.25, outputPerMTok: 5 },
  'claude-3-5-haiku': { provider: 'anthropic', inputPerMTok: 0.8, cachedInputPerMTok: 0.08, cacheWritePerMTok: 1, outputPerMTok: 4 },
  'claude-3-haiku': { provider: 'anthropic', inputPerMTok: 0.25, cachedInputPerMTok: 0.03, cacheWritePerMTok: 0.3, outputPerMTok: 1.25 },
});

/** Prices resolved to integer micro-USD per 1M tokens (= pico-USD per token), so sums stay exact. */
export interface ResolvedPrice {
  /** The family id the price was found under. */
  model: string;
  provider: Provider;
  inputMicro: number;
  cachedInputMicro: number;
  cacheWriteMicro: number;
  outputMicro: number;
}

export interface PricingOptions {
  /** Added to (or overriding) the shipped table, by model id. */
  models?: Record<string, ModelPrice>;
  /** Leave the shipped table out entirely. @default false */
  replaceDefaults?: boolean;
  /** Price for models in no table. Without it an unknown model is an error: never free. */
  defaultPrice?: ModelPrice;
}

export interface Pricing {
  /** The price of `model` (dated ids resolve to their family), or undefined when unknown and no default is set. */
  find(model: string): ResolvedPrice | undefined;
  /** Like `find`, but an unknown model throws `UnknownModelError`. */
  get(model: string): ResolvedPrice;
  /** Every model id in the table. */
  models(): string[];
}

export class UnknownModelError extends Error {
  override readonly name = 'UnknownModelError';
  constructor(readonly model: string) {
    super(`The model "${model}" has no price: add it to the pricing table or set a default price.`);
  }
}

/** Longer than any real model id: longer ids are not resolved to a family, and not cached. */
const MAX_MODEL_ID_LENGTH = 256;

const DATE_SUFFIXES = [/-\d{4}-\d{2}-\d{2}$/, /-\d{8}$/, /-latest$/, /-preview$/, /-\d{4}$/];

/** Candidate family ids for a dated or aliased model id, most specific first. */
export function modelFamilies(model: string): string[] {
  const out = [model];
  // Ids come from request bodies: one of megabytes made of date-like suffixes would give every caller
  // hundreds of thousands of candidates to walk. No real id is that long; it stands for itself.
  if (model.length > MAX_MODEL_ID_LENGTH) return out;
  let current = model;
  for (let changed = true; changed; ) {
    changed = false;
    for (const suffix of DATE_SUFFIXES) {
      const next = current.replace(suffix, '');
      if (next !== current && next.length > 0) {
        out.push(next);
        current = next;
        changed = true;
      }
    }
  }
  return out;
}

function toMicro(usd: number | undefined, fallback: number, field: string, model: string): number {
  const value = usd ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new TollgateError('ERR_TG_CORE_INVALID_PRICE', `price ${field} of model "${model}" must be a non-negative number of USD per 1M tokens; got ${JSON.stringify(usd)}`);
  }
  return Math.round(value * 1_000_000);
}

function resolvePrice(model: string, price: ModelPrice): ResolvedPrice {
  if (typeof price !== 'object' || price === null) throw new TollgateError('ERR_TG_CORE_INVALID_PRICE', `price of model "${model}" must be an object`);
  const inputMicro = toMicro(price.inputPerMTok, Number.NaN, 'inputPerMTok', model);
  return {
    model,
    provider: price.provider,
    inputMicro,
    cachedInputMicro: toMicro(price.cachedInputPerMTok, price.inputPerMTok, 'cachedInputPerMTok', model),
    cacheWriteMicro: toMicro(price.cacheWritePerMTok, price.inputPerMTok, 'cacheWritePerMTok', model),
    outputMicro: toMicro(price.outputPerMTok, Number.NaN, 'outputPerMTok', model),
  };
}

/** A pricing table: the shipped prices plus the user's, resolved and validated once. */
export function createPricing(options: PricingOptions = {}): Pricing {
  const table = new Map<string, ResolvedPrice>();
  const source = { ...(options.replaceDefaults ? {} : DEFAULT_PRICES), ...options.models };
  for (const [model, price] of Object.entries(source)) table.set(model, resolvePrice(model, price));
  const fallback = options.defaultPrice ? resolvePrice('default', options.defaultPrice) : undefined;
  const cache = new Map<string, ResolvedPrice | undefined>();

  const find = (model: string): ResolvedPrice | undefined => {
    if (cache.has(model)) return cache.get(model);
    let found: ResolvedPrice | undefined;
    for (const family of modelFamilies(model)) {
      found = table.get(family);
      if (found) break;
    }
    found ??= fallback;
    // Model ids come from request bodies: only ids of a real length are kept, or 10,000 cached
    // megabyte-long ids would hold gigabytes.
    if (cache.size < 10_000 && model.length <= MAX_MODEL_ID_LENGTH) cache.set(model, found);
    return found;
  };

  return {
    find,
    get(model) {
      const price = find(model);
      if (!price) throw new UnknownModelError(model);
      return price;
    },
    models: () => [...table.keys()],
  };
}

/**
 * Cost of a usage in nano-USD, rounded up once. Each token is priced once in its class:
 * uncached input, cached input (cache read), cache write, output (reasoning included).
 */
export function costNanoUsd(usage: TokenUsage, price: ResolvedPrice): number {
  const cached = Math.max(0, usage.cachedInputTokens);
  const written = Math.max(0, usage.cacheWriteTokens);
  const uncached = Math.max(0, usage.inputTokens - cached - written);
  // tokens x micro-USD per 1M tokens = pico-USD; / 1000 = nano-USD.
  const pico = uncached * price.inputMicro + cached * price.cachedInputMicro + written * price.cacheWriteMicro + Math.max(0, usage.outputTokens) * price.outputMicro;
  return Math.ceil(pico / 1000);
}

/**
 * Upper bound of a request's cost before the call: every input token in its priciest class (a
 * cache write costs more than plain input at Anthropic), the whole output cap used.
 */
export function maxCostNanoUsd(inputTokens: number, maxOutputTokens: number, price: ResolvedPrice): number {
  const inputMicro = Math.max(price.inputMicro, price.cachedInputMicro, price.cacheWriteMicro);
  return Math.ceil((Math.max(0, inputTokens) * inputMicro + Math.max(0, maxOutputTokens) * price.outputMicro) / 1000);
}

/** The most output tokens `budgetNano` buys after paying for `inputTokens` (never negative). */
export function affordableOutputTokens(budgetNano: number, inputTokens: number, price: ResolvedPrice): number {
  const inputNano = maxCostNanoUsd(inputTokens, 0, price);
  if (price.outputMicro === 0) return Number.MAX_SAFE_INTEGER;
  const left = budgetNano - inputNano;
  if (left <= 0) return 0;
  return Math.max(0, Math.floor((left * 1000) / price.outputMicro));
}
