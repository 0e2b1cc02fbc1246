// The usage spool: calls sent and records not yet stored by every sink, kept on local disk so that a crash loses none.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fdatasync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import { lockHolderAlive, readLockHolder, thisLockHolder } from '@tollgate/core/process-lock';
import type { UsageRecord } from '@tollgate/core';
import { logOnce, writeToSinks } from './sink.js';
import type { SinkErrorHandler, UsageSink } from './sink.js';

interface UsageSpoolOptions {
  /**
   * Directory of the spool (created if missing), on a local disk. Processes may share one: each
   * keeps files of its own, and takes over those of a process of this host that died. Required.
   */
  directory: string;
  /** Where records go; the spool holds them (and closes them). Required. */
  sinks: UsageSink[];
  /** How often every sink is flushed and checkpointed, and the spool synced to disk, in ms. @default 1000 */
  checkpointIntervalMs?: number;
  /** Past this size a spool file is set aside for a new one, and deleted once every sink stored its records. @default 1 MiB */
  maxFileBytes?: number;
  /** Receives the spool's failures (a write or a sync that failed, a line that is not JSON). @default a warning for the first failure, then every 1000th */
  onError?: SinkErrorHandler;
}

const KNOWN = [
  'directory',
  'sinks',
  'checkpointIntervalMs',
  'maxFileBytes',
  'onError',
] as const satisfies readonly (keyof UsageSpoolOptions)[];

/** What `replay()` found in the spool files of processes that died. */
export interface SpoolReplay {
  /** Processes whose files were taken over. */
  processes: number;
  /** Records written again (to the sinks that had not stored them). */
  records: number;
  /** Calls sent that never got a record: recorded at their reservation's bound. */
  recovered: number;
}

export interface UsageSpool {
  readonly directory: string;
  readonly sinks: readonly UsageSink[];
  /**
   * Writes what processes that died left in the directory to the sinks: records some sink had not
   * stored, and a record for every call they sent without settling it, charged at its reservation's
   * bound. Runs once (later calls get the same promise); resolves once the sinks took it, or failed
   * to (then it is tried again at every checkpoint, and stays on disk until stored).
   */
  replay(): Promise<SpoolReplay>;
  /**
   * Notes a call about to reach the provider, synchronously: `record` is what it is charged should
   * no record of it follow (its process died). Same `id` as the record `deliver` gets later.
   */
  writeIntent(record: UsageRecord, api: string): void;
  /** Writes the record to the spool (synchronously), then hands it to every sink. */
  deliver(record: UsageRecord): void;
  /** Flushes every sink and checkpoints; resolves whether everything so far is stored. */
  flush(): Promise<boolean>;
  /** Flushes, checkpoints, closes the sinks and the spool. What is not stored stays on disk for the next start. */
  close(): Promise<void>;
}

/** One line of a spool file. */
type SpoolLine =
  | { type: 'intent'; api: string; record: UsageRecord }
  | { type: 'record'; seq: number; record: UsageRecord }
  /** Sink `sink` stored every record up to `seq`; those after it start at or after `mark` in it. */
  | { type: 'checkpoint'; sink: string; seq: number; mark?: unknown };

interface SinkState {
  sink: UsageSink;
  /** The sink's name, or its place in the list. */
  key: string;
  /** Every record up to this sequence number is stored in the sink. */
  checkpoint: number;
  /** Where the sink stood when checkpointed (or when the spool opened): whatever it stored since lies after it. */
  mark: unknown;
  /** The sink's `dropped` when last seen. */
  dropped: number;
  /** Records after `checkpoint` and up to this one may be missing from the sink (it dropped some): written again. */
  redeliverThrough: number | undefined;
}

/** What a dead process left: its files, and per sink the records it had not stored. */
interface Orphan {
  files: string[];
  pending: Map<string, { records: UsageRecord[]; mark: unknown; done: boolean }>;
}

/** What the spool files of one process hold, read back. */
interface SpoolContents {
  checkpoints: Map<string, { seq: number; mark: unknown }>;
  records: Map<string, { seq: number; record: UsageRecord }>;
  intents: Map<string, UsageRecord>;
}

const OWNER = /^[0-9a-f]{16}$/;
const DATA_FILE = /^([0-9a-f]{16})\.([0-9a-f]{16})\.(\d+)\.jsonl$/;
/** Records a sink is given at once when written again without `replay()`, each slice flushed before the next. */
const REDELIVERY_SLICE = 1000;
/** Owners of the spools open in this process: alive, whatever their lock's pid says. */
const openOwners = new Set<string>();

