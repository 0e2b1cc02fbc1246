// Model prices per 1M tokens per token class, dated-id resolution, and the cost of a usage in nano-USD.
import { TollgateError } from './errors.js';
import { MAX_USD_PER_MILLION_TOKENS, usdAmountProblem } from './money.js';
import { createHash } from 'node:crypto';
import { DEFAULT_MATCHERS, DEFAULT_PRICES } from './catalogue.js';
import { MEDIA_PRICE_FIELDS } from './catalogue-rows.js';
import { readSourcePrices } from './price-source.js';
import type { SourcePrices } from './price-source.js';
import { startPriceRefresh } from './price-refresh.js';
import type { PriceLog, PriceRefresh, PriceSourceOptions } from './price-refresh.js';
import type { TollgateContext } from './context.js';
import type { MediaUsage, Provider, TokenUsage } from './types.js';

/** USD per 1M tokens for each token class. */
export interface ModelPrice {
  provider: Provider;
  inputPerMTok: number;
  /** Cache read. Defaults to the input price when the provider has no discount. */
  cachedInputPerMTok?: number;
  /** Cache write. Defaults to the input price. */
  cacheWritePerMTok?: number;
  /** Cache write with a 1-hour lifetime (Anthropic: 2x input). Defaults to the cache write price. */
  cacheWrite1hPerMTok?: number;
  outputPerMTok: number;
  /** The most output tokens one answer may have: the cap used when a request sets none. */
  maxOutputTokens?: number;
  /** Input plus output tokens the model accepts. */
  contextWindow?: number;
  /**
   * How input is counted before the call: a BPE encoding, or `approximate` (o200k_base times the
   * meter's approximation factor) for models whose tokenizer is not public.
   * @default 'o200k_base' for an OpenAI or OpenAI-compatible provider (`openai`, `azure-openai`,
   * `openai-compatible`), 'approximate' for any other
   */
  tokenizer?: TokenizerFamily;
  /**
   * True when `tokenizer` is the provider's own, so that a count of the output is the provider's:
   * the meter's hard stop may then cut on an exact count. Otherwise it cuts only on a provable lower bound (the
   * bytes over the provider's longest token), so that an upstream honouring its cap is never cut.
   * @default true when `tokenizer` names an encoding, false when it is defaulted or `approximate`
   */
  ownTokenizer?: boolean;
  /**
   * What the model does: `generation` (chat, Responses, Messages, Gemini's generateContent) or `embedding`
   * (vectors of its input, no output tokens). A model is served only by the APIs of its kind (each adapter's
   * `modelKind`): an embedding model asked on a chat route, or a chat model on `/v1/embeddings`, is refused.
   * @default 'generation'
   */
  kind?: ModelKind;
  /**
   * Prices of the provider's service tiers, by the name its answers give them (OpenAI's `service_tier`: `flex`,
   * `priority`; `batch`). A request that asks for a tier reserves at its prices; its record is billed at the tier
   * the answer says served it. A tier named nowhere here is priced as the standard tier.
   */
  serviceTiers?: Record<string, TierPrice>;
  /**
   * Prices of a prompt longer than `aboveInputTokens` input tokens (the providers' long-context prices: the whole call
   * is billed at them). The classes it names replace the standard ones.
   */
  longContext?: { aboveInputTokens: number } & TierPrice;
  /**
   * Prices at the speeds the provider bills apart, by the name its answers give them (Anthropic's `usage.speed`:
   * `fast`): a call the answer says ran at one is billed at them across its whole context window. A cache class the
   * speed does not name is the standard one times the speed's input over the standard input (the caching
   * multipliers apply on top). A speed named nowhere here is priced as the standard speed.
   */
  speeds?: Record<string, TierPrice>;
  /**
   * Multipliers of every price by where inference ran, by the name the answers give it (Anthropic's
   * `usage.inference_geo`: `us`, 1.1). A region named nowhere here is priced at 1.
   */
  inferenceGeos?: Record<string, number>;
  /** Audio tokens read, USD per 1M (`MediaUsage.audioInputTokens`). @default the input price */
  audioInputPerMTok?: number;
  /** Audio tokens read from the prompt cache (Realtime), USD per 1M. @default the cached input price */
  cachedAudioInputPerMTok?: number;
  /** Audio tokens written, USD per 1M. @default the output price */
  audioOutputPerMTok?: number;
  /** Image tokens read, USD per 1M. @default the input price */
  imageInputPerMTok?: number;
  /** Image tokens written, USD per 1M. @default the output price */
  imageOutputPerMTok?: number;
  /** Audio billed by its length (whisper-1), USD per minute, billed to the second. @default not billed so */
  audioPerMinute?: number;
  /** Text billed by its characters (tts-1), USD per 1M characters. @default not billed so */
  perMCharacters?: number;
  /**
   * Images billed per image (dall-e-3), USD, by `"<quality> <size>"` (`"hd 1024x1792"`) or `"<size>"` for a model
   * with one quality. An image of a quality not listed (`auto`) is billed at the dearest of its size, one of a size not
   * listed at the row's dearest. @default not billed so
   */
  perImage?: Record<string, number>;
}

/** The prices of one service tier: the classes it names replace the standard tier's. */
export type TierPrice = Partial<
  Pick<
    ModelPrice,
    'inputPerMTok' | 'cachedInputPerMTok' | 'cacheWritePerMTok' | 'cacheWrite1hPerMTok' | 'outputPerMTok'
  >
