// A price source (the gateway's `prices`): a file or a URL read at start and at each refresh into one pricing table.
import { readFile } from 'node:fs/promises';
import type { Pricing } from './pricing.js';

type PriceChange = ReturnType<Pricing['loadSource']>['changes'][number];

/** Where the prices come from and how often they are read again (the config's `prices`, resolved). */
export interface PriceSourceOptions {
  /** An http(s) URL, or a file path. */
  source: string;
  refreshMs: number;
}

/** What `/admin/prices` shows and the metrics read. */
export interface PriceStatus {
  source: string | null;
  /** The prices in use (`Pricing.version`). */
  version: string;
  /** ISO time the prices in use were loaded; null: the shipped table, no source loaded yet. */
  loadedAt: string | null;
  /** ISO time the source was last read, whether or not it changed. */
  checkedAt: string | null;
  /** What the last load changed, by model. */
  changes: PriceChange[];
  /** Why the last read was refused (the prices in use were kept); null when it was taken or unchanged. */
  lastError: { at: string; message: string } | null;
  /** Reads refused since the start. */
  failures: number;
}

export interface PriceRefresh {
  status(): PriceStatus;
  /** Reads the source now (what the timer does); never rejects. */
  refresh(): Promise<void>;
  close(): void;
}

export interface PriceLog {
  info(line: string): void;
  error(line: string): void;
}

/** A source that does not answer within this is a failed read: the prices in use stay. */
const FETCH_TIMEOUT_MS = 10_000;
/** LiteLLM's file is about 1.5 MB; a source past this is refused rather than held in memory. */
const MAX_SOURCE_BYTES = 32 * 1024 * 1024;
/** Changed models named in the log line; the rest are counted (all are on /admin/prices). */
const LOGGED_CHANGES = 10;

const isUrl = (source: string) => /^https?:\/\//i.test(source);

/** The text of a URL source, or undefined when it answered 304 (unchanged since the ETag it was asked with). */
async function fetchSource(url: string, etag: { value?: string }): Promise<string | undefined> {
  const response = await fetch(url, {
    headers: etag.value ? { 'if-none-match': etag.value } : {},
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    redirect: 'follow',
  });
  if (response.status === 304) return undefined;
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  const length = Number(response.headers.get('content-length'));
  if (length > MAX_SOURCE_BYTES) throw new Error(`${url} is ${length} bytes, more than ${MAX_SOURCE_BYTES}`);
  const text = await response.text();
  if (text.length > MAX_SOURCE_BYTES) throw new Error(`${url} is more than ${MAX_SOURCE_BYTES} bytes`);
  etag.value = response.headers.get('etag') ?? undefined;
  return text;
}

function describeChanges(changes: readonly PriceChange[]): string {
  const named = changes.slice(0, LOGGED_CHANGES).map((change) => {
    if (change.before === null) return `${change.model} added`;
    if (change.after === null) return `${change.model} removed`;
    const { before, after } = change;
    const input = `input ${before.inputPerMTok} -> ${after.inputPerMTok}`;
    return `${change.model} ${input}, output ${before.outputPerMTok} -> ${after.outputPerMTok} USD/MTok`;
  });
  const more = changes.length > LOGGED_CHANGES ? `; and ${changes.length - LOGGED_CHANGES} more` : '';
  return `${changes.length} models changed${changes.length > 0 ? `: ${named.join('; ')}${more}` : ''}`;
}

/**
 * Loads `options.source` into `pricing` now and every `refreshMs`: a source that cannot be read, or does not validate,
 * is refused whole and logged at error level, the prices in use kept (the shipped table until a first load). Each
 * process reads the source itself; the version is a hash of its rows, so processes reading the same source agree.
 * Without `options`, the shipped table (and the config's `models`) stays, and the status says so.
 */
export function startPriceRefresh(
  pricing: Pricing,
  options: PriceSourceOptions | undefined,
  log: PriceLog,
): PriceRefresh {
  const status: PriceStatus = {
    source: options?.source ?? null,
    version: pricing.version,
    loadedAt: null,
    checkedAt: null,
    changes: [],
    lastError: null,
    failures: 0,
  };
  const etag: { value?: string } = {};
  let lastText: string | undefined;
  let running: Promise<void> | undefined;

  if (options === undefined)
    return { status: () => ({ ...status }), refresh: () => Promise.resolve(), close: () => undefined };
  const { source } = options;

  async function readOnce(): Promise<void> {
    const now = () => new Date().toISOString();
    try {
      const text = isUrl(source) ? await fetchSource(source, etag) : await readFile(source, 'utf8');
      status.checkedAt = now();
      status.lastError = null;
      // Unchanged (304, or the same bytes): nothing to check again.
      if (text === undefined || text === lastText) return;
      const update = pricing.loadSource(text);
      lastText = text;
      if (update.version === status.version) return;
      status.version = update.version;
      status.loadedAt = status.checkedAt;
      status.changes = update.changes;
      log.info(`tollgate prices: version ${update.version} loaded from ${source}; ${describeChanges(update.changes)}`);
    } catch (error) {
      status.failures++;
      const message = error instanceof Error ? error.message : String(error);
      status.lastError = { at: now(), message };
      log.error(`tollgate prices: ${source} refused, the prices in use (${status.version}) kept: ${message}`);
    }
  }

  const refresh = () => (running ??= readOnce().finally(() => (running = undefined)));
  void refresh();
  const timer = setInterval(() => void refresh(), options.refreshMs);
  timer.unref();
  return {
    status: () => ({ ...status }),
    refresh,
    close: () => clearInterval(timer),
  };
}
