// The Stripe meter sink's state on disk: each record's event as assigned (value with the carried remainder), the
// events Stripe accepted, and each customer's running total per month, so a restart neither loses nor repeats a nano.
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** One meter event as Stripe receives it. */
export interface MeterEvent {
  identifier: string;
  customer: string;
  /** USD micro-units (millionths of a dollar), a whole number. */
  value: number;
  /** Seconds since the epoch. */
  timestamp: number;
}

/** A record the sink bills: whose, when and what it cost. */
export interface BilledRecord {
  id: string;
  customer: string;
  /** The record's time (ISO 8601): its month is the period its remainder is carried in. */
  timestamp: string;
  costNanoUsd: number;
}

/** Stripe keeps an identifier unique for at least a day; the journal remembers ids a little longer. */
const REMEMBER_MS = 36 * 60 * 60 * 1000;
/** Past this many lines the journal is rewritten with what is still remembered. */
const COMPACT_LINES = 100_000;
/** Running totals of months older than this many are dropped at compaction (a record that late starts over). */
const MONTHS_KEPT = 3;
const NANO_PER_MICRO = 1000;

interface Assigned {
  event: MeterEvent;
  /** The period's running total (nano-USD) after this record: written with it, read back at start. */
  total: number;
  period: string;
  /** When it was assigned (ms): remembered for REMEMBER_MS after that, or while not accepted. */
  at: number;
  accepted: boolean;
}

/** The UTC month a record's time falls in, `2026-11`: the period a customer's remainder is carried in. */
export function meterPeriodOf(timestamp: string): string {
  return new Date(timestamp).toISOString().slice(0, 7);
}

/** The key of a customer's running total in one period. */
function totalKey(customer: string, period: string): string {
  return `${customer} ${period}`;
}

/**
 * The value of a record's event: its period's running total in whole micro-USD after it, less before it. So the
 * events of a customer's period add up to floor(the period's nano-USD / 1000) exactly: what is under a micro-USD is
 * carried to the next record (a record whose cost carries no whole micro-USD makes no event), and only the last
 * remainder of a period, under $0.000001, is never billed.
 */
export function carriedValue(totalBefore: number, costNanoUsd: number): number {
  return Math.floor((totalBefore + costNanoUsd) / NANO_PER_MICRO) - Math.floor(totalBefore / NANO_PER_MICRO);
}

/**
 * The journal: one JSON line per fact, appended. `["e", id, customer, period, value, total, timestamp, at]`: a
 * record's event as assigned (written before the event is sent, and before the usage spool may forget the record);
 * `["a", id, at]`: Stripe accepted it; `["t", customer, period, total]`: a running total (after compaction). The
 * journal of accepted ids the sink kept before (`accepted.jsonl`, `[id, at]`) is read as accepted.
 */
export class MeterJournal {
  readonly #path: string;
  readonly #assigned = new Map<string, Assigned>();
  readonly #accepted = new Map<string, number>();
  readonly #totals = new Map<string, number>();
  /** Lines assigned in memory and not yet on disk: written by `persist()`. */
  #unwritten: string[] = [];
  #lines = 0;

  constructor(directory: string) {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    this.#path = join(directory, 'meter-events.jsonl');
    for (const [id, at] of readLines(join(directory, 'accepted.jsonl'))) {
      if (typeof id === 'string' && typeof at === 'number') this.#accepted.set(id, at);
    }
    for (const line of readLines(this.#path)) {
      this.#lines++;
      this.#read(line);
    }
  }

  #read(line: unknown[]): void {
    const [kind] = line;
    if (kind === 'e') {
      const [, identifier, customer, period, value, total, timestamp, at] = line as [
        string,
        string,
        string,
        string,
        number,
        number,
        number,
        number,
      ];
      const event = { identifier, customer, value, timestamp };
      this.#assigned.set(identifier, { event, total, period, at, accepted: this.#accepted.has(identifier) });
      this.#totals.set(totalKey(customer, period), total);
    } else if (kind === 'a') {
      const [, id, at] = line as [string, string, number];
      this.#accepted.set(id, at);
      const assigned = this.#assigned.get(id);
      if (assigned) assigned.accepted = true;
    } else if (kind === 't') {
      const [, customer, period, total] = line as [string, string, string, number];
      this.#totals.set(totalKey(customer, period), total);
    }
  }

