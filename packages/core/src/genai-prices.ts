// @pydantic/genai-prices' data (its providers, models, match rules and prices) read into catalogue rows.
import { MEDIA_PRICE_FIELDS } from './catalogue-rows.js';
import type { MaintainedRow, MatchRule, RowPrices } from './catalogue-rows.js';
import { TollgateError } from './errors.js';
import type { TierPrice } from './pricing.js';

/** A row's prices: token classes, media token classes and the audio minute. */
type RowPrice = RowPrices['prices'];

/** The classes a long-context tier may price. */
const longContextFields: Readonly<Record<keyof TierPrice, true>> = {
  inputPerMTok: true,
  cachedInputPerMTok: true,
  cacheWritePerMTok: true,
  cacheWrite1hPerMTok: true,
  outputPerMTok: true,
};

/** The source's providers taken, by its id, and the catalogue's provider (the upstream kind that serves them). */
export const GENAI_PROVIDERS: Readonly<Record<string, string>> = {
  openai: 'openai',
  anthropic: 'anthropic',
  google: 'google',
  mistral: 'mistral',
};

/**
 * The source's token prices (USD per 1M tokens) and the catalogue's field for each, media tokens included; its cached
 * image reads (`cache_image_read_mtok`) are not taken: an image read from the cache is billed as a fresh one.
 */
const FIELDS: Readonly<Record<string, keyof RowPrice>> = {
  input_mtok: 'inputPerMTok',
  cache_read_mtok: 'cachedInputPerMTok',
  cache_write_mtok: 'cacheWritePerMTok',
  cache_write_1h_mtok: 'cacheWrite1hPerMTok',
  output_mtok: 'outputPerMTok',
  input_audio_mtok: 'audioInputPerMTok',
  cache_audio_read_mtok: 'cachedAudioInputPerMTok',
  output_audio_mtok: 'audioOutputPerMTok',
  input_image_mtok: 'imageInputPerMTok',
  output_image_mtok: 'imageOutputPerMTok',
};

/** The source's price of audio by the hour (whisper-1): the catalogue's is by the minute. */
const AUDIO_HOURS = ['input_audio_hours', 'audio_hours'];

/**
 * Ids served on surfaces not metered here (chat with audio or image output, moderation, OCR). The gateway's
 * own media routes take theirs: transcriptions, speech, image generation and Realtime sessions (`MEDIA_KINDS`).
 */
const OTHER_SURFACES = /(audio|realtime|transcribe|tts|whisper|image|moderation|ocr|voxtral|computer-use|live)/;
const MEDIA_KINDS: readonly (readonly [RegExp, NonNullable<MaintainedRow['kind']>])[] = [
  [/^(gpt-(4o-(mini-)?)?transcribe|whisper-)/, 'transcription'],
  [/^(gpt-4o-mini-tts|tts-)/, 'speech'],
  [/^(gpt-image-|dall-e-)/, 'image'],
  [/^gpt-(4o-(mini-)?)?realtime/, 'realtime'],
];
const EMBEDDING = /embed/;