>;

/** What a model does (see `ModelPrice.kind`). */
export type ModelKind = 'generation' | 'embedding' | 'transcription' | 'speech' | 'image' | 'realtime';

const MODEL_KINDS: readonly ModelKind[] = ['generation', 'embedding', 'transcription', 'speech', 'image', 'realtime'];

/**
 * The tokenizer a catalogue row names: OpenAI's encodings, the open vocabularies counted exactly by their own tables
 * (`llama3`: Llama 3; `tekken`: Mistral NeMo and later; `qwen2`: Qwen2 and 2.5; `gemma`: Gemma, also Gemini's
 * published vocabulary), or `approximate`.
 */
export type TokenizerFamily = 'o200k_base' | 'cl100k_base' | 'llama3' | 'tekken' | 'qwen2' | 'gemma' | 'approximate';

/** The shipped model catalogue (see catalogue.ts): prices, output caps, context windows, tokenizers. */
export { DEFAULT_PRICES, DEFAULT_PRICES_AS_OF, DEFAULT_PRICES_SOURCE } from './catalogue.js';

/** Prices resolved to integer micro-USD per 1M tokens (= pico-USD per token), so sums stay exact. */
export interface ResolvedPrice {
  /** The family id the price was found under. */
  model: string;
  provider: Provider;
  inputMicro: number;
  cachedInputMicro: number;
  cacheWriteMicro: number;
  /** Cache write with a 1-hour lifetime. */
  cacheWrite1hMicro: number;
  outputMicro: number;
  /** The model's documented maximum output, when the catalogue row gives one. */
  maxOutputTokens: number | undefined;
  contextWindow: number | undefined;
  tokenizer: TokenizerFamily;
  /** `tokenizer` is the provider's own: its count of the output is exact (see `ModelPrice.ownTokenizer`). */
  ownTokenizer: boolean;
  kind: ModelKind;
  /** The service tier these prices are of; absent: the standard tier. */
  tier?: string;
  /** Each service tier's prices (see `ModelPrice.serviceTiers`); absent: the model has none. */
  tiers?: Readonly<Record<string, ResolvedPrice>>;
  /** The prices of a call with more input tokens than `aboveInputTokens` (see `ModelPrice.longContext`). */
  longContext?: { aboveInputTokens: number; price: ResolvedPrice };
  /** The prices at each speed billed apart (see `ModelPrice.speeds`). */
  speeds?: Readonly<Record<string, ResolvedPrice>>;
  /** The multiplier of every price by where inference ran (see `ModelPrice.inferenceGeos`). */
  inferenceGeos?: Readonly<Record<string, number>>;
  /** The prices of media and of the units some models bill instead of tokens (see `MediaPrice`). Absent: none. */
  media?: MediaPrice;
}

/** A model's media prices in pico-USD per unit (micro-USD per 1M units), so sums stay exact (see `ModelPrice`). */
export interface MediaPrice {
  audioInputMicro: number;
  cachedAudioInputMicro: number;
  audioOutputMicro: number;
  imageInputMicro: number;
  imageOutputMicro: number;
  /** Per second of audio; absent: the model does not bill by the minute. */
  audioSecondPico?: number;
  /** Per character; absent: the model does not bill per character. */
  characterPico?: number;
  /** Per image by `"<quality> <size>"` or `"<size>"`; absent: the model does not bill per image. */
  imagePico?: Readonly<Record<string, number>>;
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
  /**
   * The price of `model` (dated ids resolve to their family) at service tier `tier` (the standard prices when the
   * model names no such tier), or undefined when unknown and no default is set.
   */
  find(model: string, tier?: string): ResolvedPrice | undefined;
  /** Like `find`, but an unknown model throws `UnknownModelError`. */
  get(model: string, tier?: string): ResolvedPrice;
  /** Every model id in the table. */
  models(): string[];
  /** Which prices are in use: a hash of the whole table (shipped, source and `models`), the same in every process. */
  readonly version: string;
  /**
   * The prices `ctx`'s request is priced with from its estimate to its settle: the table in use at the request's
   * first call, kept when a source loads meanwhile. Its `find` and `get` default to the tier the call asked for.
   */
  forRequest(ctx: TollgateContext): Pricing;
  /**
   * Loads a price file in LiteLLM's `model_prices_and_context_window.json` format as the layer between the shipped
   * table and `models` (which always win), checked whole first: a file that does not validate throws a
   * `TollgateError` and the prices in use are kept. Requests priced already keep their prices.
   */
  loadSource(text: string): PriceUpdate;
  /**
   * Loads `source` (a file path or an http(s) URL) now and every `refreshMs` through `loadSource`: a read that fails
   * or does not validate is logged at error level and the prices in use are kept. Without a source, the status says
   * the shipped table (and `models`) are in use. Its status is what `/admin/prices` shows.
   */
  refreshFrom(source: PriceSourceOptions | undefined, log: PriceLog): PriceRefresh;
}

/** The standard prices of a model, USD per 1M tokens, with its tiers': what a price change is told in. */
export interface PriceClasses {
  inputPerMTok: number;
  cachedInputPerMTok: number;
  cacheWritePerMTok: number;
  outputPerMTok: number;
  serviceTiers?: Record<string, Omit<PriceClasses, 'serviceTiers'>>;
}

