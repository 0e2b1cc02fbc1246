// What the providers billed, per day and model, beside what the ledger recorded: OpenAI's organization costs API and
// Anthropic's cost report (admin keys), read page by page, for `tollgate reconcile-provider`.
import { usdToNano } from '@tollgate/core';
import { modelFamilies } from '@tollgate/core/costs';
import type { Pricing } from '@tollgate/core';
import { usageOverTime } from '@tollgate/metering';
import type { LedgerLocation, Queryable } from '@tollgate/metering';

export type BilledProvider = 'openai' | 'anthropic';

/** One provider's figure: a day (UTC, YYYY-MM-DD), a model as the provider names it, its cost. */
interface BilledCost {
  day: string;
  model: string;
  costNanoUsd: number;
}

interface ProviderBillingOptions {
  provider: BilledProvider;
  /** The admin key (OpenAI: an admin key; Anthropic: an Admin API key). */
  adminKey: string;
  /** First day, UTC (YYYY-MM-DD), inclusive. */
  from: string;
  /** Last day, UTC (YYYY-MM-DD), inclusive. */
  to: string;
  /** @default https://api.openai.com or https://api.anthropic.com */
  baseUrl?: string;
  /** Each page's time limit. @default 30000 */
  timeoutMs?: number;
}

const DAY_MS = 86_400_000;
/** Pages read at most: a loop on a cursor that never ends is a provider's bug, not a reason to spin. */
const MAX_PAGES = 1000;

const DEFAULT_BASE: Record<BilledProvider, string> = {
  openai: 'https://api.openai.com',
  anthropic: 'https://api.anthropic.com',
};

function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The days asked for, as epoch ms of their start and of the end of the last. */
function dayRange(from: string, to: string): { start: number; end: number } {
  const day = /^\d{4}-\d{2}-\d{2}$/;
  const start = Date.parse(`${from}T00:00:00Z`);
  const last = Date.parse(`${to}T00:00:00Z`);
  if (!day.test(from) || !day.test(to) || Number.isNaN(start) || Number.isNaN(last))
    throw new Error(`--from and --to must be days as YYYY-MM-DD; got ${from} and ${to}`);
  if (last < start) throw new Error(`--to (${to}) is before --from (${from})`);
  if (last - start > 366 * DAY_MS) throw new Error('a reconciliation covers at most 366 days');
  return { start, end: last + DAY_MS };
}

async function getJson(url: URL, headers: Record<string, string>, timeoutMs: number): Promise<unknown> {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  const text = await response.text();
  if (!response.ok) {
    // The provider's own message, cut short; never the key.
    let message = text.slice(0, 300);
    try {
      const parsed = JSON.parse(text) as { error?: { message?: unknown } };
      if (typeof parsed.error?.message === 'string') message = parsed.error.message;
    } catch {
      // not JSON: the text itself
    }
    throw new Error(`${url.origin}${url.pathname} answered ${response.status}: ${message}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${url.origin}${url.pathname} answered what is not JSON`);
  }
}

interface Page<Bucket> {
  data?: Bucket[];
  has_more?: boolean;
  next_page?: string | null;
}

/** Reads every page of a bucketed report, following `next_page` while `has_more`. */
async function allBuckets<Bucket>(first: URL, headers: Record<string, string>, timeoutMs: number): Promise<Bucket[]> {
  const buckets: Bucket[] = [];
  let url = first;
  for (let page = 0; page < MAX_PAGES; page++) {
    const body = (await getJson(url, headers, timeoutMs)) as Page<Bucket>;
    if (!Array.isArray(body.data)) throw new Error(`${url.origin}${url.pathname} answered without a "data" list`);
    buckets.push(...body.data);
    if (!body.has_more || !body.next_page) return buckets;
    url = new URL(first);
    url.searchParams.set('page', body.next_page);
  }
  throw new Error(`${first.origin}${first.pathname} kept answering has_more after ${MAX_PAGES} pages`);
}

interface OpenAiBucket {
  start_time: number;
  results?: { amount?: { value?: number; currency?: string }; line_item?: string | null }[];
}

/** OpenAI names a cost by line item ("gpt-4o-2024-08-06, input"): the model is what comes before the comma. */
function modelOfLineItem(lineItem: string | null | undefined): string {
  if (!lineItem) return '(no line item)';
  return lineItem.split(',')[0]!.trim().toLowerCase();
}

async function openAiCosts(options: ProviderBillingOptions, start: number, end: number): Promise<BilledCost[]> {
  const url = new URL('/v1/organization/costs', options.baseUrl ?? DEFAULT_BASE.openai);
  url.searchParams.set('start_time', String(start / 1000));
  url.searchParams.set('end_time', String(end / 1000));
  url.searchParams.set('bucket_width', '1d');
  url.searchParams.append('group_by', 'line_item');
  url.searchParams.set('limit', '180');
  const buckets = await allBuckets<OpenAiBucket>(
    url,
    { authorization: `Bearer ${options.adminKey}` },
    options.timeoutMs ?? 30_000,
  );
  return buckets.flatMap((bucket) =>
    (bucket.results ?? []).map((result) => {
      const currency = result.amount?.currency?.toLowerCase() ?? 'usd';
      if (currency !== 'usd') throw new Error(`OpenAI billed in ${currency}: only USD is compared`);
      return {
        day: dayOf(bucket.start_time * 1000),
        model: modelOfLineItem(result.line_item),
        costNanoUsd: usdToNano(Number(result.amount?.value ?? 0)),
      };
    }),
  );
}