const syncData = promisify(fdatasync);

function spoolError(directory: string, error: unknown): TollgateError {
  const message = error instanceof Error ? error.message : String(error);
  return new TollgateError(
    'ERR_TG_METERING_SPOOL_UNAVAILABLE',
    `cannot open the usage spool in ${directory}: ${message}`,
    { cause: error },
  );
}

/** Reads one spool file into `into`; a last line cut by a crash is left out, another line that is not JSON is reported. */
function readSpoolText(text: string, file: string, into: SpoolContents, onError: SinkErrorHandler): void {
  const lines = text.split('\n');
  // What follows the last newline was being written when the process died.
  lines.pop();
  lines.forEach((raw, index) => {
    if (raw.length === 0) return;
    let line: SpoolLine;
    try {
      line = JSON.parse(raw) as SpoolLine;
    } catch {
      onError(new Error(`usage spool ${file}, line ${index + 1}, is not JSON: skipped`));
      return;
    }
    if (line.type === 'record') {
      if (!into.records.has(line.record.id)) into.records.set(line.record.id, { seq: line.seq, record: line.record });
    } else if (line.type === 'intent') {
      into.intents.set(line.record.id, line.record);
    } else if (line.type === 'checkpoint') {
      const known = into.checkpoints.get(line.sink);
      if (!known || line.seq > known.seq) into.checkpoints.set(line.sink, { seq: line.seq, mark: line.mark });
    }
  });
}

async function flushSink(sink: UsageSink, onError: SinkErrorHandler): Promise<boolean> {
  try {
    if (sink.flushStored) return await sink.flushStored();
    await sink.flush();
    return true;
  } catch (error) {
    onError(error);
    return false;
  }
}

/** Writes records to a sink again: through its `replay` (which skips what it stored after `mark`), else `write` in flushed slices. */
async function redeliver(
  sink: UsageSink,
  records: readonly UsageRecord[],
  mark: unknown,
  onError: SinkErrorHandler,
): Promise<boolean> {
  if (records.length === 0) return true;
  try {
    if (sink.replay) return await sink.replay(records, mark);
  } catch (error) {
    onError(error);
    return false;
  }
  for (let start = 0; start < records.length; start += REDELIVERY_SLICE) {
    for (const record of records.slice(start, start + REDELIVERY_SLICE)) writeToSinks([sink], record);
    if (!(await flushSink(sink, onError))) return false;
  }
  return true;
}

class Spool implements UsageSpool {
  readonly directory: string;
  readonly sinks: readonly UsageSink[];
  readonly #owner = randomBytes(8).toString('hex');
  readonly #onError: SinkErrorHandler;
  readonly #maxFileBytes: number;
  readonly #states: SinkState[];
  #fd: number;
  #generation = 0;
  #fileBytes = 0;
  #unsynced = false;
  #seq = 0;
  /** Files of this process set aside, deleted once every sink checkpointed their last record. */
  #retired: { file: string; lastSeq: number }[] = [];
  /** Calls sent with no record yet, by record id: their lines go into every new file. */
  #intents = new Map<string, string>();
  #orphans: Orphan[] = [];
  #replaying: Promise<SpoolReplay> | undefined;
  #checkpoints: Promise<unknown> = Promise.resolve();
  #checkpointsWaiting = 0;
  #timer: NodeJS.Timeout;
  #closing: Promise<void> | undefined;
  #closed = false;

