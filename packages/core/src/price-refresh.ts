// A price source (the gateway's `prices`): a file or a URL read at start and at each refresh into one pricing table.
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { readSourceOffLoop } from './price-read.js';
import type { Pricing, PriceUpdate } from './pricing.js';

type PriceChange = ReturnType<Pricing['loadSource']>['changes'][number];

/** Where the prices come from and how often they are read again (the config's `prices`, resolved). */
export interface PriceSourceOptions {
  /** An http(s) URL, or a file path. */
  source: string;
  refreshMs: number;
  /**
   * A file where the last source that loaded is kept: read at start when the source cannot be, so that a restart
   * during the source's outage prices as before it (not at the shipped table).
   */
  keep?: string;
}

/** What `/admin/prices` shows and the metrics read. */
export interface PriceStatus {
  source: string | null;
  /** The prices in use (`Pricing.version`). */
  version: string;
  /** ISO time the prices in use were loaded; null: the shipped table, no source loaded yet. */
  loadedAt: string | null;
  /** The prices in use are the kept copy of an earlier load (the source could not be read since the start). */
  fromKeptCopy: boolean;
  /** ISO time the source was last read, whether or not it changed. */
  checkedAt: string | null;
  /** What the last load changed, by model. */
  changes: PriceChange[];
  /**
   * Why the last read was refused (the prices in use were kept); null once a read is taken. It stays while the source
   * answers unchanged (a 304), so that a refused source stays visible until a good one loads.
   */
  lastError: { at: string; message: string } | null;
  /** Rows of the source in use left out because a cost their provider bills is missing. */
  refusedRows: PriceUpdate['refused'];
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
  /** Told when a load changed the prices in use (the gateway records it in its audit trail). @default none */
  loaded?(load: PriceLoad): void;
}

/** A load that changed the prices in use: from where, the versions before and after, what changed. */
export interface PriceLoad {
  source: string;
  before: string;
  after: string;
  changes: readonly PriceChange[];
  /** The process's first load of its source (at start): the config's prices taken into use, not a change. */
  first: boolean;
}

/** Changed models named in the log line; the rest are counted (all are on /admin/prices). */
const LOGGED_CHANGES = 10;
/** Until a first load, a refused read is tried again this soon rather than a whole `refresh` later (/readyz waits on it). */
const FIRST_LOAD_RETRY_MS = 5_000;

/** Keeps the text of a source that loaded (written whole, then renamed: a crash leaves the older copy). */
async function keepCopy(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, text, { mode: 0o600 });
  await rename(temporary, path);
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
    fromKeptCopy: false,
    checkedAt: null,
    changes: [],
    lastError: null,
    refusedRows: [],
    failures: 0,
  };
  let etag: string | undefined;
  let lastDigest: string | undefined;
  let running: Promise<void> | undefined;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;

  if (options === undefined)
    return { status: () => ({ ...status }), refresh: () => Promise.resolve(), close: () => undefined };
  const { source, refreshMs } = options;

  const now = () => new Date().toISOString();

  /** Takes `text` as the prices in use; throws when it does not validate. */
  function load(text: string, digest: string, from: string): void {
    const update = pricing.loadSource(text);
    lastDigest = digest;
    status.refusedRows = update.refused;
    if (update.refused.length > 0)
      log.error(
        `tollgate prices: ${update.refused.length} row(s) of ${from} left out, a cost their provider bills missing: ` +
          update.refused
            .slice(0, LOGGED_CHANGES)
            .map((row) => `${row.model} (${row.reason})`)
            .join('; '),
      );
    // A source whose prices are the table's own is loaded all the same: the prices in use are the source's.
    if (update.version === status.version) {
      status.loadedAt ??= now();
      return;
    }
    const before = status.version;
    const first = status.loadedAt === null;
    status.version = update.version;
    status.loadedAt = now();
    status.changes = update.changes;
    log.info(`tollgate prices: version ${update.version} loaded from ${from}; ${describeChanges(update.changes)}`);
    log.loaded?.({ source: from, before, after: update.version, changes: update.changes, first });
  }

  /** At start, when the source cannot be read: the copy an earlier load kept, if there is one that validates. */
  async function loadKeptCopy(): Promise<void> {
    if (!options?.keep || status.loadedAt !== null) return;
    let read: Awaited<ReturnType<typeof readSourceOffLoop>>;
    try {
      read = await readSourceOffLoop(options.keep, undefined);
    } catch {
      return;
    }
    try {
      load(read!.served, read!.digest, `the kept copy ${options.keep}`);
      status.fromKeptCopy = true;
    } catch (error) {
      log.error(`tollgate prices: the kept copy ${options.keep} refused: ${(error as Error).message}`);
    }
  }

  async function readOnce(): Promise<void> {
    try {
      // Read, checked whole and cut down to the rows served here in a worker thread: a large file parsed here would
      // stall requests.
      const read = await readSourceOffLoop(source, etag);
      status.checkedAt = now();
      // Unchanged since the prices in use were taken (a 304 is asked only against their ETag, or the same bytes):
      // the source is good again. A refused body is never taken, so its error stays until a good one loads.
      if (read === undefined || read.digest === lastDigest) {
        if (status.loadedAt !== null && !status.fromKeptCopy) status.lastError = null;
        return;
      }
      load(read.served, read.digest, source);
      // Asked with only once taken: a refused body is read again, never answered 304 and forgotten.
      etag = read.etag;
      status.lastError = null;
      status.fromKeptCopy = false;
      if (options?.keep)
        await keepCopy(options.keep, read.served).catch((error: Error) =>
          log.error(`tollgate prices: cannot keep a copy of ${source} at ${options.keep}: ${error.message}`),
        );
    } catch (error) {
      status.failures++;
      const message = error instanceof Error ? error.message : String(error);
      status.lastError = { at: now(), message };
      log.error(`tollgate prices: ${source} refused, the prices in use (${status.version}) kept: ${message}`);
      await loadKeptCopy();
      if ((status.loadedAt === null || status.fromKeptCopy) && !closed) {
        retry = setTimeout(() => void refresh(), Math.min(FIRST_LOAD_RETRY_MS, refreshMs));
        retry.unref();
      }
    }
  }

  const refresh = () => (running ??= readOnce().finally(() => (running = undefined)));
  void refresh();
  const timer = setInterval(() => void refresh(), refreshMs);
  timer.unref();
  return {
    status: () => ({ ...status }),
    refresh,
    close: () => {
      closed = true;
      clearInterval(timer);
      clearTimeout(retry);
    },
  };
}