interface AnthropicBucket {
  starting_at: string;
  results?: { amount?: string; currency?: string; model?: string | null; cost_type?: string | null }[];
}

async function anthropicCosts(options: ProviderBillingOptions, start: number, end: number): Promise<BilledCost[]> {
  const url = new URL('/v1/organizations/cost_report', options.baseUrl ?? DEFAULT_BASE.anthropic);
  url.searchParams.set('starting_at', new Date(start).toISOString());
  url.searchParams.set('ending_at', new Date(end).toISOString());
  url.searchParams.set('bucket_width', '1d');
  url.searchParams.append('group_by[]', 'description');
  url.searchParams.set('limit', '31');
  const buckets = await allBuckets<AnthropicBucket>(
    url,
    { 'x-api-key': options.adminKey, 'anthropic-version': '2023-06-01' },
    options.timeoutMs ?? 30_000,
  );
  return buckets.flatMap((bucket) =>
    (bucket.results ?? []).map((result) => {
      const currency = result.currency?.toUpperCase() ?? 'USD';
      if (currency !== 'USD') throw new Error(`Anthropic billed in ${currency}: only USD is compared`);
      // The amount is in cents, as a decimal string ("123.45" is $1.2345).
      const cents = Number(result.amount ?? '0');
      if (!Number.isFinite(cents))
        throw new Error(`Anthropic answered an amount that is not a number: ${result.amount}`);
      return {
        day: dayOf(Date.parse(bucket.starting_at)),
        model: result.model ? result.model.toLowerCase() : `(${result.cost_type ?? 'other'})`,
        costNanoUsd: usdToNano(cents / 100),
      };
    }),
  );
}

/** What the provider billed per day and model, every page read. */
export async function providerCosts(options: ProviderBillingOptions): Promise<BilledCost[]> {
  const { start, end } = dayRange(options.from, options.to);
  return options.provider === 'openai' ? openAiCosts(options, start, end) : anthropicCosts(options, start, end);
}

/** What the ledger recorded for the provider per day and model (UTC days). */
export async function ledgerCosts(
  ledger: Queryable,
  options: { provider: BilledProvider; from: string; to: string } & LedgerLocation,
): Promise<BilledCost[]> {
  const { start, end } = dayRange(options.from, options.to);
  const points = await usageOverTime(ledger, {
    ...(options.schema ? { schema: options.schema } : {}),
    ...(options.table ? { table: options.table } : {}),
    provider: options.provider,
    since: new Date(start),
    until: new Date(end),
    bucketSeconds: 86_400,
    splitBy: 'model',
  });
  return points.map((point) => ({
    day: dayOf(point.bucket),
    model: (point.group ?? '(no model)').toLowerCase(),
    costNanoUsd: point.costNanoUsd,
  }));
}

export interface ReconciledRow {
  day: string;
  model: string;
  providerNanoUsd: number;
  ledgerNanoUsd: number;
  /** The provider's figure less the ledger's. */
  differenceNanoUsd: number;
  /** The difference against the larger of the two figures (0 when both are 0). */
  differenceShare: number;
  /** Past both thresholds. */
  flagged: boolean;
}

interface ReconcileThresholds {
  /** A row is flagged when its difference passes this share of its larger figure. @default 0.05 */
  share?: number;
  /** …and this amount, in nano-USD (rounding on small rows is not a finding). @default 10,000,000 (one cent) */
  minNanoUsd?: number;
}

/**
 * Both sides per day and model, side by side. Models are matched by the catalogue's names (a dated id, "gpt-4o-2024-08-06",
 * meets the ledger's "gpt-4o" when the catalogue prices the family), so a provider's naming does not make a gap.
 */
export function reconcileCosts(
  billed: readonly BilledCost[],
  recorded: readonly BilledCost[],
  pricing: Pricing,
  thresholds: ReconcileThresholds = {},
): ReconciledRow[] {
  const share = thresholds.share ?? 0.05;
  const minNano = thresholds.minNanoUsd ?? 10_000_000;
  const known = new Set(pricing.models());
  const nameOf = (model: string) => modelFamilies(model).find((family) => known.has(family)) ?? model;
  const rows = new Map<string, ReconciledRow>();
  const add = (cost: BilledCost, side: 'providerNanoUsd' | 'ledgerNanoUsd') => {
    const model = nameOf(cost.model);
    const key = `${cost.day}\u0000${model}`;
    let row = rows.get(key);
    if (!row) {
      row = {
        day: cost.day,
        model,
        providerNanoUsd: 0,
        ledgerNanoUsd: 0,
        differenceNanoUsd: 0,
        differenceShare: 0,
        flagged: false,
      };
      rows.set(key, row);
    }
    row[side] += cost.costNanoUsd;
  };
  for (const cost of billed) add(cost, 'providerNanoUsd');
  for (const cost of recorded) add(cost, 'ledgerNanoUsd');
  for (const row of rows.values()) {
    row.differenceNanoUsd = row.providerNanoUsd - row.ledgerNanoUsd;
    const larger = Math.max(row.providerNanoUsd, row.ledgerNanoUsd);
    row.differenceShare = larger === 0 ? 0 : Math.abs(row.differenceNanoUsd) / larger;
    row.flagged = row.differenceShare > share && Math.abs(row.differenceNanoUsd) >= minNano;
  }
  return [...rows.values()].sort((a, b) => a.day.localeCompare(b.day) || a.model.localeCompare(b.model));
}