  /** Whether the record was assigned its event already (or accepted before this journal): a replay adds nothing. */
  has(id: string): boolean {
    return this.#assigned.has(id) || this.#accepted.has(id);
  }

  /** Events assigned, with a value, that Stripe has not accepted: to send (at start, those of the last process). */
  unaccepted(): MeterEvent[] {
    const events: MeterEvent[] = [];
    for (const assigned of this.#assigned.values())
      if (!assigned.accepted && assigned.event.value > 0) events.push(assigned.event);
    return events;
  }

  /** Assigns a record its event, carrying its period's remainder; the caller sends it if its value is above 0. */
  assign(record: BilledRecord, now: number): MeterEvent {
    const period = meterPeriodOf(record.timestamp);
    const key = totalKey(record.customer, period);
    const before = this.#totals.get(key) ?? 0;
    const total = before + record.costNanoUsd;
    const event = {
      identifier: record.id,
      customer: record.customer,
      value: carriedValue(before, record.costNanoUsd),
      timestamp: Math.floor(Date.parse(record.timestamp) / 1000),
    };
    this.#totals.set(key, total);
    this.#assigned.set(record.id, { event, total, period, at: now, accepted: false });
    this.#unwritten.push(
      lineOf(['e', event.identifier, event.customer, period, event.value, total, event.timestamp, now]),
    );
    return event;
  }

  /** Writes what was assigned since the last call: before any of it is sent, and before the spool forgets a record. */
  persist(): void {
    if (this.#unwritten.length === 0) return;
    this.#append(this.#unwritten);
    this.#unwritten = [];
  }

  /** Stripe accepted these: written before anything else learns it, so a crash after this sends them no more. */
  accept(ids: readonly string[], now: number): void {
    if (ids.length === 0) return;
    this.persist();
    this.#append(ids.map((id) => lineOf(['a', id, now])));
    for (const id of ids) {
      this.#accepted.set(id, now);
      const assigned = this.#assigned.get(id);
      if (assigned) assigned.accepted = true;
    }
    if (this.#lines > COMPACT_LINES) this.#compact(now);
  }

  #append(lines: readonly string[]): void {
    appendFileSync(this.#path, lines.join(''), { mode: 0o600 });
    this.#lines += lines.length;
  }

  /** Rewrites the journal with the running totals, the events not accepted and the ids still remembered. */
  #compact(now: number): void {
    this.persist();
    const since = now - REMEMBER_MS;
    const oldest = new Date(now);
    oldest.setUTCMonth(oldest.getUTCMonth() - MONTHS_KEPT);
    const oldestPeriod = oldest.toISOString().slice(0, 7);
    const lines: string[] = [];
    for (const [id, assigned] of this.#assigned) {
      if (assigned.accepted && assigned.at < since) {
        this.#assigned.delete(id);
        continue;
      }
      const { event, total, period, at } = assigned;
      lines.push(lineOf(['e', id, event.customer, period, event.value, total, event.timestamp, at]));
    }
    for (const [id, at] of this.#accepted) {
      if (at < since) this.#accepted.delete(id);
      else lines.push(lineOf(['a', id, at]));
    }
    // Totals last: they are the latest of each period, after every event line written above.
    for (const [key, total] of this.#totals) {
      const [customer, period] = key.split(' ') as [string, string];
      if (period < oldestPeriod) this.#totals.delete(key);
      else lines.push(lineOf(['t', customer, period, total]));
    }
    const temp = `${this.#path}.tmp`;
    writeFileSync(temp, lines.join(''), { mode: 0o600 });
    renameSync(temp, this.#path);
    this.#lines = lines.length;
  }
}

function lineOf(fields: readonly unknown[]): string {
  return `${JSON.stringify(fields)}\n`;
}

/** The JSON lines of a file (none when it does not exist); a line cut by a crash is skipped. */
function readLines(path: string): unknown[][] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const lines: unknown[][] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      const parsed = JSON.parse(line) as unknown;
      if (Array.isArray(parsed)) lines.push(parsed);
    } catch {
      // A line cut by a crash: what it was writing is assigned or sent again (Stripe drops a duplicate identifier).
    }
  }
  return lines;
}
