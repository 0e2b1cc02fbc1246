// The Stripe meter sink's state on disk, shared under a lock by the processes of one spool: each record's event as
// assigned (value with the carried remainder) and its sender, the events Stripe accepted, and each customer's running
// total per month, so neither a restart nor a second process loses or repeats a nano.
import {
  appendFileSync,
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { lockHolderAlive, thisLockHolder, withFileLock } from '@tollgate/core/process-lock';

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
interface BilledRecord {
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
  /** The process that sends it (undefined: a journal line of an earlier version, whose process is gone). */
  owner: Owner | undefined;
}

/** The UTC month a record's time falls in, `2026-11`: the period a customer's remainder is carried in. */
function meterPeriodOf(timestamp: string): string {
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
function carriedValue(totalBefore: number, costNanoUsd: number): number {
  return Math.floor((totalBefore + costNanoUsd) / NANO_PER_MICRO) - Math.floor(totalBefore / NANO_PER_MICRO);
}

/** This process as the journal names an event's sender: its host, id and start (a LockHolder). */
type Owner = [host: string, pid: number, startedAt: string];

/** How long a process waits for another to finish its turn at the journal. */
const LOCK_WAIT_MS = 10_000;
const LOCK_RETRY_MS = 2;

/**
 * The journal: one JSON line per fact, appended, shared by every process billing through one directory (processes of
 * one spool). `["e", id, customer, period, value, total, timestamp, at, owner]`: a record's event as assigned, and
 * the process that sends it (written before the event is sent, and before the usage spool may forget the record);
 * `["o", id, owner]`: another process took over sending it (its sender died); `["a", id, at]`: Stripe accepted it;
 * `["t", customer, period, total]`: a running total (after compaction). The journal of accepted ids the sink kept
 * before (`accepted.jsonl`, `[id, at]`) is read as accepted. Every change is made under the directory's lock
 * (`meter-events.lock`, core's withFileLock) after reading what the others appended: a record is assigned once,
 * against its customer's running total across every process, and each event has one sender.
 */
export class MeterJournal {
  readonly #path: string;
  readonly #lockPath: string;
  readonly #owner: Owner;
  readonly #assigned = new Map<string, Assigned>();
  readonly #accepted = new Map<string, number>();
  readonly #totals = new Map<string, number>();
  /** Records to assign at the next `sync()`. */
  #waiting: BilledRecord[] = [];
  #lines = 0;
  /** How far the file was read (bytes), and which file that was (a compaction replaces it). */
  #offset = 0;
  #ino: number | undefined;

  constructor(directory: string) {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    this.#path = join(directory, 'meter-events.jsonl');
    this.#lockPath = join(directory, 'meter-events.lock');
    const holder = thisLockHolder();
    this.#owner = [holder.host, holder.pid, holder.startedAt];
    for (const [id, at] of readLines(join(directory, 'accepted.jsonl'))) {
      if (typeof id === 'string' && typeof at === 'number') this.#accepted.set(id, at);
    }
    this.#catchUp();
  }

  /** Reads what was appended since the last read (all of it again after a compaction replaced the file). */
  #catchUp(): void {
    let handle: number;
    try {
      handle = openSync(this.#path, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    try {
      const { ino, size } = fstatSync(handle);
      if (ino !== this.#ino || size < this.#offset) {
        this.#assigned.clear();
        this.#totals.clear();
        this.#lines = 0;
        this.#offset = 0;
        this.#ino = ino;
      }
      if (size === this.#offset) return;
      const bytes = Buffer.alloc(size - this.#offset);
      const read = readSync(handle, bytes, 0, bytes.length, this.#offset);
      // Only whole lines: one being appended by a process that died midway is skipped when the next line follows it.
      const end = bytes.lastIndexOf(0x0a, read - 1) + 1;
      for (const line of parseLines(bytes.subarray(0, end).toString('utf8'))) {
        this.#lines++;
        this.#read(line);
      }
      this.#offset += end;
    } finally {
      closeSync(handle);
    }
  }

  #read(line: unknown[]): void {
    const [kind] = line;
    if (kind === 'e') {
      const [, identifier, customer, period, value, total, timestamp, at, owner] = line as [
        string,
        string,
        string,
        string,
        number,
        number,
        number,
        number,
        Owner | null | undefined,
      ];
      const event = { identifier, customer, value, timestamp };
      const accepted = this.#accepted.has(identifier);
      const sender = Array.isArray(owner) ? owner : undefined;
      this.#assigned.set(identifier, { event, total, period, at, accepted, owner: sender });
      this.#totals.set(totalKey(customer, period), total);
    } else if (kind === 'o') {
      const [, id, owner] = line as [string, string, Owner];
      const assigned = this.#assigned.get(id);
      if (assigned) assigned.owner = owner;
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

  /** A record to assign its event at the next `sync()`. */
  add(record: BilledRecord): void {
    this.#waiting.push(record);
  }

  /** Records added and not assigned yet. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Under the lock, after reading what the other processes appended: assigns each record added its event (a record
   * assigned before, by any process, adds nothing), takes over the events of senders that died before Stripe accepted
   * them, and writes both. Resolves with the events this process is now to send (those with a value).
   */
  async sync(now: number): Promise<MeterEvent[]> {
    return this.#locked(async () => {
      const lines: string[] = [];
      const events: MeterEvent[] = [];
      for (const record of this.#waiting) {
        if (this.has(record.id)) continue;
        const event = this.#assign(record, now, lines);
        if (event.value > 0) events.push(event);
      }
      this.#waiting = [];
      events.push(...this.#takeOver(lines));
      this.#append(lines);
      return events;
    });
  }

  /** Assigns a record its event, carrying its period's remainder across every process's records. */
  #assign(record: BilledRecord, now: number, lines: string[]): MeterEvent {
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
    this.#assigned.set(record.id, { event, total, period, at: now, accepted: false, owner: this.#owner });
    const owner = this.#owner;
    lines.push(
      lineOf(['e', event.identifier, event.customer, period, event.value, total, event.timestamp, now, owner]),
    );
    return event;
  }

  /** The unaccepted events whose sender died (or is unknown: a journal of an earlier version), now this process's. */
  #takeOver(lines: string[]): MeterEvent[] {
    const alive = new Map<string, boolean>();
    const events: MeterEvent[] = [];
    for (const assigned of this.#assigned.values()) {
      if (assigned.accepted || assigned.event.value <= 0 || this.#isMine(assigned.owner)) continue;
      const key = JSON.stringify(assigned.owner ?? null);
      let living = alive.get(key);
      if (living === undefined) {
        const [host, pid, startedAt] = assigned.owner ?? ['', 0, ''];
        living = assigned.owner !== undefined && lockHolderAlive({ host, pid, startedAt });
        alive.set(key, living);
      }
      if (living) continue;
      assigned.owner = this.#owner;
      lines.push(lineOf(['o', assigned.event.identifier, this.#owner]));
      events.push(assigned.event);
    }
    return events;
  }

  #isMine(owner: Owner | undefined): boolean {
    return owner !== undefined && owner.every((field, i) => field === this.#owner[i]);
  }

  /** Stripe accepted these: written before anything else learns it, so a crash after this sends them no more. */
  async accept(ids: readonly string[], now: number): Promise<void> {
    if (ids.length === 0) return;
    await this.#locked(async () => {
      this.#append(ids.map((id) => lineOf(['a', id, now])));
      for (const id of ids) {
        this.#accepted.set(id, now);
        const assigned = this.#assigned.get(id);
        if (assigned) assigned.accepted = true;
      }
      if (this.#lines > COMPACT_LINES) this.#compact(now);
    });
  }

  /** `work` under the directory's lock, with what the other processes appended read first. */
  #locked<T>(work: () => Promise<T>): Promise<T> {
    return withFileLock(
      this.#lockPath,
      async () => {
        this.#catchUp();
        return work();
      },
      {
        waitMs: LOCK_WAIT_MS,
        retryMs: LOCK_RETRY_MS,
        locked: (holder) =>
          new Error(`the Stripe meter journal ${this.#path} is held by process ${holder?.pid ?? '?'} for too long`),
      },
    );
  }

  /** Appends lines under the lock: nothing was appended since this process read, so it has read up to their end. */
  #append(lines: readonly string[]): void {
    if (lines.length === 0) return;
    const text = lines.join('');
    appendFileSync(this.#path, text, { mode: 0o600 });
    if (this.#ino === undefined) this.#ino = statSync(this.#path).ino;
    this.#offset += Buffer.byteLength(text);
    this.#lines += lines.length;
  }

  /** Rewrites the journal with the running totals, the events not accepted and the ids still remembered. */
  #compact(now: number): void {
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
      const { event, total, period, at, owner } = assigned;
      lines.push(lineOf(['e', id, event.customer, period, event.value, total, event.timestamp, at, owner ?? null]));
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
    const text = lines.join('');
    writeFileSync(temp, text, { mode: 0o600 });
    renameSync(temp, this.#path);
    this.#lines = lines.length;
    this.#ino = statSync(this.#path).ino;
    this.#offset = Buffer.byteLength(text);
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
  return parseLines(text);
}

/** The JSON arrays of a text, one a line; a line cut by a crash is skipped. */
function parseLines(text: string): unknown[][] {
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