/** One model whose prices a load changed: null before when it is new, null after when it is gone. */
export interface PriceChange {
  model: string;
  before: PriceClasses | null;
  after: PriceClasses | null;
}

/** What loading a price source did. */
export interface PriceUpdate {
  version: string;
  changes: PriceChange[];
  /** Rows of the source left out because a cost their provider bills is missing (never priced at $0). */
  refused: { model: string; reason: string }[];
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
  for (let changed = true; changed;) {
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
  if (usdAmountProblem(value, { zero: true, max: MAX_USD_PER_MILLION_TOKENS }) !== undefined) {
    throw new TollgateError(
      'ERR_TG_CORE_INVALID_PRICE',
      `price ${field} of model "${model}" must be a number of USD per 1M tokens, from 0 to ${MAX_USD_PER_MILLION_TOKENS.toLocaleString('en-US')}; got ${JSON.stringify(usd)}`,
    );
  }
  return Math.round(value * 1_000_000);
}

function optionalCount(value: unknown, field: string, model: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new TollgateError(
      'ERR_TG_CORE_INVALID_PRICE',
      `${field} of model "${model}" must be a positive integer; got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

const TOKENIZERS: readonly TokenizerFamily[] = [
  'o200k_base',
  'cl100k_base',
  'llama3',
  'tekken',
  'qwen2',
  'gemma',
  'approximate',
];

/** Providers that speak OpenAI's API and, unless told otherwise, count text near enough to o200k_base. */
const OPENAI_LIKE: ReadonlySet<string> = new Set(['openai', 'azure-openai', 'openai-compatible']);

function tokenizerOf(value: unknown, model: string, provider: unknown): TokenizerFamily {
  if (value === undefined)
    return typeof provider === 'string' && OPENAI_LIKE.has(provider) ? 'o200k_base' : 'approximate';
  if (!TOKENIZERS.includes(value as TokenizerFamily)) {
    throw new TollgateError(
      'ERR_TG_CORE_INVALID_PRICE',
      `tokenizer of model "${model}" must be one of ${TOKENIZERS.join(', ')}; got ${JSON.stringify(value)}`,
    );
  }
  return value as TokenizerFamily;
}

function ownTokenizerOf(price: ModelPrice, tokenizer: TokenizerFamily, model: string): boolean {
  const own = price.ownTokenizer ?? (price.tokenizer !== undefined && tokenizer !== 'approximate');
  if (typeof own !== 'boolean') {
    throw new TollgateError(
      'ERR_TG_CORE_INVALID_PRICE',
      `ownTokenizer of model "${model}" must be a boolean; got ${JSON.stringify(own)}`,
    );
  }
  if (own && tokenizer === 'approximate') {
    throw new TollgateError(
      'ERR_TG_CORE_INVALID_PRICE',
      `ownTokenizer of model "${model}" needs a tokenizer that names an encoding`,
    );
  }
  return own;
}

function kindOf(value: unknown, model: string): ModelKind {
  if (value === undefined) return 'generation';
  if (!MODEL_KINDS.includes(value as ModelKind)) {
    throw new TollgateError(
      'ERR_TG_CORE_INVALID_PRICE',
      `kind of model "${model}" must be one of ${MODEL_KINDS.join(', ')}; got ${JSON.stringify(value)}`,
    );
  }
  return value as ModelKind;
}

function resolvePrice(model: string, price: ModelPrice): ResolvedPrice {
  if (typeof price !== 'object' || price === null)
    throw new TollgateError('ERR_TG_CORE_INVALID_PRICE', `price of model "${model}" must be an object`);
  const inputMicro = toMicro(price.inputPerMTok, Number.NaN, 'inputPerMTok', model);
  const tokenizer = tokenizerOf(price.tokenizer, model, price.provider);
  const resolved: ResolvedPrice = {
    model,
    provider: price.provider,
    inputMicro,
    cachedInputMicro: toMicro(price.cachedInputPerMTok, price.inputPerMTok, 'cachedInputPerMTok', model),
    cacheWriteMicro: toMicro(price.cacheWritePerMTok, price.inputPerMTok, 'cacheWritePerMTok', model),
    cacheWrite1hMicro: toMicro(
      price.cacheWrite1hPerMTok,
      price.cacheWritePerMTok ?? price.inputPerMTok,
      'cacheWrite1hPerMTok',
      model,
    ),
    outputMicro: toMicro(price.outputPerMTok, Number.NaN, 'outputPerMTok', model),
    maxOutputTokens: optionalCount(price.maxOutputTokens, 'maxOutputTokens', model),
    contextWindow: optionalCount(price.contextWindow, 'contextWindow', model),
    tokenizer,
    ownTokenizer: ownTokenizerOf(price, tokenizer, model),
    kind: kindOf(price.kind, model),
  };
  if (price.serviceTiers !== undefined) resolved.tiers = resolveTiers(model, price, resolved);
  if (price.longContext !== undefined) resolved.longContext = resolveLongContext(model, price.longContext, resolved);
  if (price.speeds !== undefined) resolved.speeds = resolveSpeeds(model, price.speeds, resolved);
  if (price.inferenceGeos !== undefined) resolved.inferenceGeos = resolveGeos(model, price.inferenceGeos);
  const media = resolveMedia(model, price, resolved);
  if (media !== undefined) resolved.media = media;
  return resolved;
}

/** Every media price a row may name: the maintained source's, and the units only our rows price. */
const MEDIA_FIELDS = [...MEDIA_PRICE_FIELDS, 'perMCharacters', 'perImage'] as const;

/** USD per unit as pico-USD per unit, rounded up: a unit is never billed under its price. */
function picoPerUnit(usd: unknown, field: string, model: string): number {
  if (usdAmountProblem(usd, { zero: true, max: MAX_USD_PER_MILLION_TOKENS }) !== undefined)
    throw new TollgateError(
      'ERR_TG_CORE_INVALID_PRICE',
      `price ${field} of model "${model}" must be a number of USD from 0 to ${MAX_USD_PER_MILLION_TOKENS.toLocaleString('en-US')}; got ${JSON.stringify(usd)}`,
    );
  return Math.ceil(Math.round((usd as number) * 1e12 * 1000) / 1000);
}

/** The media prices of a row, or undefined when it names none (then media tokens cost their direction's text price). */
function resolveMedia(model: string, price: ModelPrice, standard: ResolvedPrice): MediaPrice | undefined {
  if (!MEDIA_FIELDS.some((field) => price[field] !== undefined)) return undefined;
  const media: MediaPrice = {
    audioInputMicro: toMicro(price.audioInputPerMTok, standard.inputMicro / 1e6, 'audioInputPerMTok', model),
    cachedAudioInputMicro: toMicro(
      price.cachedAudioInputPerMTok,
      standard.cachedInputMicro / 1e6,
      'cachedAudioInputPerMTok',
      model,
    ),
    audioOutputMicro: toMicro(price.audioOutputPerMTok, standard.outputMicro / 1e6, 'audioOutputPerMTok', model),
    imageInputMicro: toMicro(price.imageInputPerMTok, standard.inputMicro / 1e6, 'imageInputPerMTok', model),
    imageOutputMicro: toMicro(price.imageOutputPerMTok, standard.outputMicro / 1e6, 'imageOutputPerMTok', model),
  };
  if (price.audioPerMinute !== undefined)
    media.audioSecondPico = Math.ceil(picoPerUnit(price.audioPerMinute, 'audioPerMinute', model) / 60);
  if (price.perMCharacters !== undefined)
    media.characterPico = Math.ceil(picoPerUnit(price.perMCharacters, 'perMCharacters', model) / 1e6);
  if (price.perImage !== undefined) {
    if (typeof price.perImage !== 'object' || price.perImage === null || Object.keys(price.perImage).length === 0)
      throw new TollgateError(
        'ERR_TG_CORE_INVALID_PRICE',
        `perImage of model "${model}" must map "<quality> <size>" to USD per image`,
      );
    const images: Record<string, number> = {};
    for (const [shape, usd] of Object.entries(price.perImage))
      images[shape] = picoPerUnit(usd, `perImage["${shape}"]`, model);
    media.imagePico = images;
  }
  return media;
}

/** Each speed as a whole price: the classes it names, the cache classes it does not scaled as its input is. */
function resolveSpeeds(
  model: string,
  speeds: NonNullable<ModelPrice['speeds']>,
  standard: ResolvedPrice,
): Record<string, ResolvedPrice> {
  if (typeof speeds !== 'object' || speeds === null)
    throw new TollgateError('ERR_TG_CORE_INVALID_PRICE', `speeds of model "${model}" must be an object`);
  const { tiers: _tiers, longContext: _long, ...base } = standard;
  const resolved: Record<string, ResolvedPrice> = {};
  for (const [speed, costs] of Object.entries(speeds)) {
    if (typeof costs !== 'object' || costs === null)
      throw new TollgateError('ERR_TG_CORE_INVALID_PRICE', `speeds.${speed} of model "${model}" must be an object`);
    const at = `${model}" speed "${speed}`;
    const inputMicro = toMicro(costs.inputPerMTok, standard.inputMicro / 1_000_000, 'inputPerMTok', at);
    const ratio = standard.inputMicro === 0 ? 1 : inputMicro / standard.inputMicro;
    const micro = (given: number | undefined, standardMicro: number, field: string) =>
      given === undefined ? Math.ceil(standardMicro * ratio) : toMicro(given, 0, field, at);
    resolved[speed] = {
      ...base,
      inputMicro,
      cachedInputMicro: micro(costs.cachedInputPerMTok, standard.cachedInputMicro, 'cachedInputPerMTok'),
      cacheWriteMicro: micro(costs.cacheWritePerMTok, standard.cacheWriteMicro, 'cacheWritePerMTok'),
      cacheWrite1hMicro: micro(costs.cacheWrite1hPerMTok, standard.cacheWrite1hMicro, 'cacheWrite1hPerMTok'),
      outputMicro: micro(costs.outputPerMTok, standard.outputMicro, 'outputPerMTok'),
    };
    delete resolved[speed]!.speeds;
  }
  return resolved;
}

/** The most a region may multiply prices by: a typo of 110 for 1.1 is refused rather than billed. */
const MAX_GEO_MULTIPLIER = 10;

function resolveGeos(model: string, geos: NonNullable<ModelPrice['inferenceGeos']>): Record<string, number> {
  if (typeof geos !== 'object' || geos === null)
    throw new TollgateError('ERR_TG_CORE_INVALID_PRICE', `inferenceGeos of model "${model}" must be an object`);
  for (const [geo, factor] of Object.entries(geos))
    if (typeof factor !== 'number' || !Number.isFinite(factor) || factor < 1 || factor > MAX_GEO_MULTIPLIER)
      throw new TollgateError(
        'ERR_TG_CORE_INVALID_PRICE',
        `inferenceGeos.${geo} of model "${model}" must be a multiplier from 1 to ${MAX_GEO_MULTIPLIER}; got ${JSON.stringify(factor)}`,
      );
  return { ...geos };
}

function resolveLongContext(
  model: string,
  costs: NonNullable<ModelPrice['longContext']>,
  standard: ResolvedPrice,
): NonNullable<ResolvedPrice['longContext']> {
  if (typeof costs !== 'object' || costs === null)
    throw new TollgateError('ERR_TG_CORE_INVALID_PRICE', `longContext of model "${model}" must be an object`);
  const aboveInputTokens = optionalCount(costs.aboveInputTokens, 'longContext.aboveInputTokens', model);
  if (aboveInputTokens === undefined)
    throw new TollgateError(
      'ERR_TG_CORE_INVALID_PRICE',
      `longContext.aboveInputTokens of model "${model}" must be a positive integer; got undefined`,
    );
  const { tiers: _tiers, ...base } = standard;
  return { aboveInputTokens, price: tierOver(`${model}" above ${aboveInputTokens} input tokens "`, costs, base) };
}

/**
 * The price a call with `inputTokens` of input is billed at: the long-context prices above their threshold, else
 * `price` itself. Every cost of a call (its reservation's bound, its clamp, its bill) is computed at this price.
 */
export function priceAtInput(price: ResolvedPrice, inputTokens: number): ResolvedPrice {
  const long = price.longContext;
  return long !== undefined && inputTokens > long.aboveInputTokens ? long.price : price;
}

/** Each tier as a whole price: the tier's classes over the standard ones. */
function resolveTiers(model: string, price: ModelPrice, standard: ResolvedPrice): Record<string, ResolvedPrice> {
  const tiers = price.serviceTiers;
  if (typeof tiers !== 'object' || tiers === null)
    throw new TollgateError('ERR_TG_CORE_INVALID_PRICE', `serviceTiers of model "${model}" must be an object`);
  const resolved: Record<string, ResolvedPrice> = {};
  for (const [tier, costs] of Object.entries(tiers)) {
    if (typeof costs !== 'object' || costs === null)
      throw new TollgateError(
        'ERR_TG_CORE_INVALID_PRICE',
        `serviceTiers.${tier} of model "${model}" must be an object`,
      );
    resolved[tier] = { ...tierOver(`${model}" tier "${tier}`, costs, standard), tier };
    delete resolved[tier]!.tiers;
    delete resolved[tier]!.longContext;
  }
  return resolved;
}

/** The classes `costs` names over the standard price (`at` names it in errors). */
function tierOver(at: string, costs: TierPrice, standard: ResolvedPrice): ResolvedPrice {
  const input = costs.inputPerMTok ?? standard.inputMicro / 1_000_000;
  const inputMicro = toMicro(input, input, 'inputPerMTok', at);
  // A class the tier does not price: a cache read at most the tier's input; a cache write priced as the standard
  // tier prices it, which is the input price itself where the provider has no cache-write charge (OpenAI).
  const write = (given: number | undefined, standardMicro: number, sameAs: number, field: string) => {
    if (given !== undefined) return toMicro(given, 0, field, at);
    return standardMicro === sameAs ? inputMicro : standardMicro;
  };
  const cacheWriteMicro = write(
    costs.cacheWritePerMTok,
    standard.cacheWriteMicro,
    standard.inputMicro,
    'cacheWritePerMTok',
  );
  return {
    ...standard,
    inputMicro,
    cachedInputMicro:
      costs.cachedInputPerMTok === undefined
        ? Math.min(standard.cachedInputMicro, inputMicro)
        : toMicro(costs.cachedInputPerMTok, 0, 'cachedInputPerMTok', at),
    cacheWriteMicro,
    cacheWrite1hMicro:
      costs.cacheWrite1hPerMTok === undefined && standard.cacheWrite1hMicro === standard.cacheWriteMicro
        ? cacheWriteMicro
        : write(costs.cacheWrite1hPerMTok, standard.cacheWrite1hMicro, -1, 'cacheWrite1hPerMTok'),
    outputMicro:
      costs.outputPerMTok === undefined ? standard.outputMicro : toMicro(costs.outputPerMTok, 0, 'outputPerMTok', at),
  };
}

/** The price at `tier`: the tier's own when the model has one, else the standard price. */
function atTier(price: ResolvedPrice | undefined, tier: string | undefined): ResolvedPrice | undefined {
  return tier === undefined ? price : (price?.tiers?.[tier] ?? price);
}

/**
 * A source row over the shipped row of the same id: the source's costs, the shipped row's provider and limits, and
 * the shipped speeds and regions where the source bills none (LiteLLM's file has no fast or regional rates).
 */
function sourceRow(row: ModelPrice, shipped: ModelPrice | undefined): ModelPrice {
  if (shipped === undefined) return row;
  const merged: ModelPrice = { ...row, provider: shipped.provider };
  for (const field of ['maxOutputTokens', 'contextWindow', 'tokenizer', 'ownTokenizer', 'kind'] as const)
    if (shipped[field] !== undefined) (merged as unknown as Record<string, unknown>)[field] = shipped[field];
  if (merged.speeds === undefined && shipped.speeds !== undefined) merged.speeds = shipped.speeds;
  if (merged.inferenceGeos === undefined && shipped.inferenceGeos !== undefined)
    merged.inferenceGeos = shipped.inferenceGeos;
  return merged;
}

/** One table in use: swapped whole when a source loads, so a lookup never sees half of one and half of another. */
interface PriceTable {
  readonly version: string;
  readonly table: ReadonlyMap<string, ResolvedPrice>;
  /** The shipped match rules for dated and aliased ids (none when the shipped table is left out). */
  readonly matchers: typeof DEFAULT_MATCHERS;
  readonly cache: Map<string, ResolvedPrice | undefined>;
}

/**
 * The version of a table: a hash of every price in it (shipped, source and `models`), so two gateways report the same
 * version exactly when they price alike, in every process.
 */
function versionOf(table: ReadonlyMap<string, ResolvedPrice>, fallback: ResolvedPrice | undefined): string {
  const hash = createHash('sha256');
  for (const [model, price] of [...table].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    hash.update(`${model}\0${JSON.stringify(price)}\n`);
  if (fallback) hash.update(`\0default\0${JSON.stringify(fallback)}`);
  return hash.digest('hex').slice(0, 16);
}

function buildTable(
  options: PricingOptions,
  source: Pick<SourcePrices, 'rows' | 'matchers'>,
  fallback: ResolvedPrice | undefined,
): PriceTable {
  const shipped: Readonly<Record<string, ModelPrice>> = options.replaceDefaults ? {} : DEFAULT_PRICES;
  const rows: Record<string, ModelPrice> = { ...shipped };
  for (const [model, row] of Object.entries(source.rows)) rows[model] = sourceRow(row, shipped[model]);
  Object.assign(rows, options.models);
  const table = new Map<string, ResolvedPrice>();
  for (const [model, price] of Object.entries(rows)) table.set(model, resolvePrice(model, price));
  const matchers = [...source.matchers, ...(options.replaceDefaults ? [] : DEFAULT_MATCHERS)];
  return { version: versionOf(table, fallback), table, matchers, cache: new Map() };
}

function findIn(state: PriceTable, fallback: ResolvedPrice | undefined, model: string): ResolvedPrice | undefined {
  const { cache, table } = state;
  if (cache.has(model)) return cache.get(model);
  let found: ResolvedPrice | undefined;
  for (const family of modelFamilies(model)) {
    found = table.get(family);
    if (found) break;
  }
  // Then the maintained source's rules for dated and aliased ids (`claude-opus-5.5`, `gpt-5-1-codex`), in its order.
  if (found === undefined && model.length <= MAX_MODEL_ID_LENGTH)
    for (const { id, matches } of state.matchers)
      if (matches(model)) {
        found = table.get(id);
        if (found) break;
      }
  found ??= fallback;
  // Model ids come from request bodies: only ids of a real length are kept, or 10,000 cached
  // megabyte-long ids would hold gigabytes.
  if (cache.size < 10_000 && model.length <= MAX_MODEL_ID_LENGTH) cache.set(model, found);
  return found;
}

function classesOf(price: ResolvedPrice): Omit<PriceClasses, 'serviceTiers'> {
  return {
    inputPerMTok: price.inputMicro / 1_000_000,
    cachedInputPerMTok: price.cachedInputMicro / 1_000_000,
    cacheWritePerMTok: price.cacheWriteMicro / 1_000_000,
    outputPerMTok: price.outputMicro / 1_000_000,
  };
}

function pricesOf(price: ResolvedPrice | undefined): PriceClasses | null {
  if (price === undefined) return null;
  const classes: PriceClasses = classesOf(price);
  if (price.tiers) {
    classes.serviceTiers = {};
    for (const [tier, tierPrice] of Object.entries(price.tiers)) classes.serviceTiers[tier] = classesOf(tierPrice);
  }
  return classes;
}

/** The models whose prices differ between two tables, in id order. */
function priceChanges(before: PriceTable, after: PriceTable): PriceChange[] {
  const changes: PriceChange[] = [];
  const ids = [...new Set([...before.table.keys(), ...after.table.keys()])].sort();
  for (const model of ids) {
    const was = pricesOf(before.table.get(model));
    const now = pricesOf(after.table.get(model));
    if (JSON.stringify(was) !== JSON.stringify(now)) changes.push({ model, before: was, after: now });
  }
  return changes;
}

declare module './context.js' {
  interface ContextVariableMap {
    /** The prices the request is priced with, one view per pricing that priced it (`Pricing.forRequest`). */
    'core.pricedWith': PinnedPricing;
  }
}

/** `price`, or UnknownModelError for `model` where there is none: what `Pricing.get` adds to `find`. */
function known(price: ResolvedPrice | undefined, model: string): ResolvedPrice {
  if (!price) throw new UnknownModelError(model);
  return price;
}

/** One request's view of a pricing: the table in use when the request was first priced; tiers default to its call's. */
class PinnedPricing implements Pricing {
  constructor(
    readonly owner: Pricing,
    private readonly table: PriceTable,
    private readonly fallback: ResolvedPrice | undefined,
    private readonly ctx: TollgateContext,
    /** The view of another pricing that priced the same request before this one. */
    readonly next: PinnedPricing | undefined,
  ) {}

  get version(): string {
    return this.table.version;
  }

  find(model: string, tier: string | undefined = this.ctx.call?.serviceTier): ResolvedPrice | undefined {
    return atTier(findIn(this.table, this.fallback, model), tier);
  }

  get(model: string, tier: string | undefined = this.ctx.call?.serviceTier): ResolvedPrice {
    return known(this.find(model, tier), model);
  }

  models(): string[] {
    return [...this.table.table.keys()];
  }

  forRequest(other: TollgateContext): Pricing {
    return this.owner.forRequest(other);
  }

  loadSource(text: string): PriceUpdate {
    return this.owner.loadSource(text);
  }

  refreshFrom(source: PriceSourceOptions | undefined, log: PriceLog): PriceRefresh {
    return this.owner.refreshFrom(source, log);
  }
}

/**
 * A pricing table: the shipped prices, a price source's (`loadSource`) and the user's, resolved and validated once
 * per load. The layers: shipped table < source < `models`.
 */
export function createPricing(options: PricingOptions = {}): Pricing {
  const fallback = options.defaultPrice ? resolvePrice('default', options.defaultPrice) : undefined;
  let state = buildTable(options, { rows: {}, matchers: [] }, fallback);
  const live: Pricing = {
    find: (model, tier) => atTier(findIn(state, fallback, model), tier),
    get: (model, tier) => known(live.find(model, tier), model),
    models: () => [...state.table.keys()],
    get version() {
      return state.version;
    },
    forRequest(ctx) {
      // A request's prices: the table in use when this pricing first priced it, whatever loads after. Kept on the
      // context itself (not in a WeakMap keyed by it, whose entries a young-generation collection keeps alive), as one
      // small object per pricing that priced the request (one in every chain tollgate builds).
      const first = ctx.get('core.pricedWith');
      for (let view = first; view !== undefined; view = view.next) if (view.owner === live) return view;
      const view = new PinnedPricing(live, state, fallback, ctx, first);
      ctx.set('core.pricedWith', view);
      return view;
    },
    loadSource(text) {
      const source = readSourcePrices(text);
      // Built and checked whole before it is swapped in: a row that does not validate keeps every price in use.
      const next = buildTable(options, source, fallback);
      const changes = priceChanges(state, next);
      state = next;
      return { version: next.version, changes, refused: source.refused };
    },
    refreshFrom(source, log) {
      return startPriceRefresh(live, source, log);
    },
  };
  return live;
}

/** The token counts of one model call by price class (a usage, or one of its iterations). */
type CallTokens = Pick<
  TokenUsage,
  'inputTokens' | 'cachedInputTokens' | 'cacheWriteTokens' | 'cacheWrite1hTokens' | 'outputTokens'
>;

/** What prices a call besides its model, tier and size: the speed and region it runs at, its media (see `TokenUsage`). */
export type CallPricing = Pick<TokenUsage, 'speed' | 'inferenceGeo' | 'media'>;

/**
 * The price one call is billed at: its speed's prices when the model bills that speed apart (across the whole
 * context window), else the long-context prices past their threshold; times its region's multiplier. The one rule
 * for the bill (the speed and region the answer says) and for the reservation (those the request asks for). A price
 * it moved to a speed or region names none any more, so that pricing it again at the same call changes nothing.
 */
export function priceAtCall(price: ResolvedPrice, inputTokens: number, call: CallPricing | undefined): ResolvedPrice {
  const speed = call?.speed === undefined ? undefined : price.speeds?.[call.speed];
  const at = speed ?? priceAtInput(price, inputTokens);
  const factor = call?.inferenceGeo === undefined ? undefined : price.inferenceGeos?.[call.inferenceGeo];
  if (factor === undefined || factor === 1) return at;
  // Rounded up to the micro-USD per 1M tokens: a price at a region is never under its multiple.
  const times = (micro: number) => Math.ceil(Math.round(micro * factor * 1000) / 1000);
  const { tiers: _tiers, longContext: _long, speeds: _speeds, inferenceGeos: _geos, ...flat } = at;
  return {
    ...flat,
    inputMicro: times(at.inputMicro),
    cachedInputMicro: times(at.cachedInputMicro),
    cacheWriteMicro: times(at.cacheWriteMicro),
    cacheWrite1hMicro: times(at.cacheWrite1hMicro),
    outputMicro: times(at.outputMicro),
  };
}

/** Cost of one call in pico-USD: each token once, in its own class. */
function callPico(tokens: CallTokens, price: ResolvedPrice): number {
  const cached = Math.max(0, tokens.cachedInputTokens);
  const written = Math.max(0, tokens.cacheWriteTokens);
  // The part of the cache write made with a 1-hour lifetime, priced at its own rate.
  const writtenLong = Math.min(written, Math.max(0, tokens.cacheWrite1hTokens ?? 0));
  const uncached = Math.max(0, tokens.inputTokens - cached - written);
  // tokens x micro-USD per 1M tokens = pico-USD.
  return (
    uncached * price.inputMicro +
    cached * price.cachedInputMicro +
    (written - writtenLong) * price.cacheWriteMicro +
    writtenLong * price.cacheWrite1hMicro +
    Math.max(0, tokens.outputTokens) * price.outputMicro
  );
}

/**
 * The price of one image of `media`'s quality and size: listed, else the size's own (a model of one quality), else the
 * dearest quality of the size (`auto`), else the row's dearest.
 */
function imagePico(prices: Readonly<Record<string, number>>, media: MediaUsage): number {
  const size = media.imageSize ?? '';
  const listed = prices[`${media.imageQuality ?? ''} ${size}`] ?? prices[size];
  if (listed !== undefined) return listed;
  const ofSize = Object.entries(prices).filter(([shape]) => shape.endsWith(` ${size}`));
  return Math.max(...(ofSize.length > 0 ? ofSize.map(([, pico]) => pico) : Object.values(prices)));
}

const count = (value: number | undefined): number => Math.max(0, value ?? 0);

/**
 * The tokens a call's media hold (audio and image tokens, a transcript's bound), which token limits count beside its
 * text tokens; seconds, characters and images are no tokens.
 */
export function mediaTokens(media: MediaUsage | undefined): number {
  if (media === undefined) return 0;
  return (
    count(media.audioInputTokens) +
    count(media.audioOutputTokens) +
    count(media.imageInputTokens) +
    count(media.imageOutputTokens) +
    count(media.transcriptTokens)
  );
}

/**
 * Cost of a call's media in pico-USD: media tokens at their class (the text price of their direction where the row
 * names none), and the units the model's row bills (seconds, characters, images); a unit it does not bill is free,
 * as the provider reports the model's own unit.
 */
function mediaPico(media: MediaUsage | undefined, price: ResolvedPrice): number {
  if (media === undefined) return 0;
  const rates = price.media;
  // Of the audio read, the part read from the prompt cache (Realtime's `cached_tokens_details.audio_tokens`).
  const cachedAudio = Math.min(count(media.cachedAudioInputTokens), count(media.audioInputTokens));
  let pico =
    (count(media.audioInputTokens) - cachedAudio) * (rates?.audioInputMicro ?? price.inputMicro) +
    cachedAudio * (rates?.cachedAudioInputMicro ?? price.cachedInputMicro) +
    count(media.imageInputTokens) * (rates?.imageInputMicro ?? price.inputMicro) +
    count(media.audioOutputTokens) * (rates?.audioOutputMicro ?? price.outputMicro) +
    count(media.imageOutputTokens) * (rates?.imageOutputMicro ?? price.outputMicro) +
    count(media.transcriptTokens) * price.outputMicro;
  if (rates?.audioSecondPico !== undefined) pico += count(media.audioSeconds) * rates.audioSecondPico;
  if (rates?.characterPico !== undefined) pico += count(media.characters) * rates.characterPico;
  if (rates?.imagePico !== undefined && count(media.images) > 0)
    pico += count(media.images) * imagePico(rates.imagePico, media);
  return pico;
}

/**
 * Cost of a usage in nano-USD, rounded up once. Each token is priced once in its class: uncached input, cached input
 * (cache read), cache write, output (reasoning included), at the speed and region the answer says it ran at. A usage
 * made of several calls (`iterations`) is the sum of its calls, each at its own model's price (`priceOf`; a model
 * without one at `price`, never free), and its top-level counts are not billed again.
 */
export function costNanoUsd(
  usage: TokenUsage,
  price: ResolvedPrice,
  priceOf?: (model: string) => ResolvedPrice | undefined,
): number {
  const iterations = usage.iterations;
  if (iterations === undefined || iterations.length === 0)
    return Math.ceil(
      (callPico(usage, priceAtCall(price, usage.inputTokens, usage)) + mediaPico(usage.media, price)) / 1000,
    );
  let pico = 0;
  for (const call of iterations) {
    const own = call.model === undefined ? price : (priceOf?.(call.model) ?? price);
    pico += callPico(call, priceAtCall(own, call.inputTokens, usage));
  }
  // pico-USD / 1000 = nano-USD.
  return Math.ceil(pico / 1000);
}

/**
 * Upper bound of a request's cost before the call: every input token in its priciest class (a
 * cache write costs more than plain input at Anthropic), the whole output cap used, at the speed and
 * region the request asks for (`call`, see `priceAtCall`), and the media it asks for (`call.media`) at their units.
 */
export function maxCostNanoUsd(
  inputTokens: number,
  maxOutputTokens: number,
  price: ResolvedPrice,
  call?: CallPricing,
): number {
  price = priceAtCall(price, inputTokens, call);
  const inputMicro = Math.max(price.inputMicro, price.cachedInputMicro, price.cacheWriteMicro, price.cacheWrite1hMicro);
  return Math.ceil(
    (Math.max(0, inputTokens) * inputMicro +
      Math.max(0, maxOutputTokens) * price.outputMicro +
      mediaPico(call?.media, price)) /
      1000,
  );
}

/** The most output tokens `budgetNano` buys after paying for `inputTokens` (never negative), at the call's speed and region. */
export function affordableOutputTokens(
  budgetNano: number,
  inputTokens: number,
  price: ResolvedPrice,
  call?: CallPricing,
): number {
  price = priceAtCall(price, inputTokens, call);
  const inputNano = maxCostNanoUsd(inputTokens, 0, price, call?.media ? { media: call.media } : undefined);
  if (price.outputMicro === 0) return Number.MAX_SAFE_INTEGER;
  const left = budgetNano - inputNano;
  if (left <= 0) return 0;
  return Math.max(0, Math.floor((left * 1000) / price.outputMicro));
}