  constructor(options: UsageSpoolOptions) {
    this.directory = options.directory;
    this.sinks = [...options.sinks];
    this.#onError = options.onError ?? logOnce(`usage spool ${options.directory}`);
    this.#maxFileBytes = options.maxFileBytes ?? 1024 * 1024;
    this.#states = this.sinks.map((sink, index) => ({
      sink,
      key: sink.name ?? `#${index}`,
      checkpoint: 0,
      mark: undefined,
      dropped: sink.dropped ?? 0,
      redeliverThrough: undefined,
    }));
    // Where each sink stands now: whatever it stores from this process lies after it.
    for (const state of this.#states) state.mark = this.#markOf(state);
    try {
      mkdirSync(this.directory, { recursive: true });
      // Written whole, then named: whoever reads a lock reads all of it.
      const lock = this.#path(`${this.#owner}.lock`);
      writeFileSync(`${lock}.tmp`, JSON.stringify(thisLockHolder()));
      renameSync(`${lock}.tmp`, lock);
      openOwners.add(this.#owner);
      this.#fd = this.#openFile();
    } catch (error) {
      openOwners.delete(this.#owner);
      throw spoolError(this.directory, error);
    }
    this.#timer = setInterval(() => {
      // A checkpoint still running (a slow sink) is not queued behind again.
      if (this.#checkpointsWaiting === 0) void this.flush();
    }, options.checkpointIntervalMs ?? 1000);
    this.#timer.unref();
  }

  replay(): Promise<SpoolReplay> {
    this.#replaying ??= this.#replayOrphans();
    return this.#replaying;
  }

  writeIntent(record: UsageRecord, api: string): void {
    if (this.#closed) return;
    const line = `${JSON.stringify({ type: 'intent', api, record })}\n`;
    this.#intents.set(record.id, line);
    this.#append(line);
  }

  deliver(record: UsageRecord): void {
    if (!this.#closed) {
      this.#seq++;
      this.#append(`${JSON.stringify({ type: 'record', seq: this.#seq, record })}\n`);
      this.#intents.delete(record.id);
    }
    writeToSinks(this.sinks, record);
  }

  flush(): Promise<boolean> {
    this.#checkpointsWaiting++;
    const run = this.#checkpoints.then(() => this.#checkpoint()).finally(() => this.#checkpointsWaiting--);
    this.#checkpoints = run.catch(() => undefined);
    return run;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#replaying?.catch(this.#onError);
    let stored = false;
    // Again while records came in during the flush (responses closing late), a few times at most.
    for (let attempt = 0; attempt < 3; attempt++) {
      const seq = this.#seq;
      stored = await this.flush().catch((error: unknown) => {
        this.#onError(error);
        return false;
      });
      if (!stored || seq === this.#seq) break;
    }
    this.#closed = true;
    await Promise.all(this.sinks.map((sink) => sink.close().catch(this.#onError)));
    try {
      fsyncSync(this.#fd);
      closeSync(this.#fd);
    } catch (error) {
      this.#onError(error);
    }
    openOwners.delete(this.#owner);
    // Whatever is left (a sink that did not store, calls that never settled) stays under this process's lock,
    // which is stale once it exits: the next start takes it over.
    if (stored && this.#intents.size === 0) for (const file of this.#ownFiles()) this.#unlink(file);
    const held = readdirSync(this.directory).some(
      (file) => DATA_FILE.exec(file)?.[1] === this.#owner || file.startsWith(`${this.#owner}.claim-`),
    );
    if (!held) this.#unlink(`${this.#owner}.lock`);
  }

  #path(file: string): string {
    return join(this.directory, file);
  }

  #unlink(file: string): void {
    try {
      unlinkSync(this.#path(file));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.#onError(error);
    }
  }

  #liveFile(): string {
    return `${this.#owner}.${this.#owner}.${this.#generation}.jsonl`;
  }

  /** The files this process writes (live and set aside). */
  #ownFiles(): string[] {
    return readdirSync(this.directory).filter((file) => {
      const match = DATA_FILE.exec(file);
      return match?.[1] === this.#owner && match[2] === this.#owner;
    });
  }

  /** A new live file, opened with every sink's checkpoint and the calls still open, so that it stands on its own. */
  #openFile(): number {
    const fd = openSync(this.#path(this.#liveFile()), 'a');
    const lines = this.#states.map((state) =>
      JSON.stringify({ type: 'checkpoint', sink: state.key, seq: state.checkpoint, mark: state.mark }),
    );
    const text = `${[...lines.map((line) => `${line}\n`), ...this.#intents.values()].join('')}`;
    writeSync(fd, text);
    this.#fileBytes = Buffer.byteLength(text);
    this.#unsynced = true;
    return fd;
  }

  #markOf(state: SinkState): unknown {
    try {
      return state.sink.mark?.();
    } catch (error) {
      this.#onError(error);
      return undefined;
    }
  }

  #append(line: string): void {
    try {
      writeSync(this.#fd, line);
      this.#fileBytes += Buffer.byteLength(line);
      this.#unsynced = true;
    } catch (error) {
      this.#onError(error);
    }
  }

  /**
   * Takes over the files of every process of this host that died: its lock is renamed into a claim
   * (a rename happens once: two processes starting together never both take one over), then its
   * files into this process's names. A claim it held on another dead process is followed the same way.
   */
  #claimDeadOwners(): void {
    for (const file of readdirSync(this.directory)) {
      if (!file.endsWith('.lock')) continue;
      const owner = file.slice(0, -'.lock'.length);
      if (owner === this.#owner || !OWNER.test(owner)) continue;
      const holder = readLockHolder(this.#path(file));
      if (lockHolderAlive(holder, openOwners.has(owner))) {
        if (holder && holder.host !== hostname()) {
          process.emitWarning(
            `tollgate: usage spool ${this.directory}: ${file} belongs to process ${holder.pid} of host ${holder.host}, which this host cannot check; if that process is gone, delete ${file} and the next start here writes what it left`,
            { code: 'TOLLGATE_SPOOL_FOREIGN_LOCK' },
          );
        }
        continue;
      }
      try {
        renameSync(this.#path(file), this.#path(`${this.#owner}.claim-${owner}`));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      this.#takeFilesOf(owner);
    }
  }

  #takeFilesOf(dead: string): void {
    for (const file of readdirSync(this.directory)) {
      if (!file.startsWith(`${dead}.`)) continue;
      const rest = file.slice(dead.length + 1);
      if (rest.startsWith('claim-')) {
        const next = rest.slice('claim-'.length);
        renameSync(this.#path(file), this.#path(`${this.#owner}.claim-${next}`));
        this.#takeFilesOf(next);
      } else if (DATA_FILE.test(file)) {
        renameSync(this.#path(file), this.#path(`${this.#owner}.${rest}`));
      } else {
        // A lock written but not yet named when the process died.
        this.#unlink(file);
      }
    }
    this.#unlink(`${this.#owner}.claim-${dead}`);
  }

  async #readFiles(files: readonly string[]): Promise<SpoolContents> {
    const contents: SpoolContents = { checkpoints: new Map(), records: new Map(), intents: new Map() };
    for (const file of files) readSpoolText(await readFile(this.#path(file), 'utf8'), file, contents, this.#onError);
    return contents;
  }

  async #replayOrphans(): Promise<SpoolReplay> {
    try {
      this.#claimDeadOwners();
    } catch (error) {
      // What could not be taken over stays where it is, for the next start.
      this.#onError(error);
    }
    const byOrigin = new Map<string, string[]>();
    for (const file of readdirSync(this.directory)) {
      const match = DATA_FILE.exec(file);
      if (!match || match[1] !== this.#owner || match[2] === this.#owner) continue;
      byOrigin.set(match[2]!, [...(byOrigin.get(match[2]!) ?? []), file]);
    }
    const summary: SpoolReplay = { processes: byOrigin.size, records: 0, recovered: 0 };
    for (const files of byOrigin.values()) {
      const contents = await this.#readFiles(files);
      // A call sent whose record never made it to the spool: the provider may have billed it, so it is charged its bound.
      const recovered = [...contents.intents.values()].filter((record) => !contents.records.has(record.id));
      summary.recovered += recovered.length;
      const rewritten = new Set<string>();
      const pending = new Map<string, { records: UsageRecord[]; mark: unknown; done: boolean }>();
      for (const state of this.#states) {
        const checkpoint = contents.checkpoints.get(state.key);
        const after = checkpoint?.seq ?? 0;
        const records = [...contents.records.values()]
          .filter((entry) => entry.seq > after)
          .map((entry) => entry.record);
        for (const record of records) rewritten.add(record.id);
        pending.set(state.key, { records: [...records, ...recovered], mark: checkpoint?.mark, done: false });
      }
      summary.records += rewritten.size;
      this.#orphans.push({ files, pending });
    }
    // Delivered within a checkpoint: never alongside another delivery to the same sinks.
    await this.flush();
    return summary;
  }

  /** Writes what dead processes left to the sinks that lack it; their files go once every sink has it. */
  async #deliverOrphans(): Promise<void> {
    for (const orphan of [...this.#orphans]) {
      for (const state of this.#states) {
        const pending = orphan.pending.get(state.key)!;
        if (!pending.done) pending.done = await redeliver(state.sink, pending.records, pending.mark, this.#onError);
      }
      if ([...orphan.pending.values()].every((pending) => pending.done)) {
        for (const file of orphan.files) this.#unlink(file);
        this.#orphans = this.#orphans.filter((other) => other !== orphan);
      }
    }
  }

  /** This process's records with a sequence number in (after, through], read back from its files. */
  async #ownRecords(after: number, through: number): Promise<UsageRecord[]> {
    const contents = await this.#readFiles(this.#ownFiles());
    return [...contents.records.values()]
      .filter((entry) => entry.seq > after && entry.seq <= through)
      .map((entry) => entry.record);
  }

  /**
   * Flushes every sink; a sink that stored everything up to now is checkpointed there. A sink that
   * dropped records gets those since its checkpoint again. Then files every sink is past are
   * deleted, a full live file is set aside, and the spool is synced to disk.
   */
  async #checkpoint(): Promise<boolean> {
    const through = this.#seq;
    // Taken before the flush: whatever a sink stores from now on lies after them.
    const marks = this.#states.map((state) => this.#markOf(state));
    const results = await Promise.all(
      this.#states.map(async (state, index) => {
        let stored = await flushSink(state.sink, this.#onError);
        // Dropped records may be any since the checkpoint, up to the last one spooled.
        if (this.#sawDrops(state)) state.redeliverThrough = this.#seq;
        const redeliverThrough = state.redeliverThrough;
        if (stored && redeliverThrough !== undefined) {
          stored = await redeliver(
            state.sink,
            await this.#ownRecords(state.checkpoint, redeliverThrough),
            state.mark,
            this.#onError,
          );
          if (this.#sawDrops(state)) {
            state.redeliverThrough = this.#seq;
            stored = false;
          } else if (stored) {
            state.redeliverThrough = undefined;
          }
        }
        if (!stored) return false;
        if (through > state.checkpoint) {
          state.checkpoint = through;
          state.mark = marks[index];
          if (!this.#closed)
            this.#append(
              `${JSON.stringify({ type: 'checkpoint', sink: state.key, seq: through, mark: state.mark })}\n`,
            );
        }
        return true;
      }),
    );
    if (this.#orphans.length > 0) await this.#deliverOrphans();
    if (!this.#closed) await this.#compact();
    return results.every(Boolean) && this.#orphans.length === 0;
  }

  #sawDrops(state: SinkState): boolean {
    const dropped = state.sink.dropped ?? 0;
    if (dropped <= state.dropped) return false;
    state.dropped = dropped;
    return true;
  }

  /** Deletes the files every sink is past, sets a full live file aside, and syncs the live file. */
  async #compact(): Promise<void> {
    const storedThrough = Math.min(this.#seq, ...this.#states.map((state) => state.checkpoint));
    const kept = this.#retired.filter((retired) => retired.lastSeq > storedThrough);
    for (const retired of this.#retired) if (!kept.includes(retired)) this.#unlink(retired.file);
    this.#retired = kept;
    try {
      if (this.#fileBytes >= this.#maxFileBytes) {
        const previous = { file: this.#liveFile(), lastSeq: this.#seq };
        const previousFd = this.#fd;
        this.#generation++;
        this.#fd = this.#openFile();
        fsyncSync(previousFd);
        closeSync(previousFd);
        if (previous.lastSeq <= storedThrough) this.#unlink(previous.file);
        else this.#retired.push(previous);
      }
      if (this.#unsynced) {
        this.#unsynced = false;
        await syncData(this.#fd);
      }
    } catch (error) {
      this.#onError(error);
    }
  }
}

/**
 * Opens the usage spool in `directory`; `replay()` then takes over the files processes of this host
 * that died left there, and writes what they hold. Hand it to `meter({ spool })`.
 */
export function openUsageSpool(options: UsageSpoolOptions): UsageSpool {
  assertKnownOptions(options, KNOWN, 'ERR_TG_METERING_UNKNOWN_OPTION', 'openUsageSpool');
  if (typeof options?.directory !== 'string' || options.directory.length === 0) {
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      'openUsageSpool() needs a directory: openUsageSpool({ directory: "usage.spool", sinks })',
    );
  }
  if (!Array.isArray(options.sinks) || !options.sinks.every((sink) => typeof sink?.write === 'function')) {
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      'openUsageSpool() option sinks must be an array of sinks (objects with write(), flush() and close())',
    );
  }
  const names = options.sinks.map((sink) => sink.name).filter((name) => name !== undefined);
  const twice = names.find((name, index) => names.indexOf(name) !== index);
  if (twice !== undefined)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      `openUsageSpool() got two sinks named ${JSON.stringify(twice)}: each sink is checkpointed by its name`,
    );
  for (const field of ['checkpointIntervalMs', 'maxFileBytes'] as const) {
    const value = options[field];
    if (value !== undefined && (!Number.isSafeInteger(value) || value <= 0)) {
      throw new TollgateError(
        'ERR_TG_METERING_INVALID_OPTION',
        `openUsageSpool() option ${field} must be a positive integer; got ${JSON.stringify(value)}`,
      );
    }
  }
  return new Spool(options);
}