function refused(message: string): TollgateError {
  return new TollgateError('ERR_TG_CORE_INVALID_PRICE', `prices source: ${message}`);
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function usdOf(value: unknown, at: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw refused(`${at} must be a number of USD per 1M tokens >= 0; got ${JSON.stringify(value)}`);
  return value;
}

/** One set of source prices as catalogue fields, with its long-context tier (the source's tiered prices). */
function pricesOf(source: unknown, at: string): RowPrices {
  if (!isObject(source)) throw refused(`${at} must be an object of prices`);
  const prices: RowPrice = {};
  let longContext: RowPrices['longContext'];
  for (const [from, to] of Object.entries(FIELDS)) {
    const value = source[from];
    if (value === undefined) continue;
    if (!isObject(value)) {
      prices[to] = usdOf(value, `${at}.${from}`);
      continue;
    }
    const tiers = value.tiers;
    if (!Array.isArray(tiers) || tiers.length !== 1 || !isObject(tiers[0]))
      throw refused(`${at}.${from} must have one price tier above its base`);
    const start = tiers[0].start;
    if (typeof start !== 'number' || !Number.isSafeInteger(start) || start <= 0)
      throw refused(`${at}.${from}.tiers[0].start must be a positive integer; got ${JSON.stringify(start)}`);
    if (longContext && longContext.aboveInputTokens !== start)
      throw refused(`${at}: the long-context tiers of its prices start at different lengths`);
    prices[to] = usdOf(value.base, `${at}.${from}.base`);
    longContext ??= { aboveInputTokens: start };
    if (to in longContextFields)
      longContext[to as keyof TierPrice] = usdOf(tiers[0].price, `${at}.${from}.tiers[0].price`);
  }
  for (const field of AUDIO_HOURS) {
    const value = source[field];
    if (value === undefined) continue;
    prices.audioPerMinute = Math.round((usdOf(value, `${at}.${field}`) / 60) * 1e9) / 1e9;
    break;
  }
  return longContext ? { prices, longContext } : { prices };
}

const MATCH_KINDS = ['equals', 'starts_with', 'ends_with', 'contains', 'regex'] as const;

/** A match rule as the source writes it, checked (a regex that does not compile refuses the source). */
function matchOf(rule: unknown, at: string): MatchRule {
  if (isObject(rule)) {
    const list = rule.or ?? rule.and;
    if (Array.isArray(list)) {
      const parts = list.map((part, i) => matchOf(part, `${at}[${i}]`));
      return 'or' in rule ? { or: parts } : { and: parts };
    }
    for (const kind of MATCH_KINDS) {
      const value = rule[kind];
      if (typeof value !== 'string') continue;
      if (kind === 'regex') {
        try {
          new RegExp(value);
        } catch {
          throw refused(`${at}.regex does not compile: ${JSON.stringify(value)}`);
        }
      }
      return { [kind]: value } as MatchRule;
    }
  }
  throw refused(`${at} must be a match rule (${MATCH_KINDS.join(', ')}, or, and); got ${JSON.stringify(rule)}`);
}

/** One model of the source as a row, or the reason it is not one (a surface not priced per text token, a gap). */
function rowOf(provider: string, model: Record<string, unknown>, at: string, today: string): MaintainedRow | string {
  const id = model.id;
  if (typeof id !== 'string' || id.length === 0) throw refused(`${at}.id must be a model id`);
  const served = MEDIA_KINDS.some(([pattern]) => pattern.test(id));
  if ((OTHER_SURFACES.test(id) && !served) || model.deprecated === true) return 'not served here, or deprecated';
  // Google's list holds Vertex's Anthropic models; the Anthropic upstream prices those.
  if (provider === 'google' && id.startsWith('claude')) return "Vertex's Anthropic model";
  const conditions = Array.isArray(model.prices) ? model.prices : [{ prices: model.prices }];
  const dated = conditions.map((condition: unknown, i) => {
    if (!isObject(condition)) throw refused(`${at}.prices[${i}] must be an object`);
    const constraint = condition.constraint;
    if (constraint !== undefined && !(isObject(constraint) && typeof constraint.start_date === 'string'))
      return undefined;
    const date = isObject(constraint) ? String(constraint.start_date) : '0000-00-00';
    return { date, ...pricesOf(condition.prices, `${at}.prices`) };
  });
  if (dated.some((entry) => entry === undefined)) return 'priced by time of day';
  const entries = dated as ({ date: string } & RowPrices)[];
  // The prices in effect today, and each change the source has dated after it.
  const current = entries.filter((entry) => entry.date <= today).at(-1) ?? entries[0]!;
  const later = entries.filter((entry) => entry.date > today);
  const media = MEDIA_KINDS.find(([pattern]) => pattern.test(id))?.[1];
  const kind = media ?? (EMBEDDING.test(id) ? 'embedding' : undefined);
  // A model billed by the minute has no token price: its tokens are none.
  if (current.prices.audioPerMinute !== undefined) {
    current.prices.inputPerMTok ??= 0;
    current.prices.outputPerMTok ??= 0;
  }
  if (current.prices.inputPerMTok === undefined) return 'no input price';
  if (kind === undefined && current.prices.outputPerMTok === undefined) return 'no output price';
  // Media prices of other models (Gemini's audio input) are not taken: their routes meter text tokens only.
  if (media === undefined)
    for (const entry of entries) for (const field of MEDIA_PRICE_FIELDS) delete entry.prices[field];
  const row: MaintainedRow = { id, provider, match: matchOf(model.match, `${at}.match`), prices: current.prices };
  if (kind) row.kind = kind;
  const window = model.context_window;
  if (typeof window === 'number' && Number.isSafeInteger(window) && window > 0) row.contextWindow = window;
  if (current.longContext) row.longContext = current.longContext;
  if (later.length > 0) row.from = later.map(({ date, prices, longContext }) => ({ date, prices, longContext }));
  return row;
}

/** The rows of the source's providers served here, in its order, with the prices in effect on `today` (YYYY-MM-DD). */
export function genaiRows(
  providers: readonly unknown[],
  today: string,
): { rows: MaintainedRow[]; skipped: { model: string; reason: string }[] } {
  const rows: MaintainedRow[] = [];
  const skipped: { model: string; reason: string }[] = [];
  providers.forEach((entry, p) => {
    if (!isObject(entry) || typeof entry.id !== 'string' || !Array.isArray(entry.models))
      throw refused(`providers[${p}] must have an id and a list of models`);
    const provider = GENAI_PROVIDERS[entry.id];
    if (provider === undefined) return;
    entry.models.forEach((model: unknown, m) => {
      const at = `${entry.id}.models[${m}]`;
      if (!isObject(model)) throw refused(`${at} must be an object`);
      const row = rowOf(provider, model, at, today);
      if (typeof row === 'string') skipped.push({ model: `${entry.id}/${String(model.id)}`, reason: row });
      else rows.push(row);
    });
  });
  return { rows, skipped };
}
