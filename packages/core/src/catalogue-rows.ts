// The maintained source's rows (catalogue-maintained.ts) as catalogue rows: prices in effect on a date, match rules.
import type { ModelPrice, TierPrice } from './pricing.js';

/** The source's match rule for the ids a row prices (dated and aliased ids). */
export type MatchRule =
  | { equals: string }
  | { starts_with: string }
  | { ends_with: string }
  | { contains: string }
  | { regex: string }
  | { or: MatchRule[] }
  | { and: MatchRule[] };

/** The media prices a maintained row may name (see `ModelPrice`). */
export const MEDIA_PRICE_FIELDS = [
  'audioInputPerMTok',
  'cachedAudioInputPerMTok',
  'audioOutputPerMTok',
  'imageInputPerMTok',
  'imageOutputPerMTok',
  'audioPerMinute',
] as const;

/** Prices of one row: standard classes, and those above a prompt length (the provider's long-context prices). */
export interface RowPrices {
  prices: TierPrice & Partial<Pick<ModelPrice, (typeof MEDIA_PRICE_FIELDS)[number]>>;
  longContext?: { aboveInputTokens: number } & TierPrice;
}

/** One row as generated from the maintained source. */
export interface MaintainedRow extends RowPrices {
  id: string;
  provider: string;
  kind?: 'embedding' | 'transcription' | 'speech' | 'image' | 'realtime';
  match: MatchRule;
  contextWindow?: number;
  /** Price changes the source has dated after the catalogue was generated (YYYY-MM-DD, UTC). */
  from?: readonly ({ date: string } & RowPrices)[];
}

/** A compiled match rule: true when the rule prices `id`. */
export type Matcher = (id: string) => boolean;

export function compileMatch(rule: MatchRule): Matcher {
  if ('equals' in rule) return (id) => id === rule.equals;
  if ('starts_with' in rule) return (id) => id.startsWith(rule.starts_with);
  if ('ends_with' in rule) return (id) => id.endsWith(rule.ends_with);
  if ('contains' in rule) return (id) => id.includes(rule.contains);
  if ('regex' in rule) {
    const pattern = new RegExp(rule.regex);
    return (id) => pattern.test(id);
  }
  const parts = ('or' in rule ? rule.or : rule.and).map(compileMatch);
  return 'or' in rule ? (id) => parts.some((part) => part(id)) : (id) => parts.every((part) => part(id));
}

/** The row's prices in effect on `day` (YYYY-MM-DD): the latest dated change on or before it. */
function pricesOn(row: MaintainedRow, day: string): RowPrices {
  let current: RowPrices = row;
  for (const change of row.from ?? []) if (change.date <= day) current = change;
  return current;
}

/** A maintained row as a catalogue row on `day`, our own fields (limits, tokenizer, tiers) laid over it. */
export function catalogueRow(row: MaintainedRow, day: string, ours: Partial<ModelPrice> | undefined): ModelPrice {
  const { prices, longContext } = pricesOn(row, day);
  const price: ModelPrice = {
    provider: row.provider,
    ...(row.kind ? { kind: row.kind } : {}),
    ...(row.contextWindow ? { contextWindow: row.contextWindow } : {}),
    inputPerMTok: prices.inputPerMTok!,
    outputPerMTok: prices.outputPerMTok ?? 0,
    ...prices,
    ...(longContext ? { longContext } : {}),
  };
  return ours ? { ...price, ...ours } : price;
}
