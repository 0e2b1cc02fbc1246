// The guard's store on Redis: every process sees the same baselines, mitigations, anomaly log, failure counts and claims.
import { besideRequests } from '@tollgate/core/store-contracts';
import type { TimeSlice } from '@tollgate/core/store-contracts';
import type { SubscriberLike } from '@tollgate/redis';
import type { SendCommand } from '@tollgate/redis/lua';
import { AbuseTallyTable, setTallyField, tallyFields, type AbuseTallyDelta } from './abuse-features.js';
import {
  METRIC_COUNT,
  METRIC_NAMES,
  STATE_WIDTH,
  TRIMMED_METRICS,
  type AnomalyFinding,
  type DetectorParams,
  type EntityState,
} from './baseline.js';
import type {
  AuthFailureCount,
  GuardStore,
  MitigationChange,
  MitigationSnapshot,
  Observation,
  ObserveParams,
} from './guard-store.js';
import { AbuseWindow } from './abuse-window.js';
import * as scripts from './redis-scripts.js';
import type { AnomalyRecord, Mitigation, Subject } from './types.js';

interface RedisGuardStoreOptions {
  /** The stores' `sendCommand` (`createRedisStores().sendCommand`): the guard opens no connection of its own. */
  sendCommand: SendCommand;
  /** Put in front of every key (the stores' `prefix`); `guard:` follows it. */
  prefix: string;
  /**
   * A Redis client for pub/sub, not yet connected (a node-redis `client.duplicate()`): mitigations
   * then reach every process within the delivery time. The store connects, subscribes and closes it.
   * Without one, processes poll the mitigations' version (`GuardOptions.syncInterval`).
   */
  subscriber?: SubscriberLike;
  /** Epoch ms instead of Redis TIME: for tests that replay a fixed clock. */
  clock?: () => number;
}

/** Anomalies kept in the log operators read. */
const ANOMALY_LOG_LENGTH = 1_000;
/** Subjects' sums per script call of the abuse watch's flush. */
const TALLY_DELTAS_PER_CALL = 256;
/**
 * Script calls of one flush in flight at once: a flush of 100,000 subjects issued all at once queued 400 calls, and
 * the last waited past the store's timeout behind the others (and a rejection before the flush awaited them ended
 * the process).
 */
const TALLY_CALLS_IN_FLIGHT = 4;
/**
 * Fields of one bucket of the abuse watch's sums (about 20 per subject: some 200,000 subjects). Past it only fields the
 * bucket holds already grow: a subject first seen after the bucket filled is not counted in it (the bucket ends with
 * its TTL, a window later).
 */
const MAX_ABUSE_FIELDS = 4_000_000;
/**
 * Fields asked per HSCAN page of a bucket of sums: a page holds Redis for a fraction of a ms and is parsed here in
 * less, where one HGETALL of 100,000 subjects' two million fields held both at once (docs/performance.md).
 */
export const TALLY_SCAN_COUNT = 1000;
/**
 * Entries a bucket's log of writes keeps (about: Redis trims whole nodes), each one script call of at most
 * TALLY_DELTAS_PER_CALL subjects (some 150 KB at most: the log of a bucket some 40 MB): a reader that fell further
 * behind, as in a burst of new subjects, reads the bucket whole.
 */
const TALLY_LOG_ENTRIES = 256;
/** Log entries asked per XRANGE page. */
const TALLY_LOG_PAGE = 64;

/** A subject's state outlives its last use by this many slow windows (its baselines are gone by then). */
const STATE_LIFETIME_WINDOWS = 4;

/** A bucket's table as last read: as of its version and its log's last entry then (null: read it whole). */
interface KeptBucket {
  table: AbuseTallyTable;
  version: string | null;
  logId: string | null;
}

/** An XRANGE entry of a bucket's log: its id, and its fields ("v": the write's version, "d": the fields it changed). */
type LogEntry = [id: string, fields: string[]];

function logVersion([, fields]: LogEntry): number {
  return Number(fields[fields.indexOf('v') + 1]);
}

function logFields([, fields]: LogEntry): string[] {
  const changed: unknown = JSON.parse(fields[fields.indexOf('d') + 1] ?? '[]');
  return Array.isArray(changed) ? (changed as string[]) : [];
}

/** Braces end a Cluster hash tag early: escaped in the ids that go inside one. */
function tagSafe(id: string): string {
  return id.replace(/[%{}]/g, (c) => encodeURIComponent(c));
}

function parseMitigation(json: string): Mitigation {
  return JSON.parse(json) as Mitigation;
}

export class RedisGuardStore implements GuardStore {
  readonly kind = 'redis';
  readonly #send: SendCommand;
  readonly #prefix: string;
  readonly #subscriber: SubscriberLike | undefined;
  readonly #clock: (() => number) | undefined;
  readonly #mitigationKeys: string[];
  readonly #channel: string;
  /**
   * Each bucket's sums as last read, kept from read to read (`AbuseTallyTable.renew()`) while the bucket is asked for:
   * a bucket of 100,000 subjects read into a new table every round made 100,000 subject strings and a map of them that
   * outlived the young generation (GC pauses of 20-32 ms under load, bench/guard-stall.ts); a kept table finds each
   * subject's row again, and what a page's reply made dies young. With the bucket's version as it was before that read:
   * a bucket no process wrote since (every one but the current, mostly) is not read again, and one written since is
   * brought up to date from its log of writes when that follows on from the version held (`#readLog`).
   */
  readonly #bucketTables = new Map<number, KeptBucket>();
  /** A read in flight holds the kept tables: one beside it reads into tables of its own. */
  #bucketTablesBusy = false;
  #watching = false;
  #closed = false;

  constructor(options: RedisGuardStoreOptions) {
    this.#send = options.sendCommand;
    this.#prefix = `${options.prefix}guard:`;
    this.#subscriber = options.subscriber;
    this.#clock = options.clock;
    const registry = `${this.#prefix}{mitigations}`;
    this.#mitigationKeys = [`${registry}:all`, `${registry}:ends`, `${registry}:version`];
    this.#channel = `${registry}:changes`;
  }

  /** The caller's clock for the scripts, or '' for Redis TIME. */
  #now(): string {
    return this.#clock ? String(this.#clock()) : '';
  }

  #subjectKeys(subject: Subject): string[] {
    const tag = `${this.#prefix}{${tagSafe(subject)}}`;
    return [`${tag}:state`, `${tag}:addresses`];
  }

  async observe(observations: readonly Observation[], params: ObserveParams): Promise<(AnomalyFinding | undefined)[]> {
    const fixed = [String(params.bucketMs), String(this.#ttlMs(params)), this.#now(), ...detectorArgs(params.detector)];
    // One script per subject (each has its own hash slot on Cluster), sent together: the client pipelines them.
    return Promise.all(
      observations.map(async (observation) => {
        const args = [
          ...fixed,
          String(observation.spend),
          String(observation.tokens),
          String(observation.requests),
          String(observation.largestSpend),
          String(observation.largestTokens),
          ...observation.addresses,
        ];
        const reply = await scripts.observeSubject.run(this.#send, this.#subjectKeys(observation.subject), args);
        return Array.isArray(reply) ? parseFinding(reply) : undefined;
      }),
    );
  }

  #ttlMs(params: ObserveParams): number {
    return Math.ceil((STATE_LIFETIME_WINDOWS * params.bucketMs) / params.detector.slowAlpha);
  }

  async inspect(subject: Subject, params: ObserveParams): Promise<EntityState | undefined> {
    const reply = await scripts.inspectSubject.run(this.#send, this.#subjectKeys(subject).slice(0, 1), [
      params.detector.lagBuckets,
    ]);
    return Array.isArray(reply) ? decodeState(reply.map(Number), params.detector.lagBuckets) : undefined;
  }

  async now(): Promise<number> {
    if (this.#clock) return this.#clock();
    const [seconds, micros] = (await this.#send(['TIME'])) as [string, string];
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  async putMitigation(input: Omit<Mitigation, 'at' | 'until'>, durationMs?: number): Promise<Mitigation> {
    const reply = (await scripts.putMitigation.run(this.#send, this.#mitigationKeys, [
      input.kind,
      input.subject,
      input.reason,
      input.scale === undefined ? '' : String(input.scale),
      input.anomalyId ?? '',
      durationMs === undefined ? '' : String(Math.ceil(durationMs)),
      this.#channel,
      this.#now(),
    ])) as [number, string];
    return parseMitigation(reply[1]);
  }

  async deleteMitigation(kind: Mitigation['kind'], subject: Subject): Promise<Mitigation | undefined> {
    const reply = await scripts.deleteMitigation.run(this.#send, this.#mitigationKeys, [
      kind,
      subject,
      this.#channel,
      this.#now(),
    ]);
    return typeof reply === 'string' ? parseMitigation(reply) : undefined;
  }

  async mitigations(): Promise<MitigationSnapshot> {
    const reply = (await scripts.listMitigations.run(this.#send, this.#mitigationKeys, [this.#now()])) as [
      number,
      ...string[],
    ];
    return { version: Number(reply[0]), mitigations: reply.slice(1).map((json) => parseMitigation(json as string)) };
  }

  async mitigationVersion(): Promise<number> {
    return Number((await this.#send(['GET', this.#mitigationKeys[2]!])) ?? 0);
  }

  watchMitigations(listener: (change: MitigationChange) => void, onResync: () => void): void {
    const subscriber = this.#subscriber;
    if (!subscriber || this.#watching) return;
    this.#watching = true;
    let subscribed = false;
    const subscribe = () => {
      if (subscribed || this.#closed) return;
      subscribed = true;
      subscriber
        .subscribe(this.#channel, (message) => {
          try {
            listener(JSON.parse(message) as MitigationChange);
          } catch {
            onResync();
          }
        })
        .then(onResync, () => {
          subscribed = false;
        });
    };
    subscriber.on('error', () => undefined);
    // node-redis resubscribes by itself after a reconnect; what was published meanwhile is lost: reload.
    subscriber.on('ready', () => (subscribed ? onResync() : subscribe()));
    subscriber.connect().then(subscribe, () => undefined);
  }

  async recordAnomaly(anomaly: AnomalyRecord): Promise<void> {
    await scripts.pushAnomaly.run(
      this.#send,
      [`${this.#prefix}{anomalies}`],
      [JSON.stringify(anomaly), ANOMALY_LOG_LENGTH],
    );
  }

  async anomalies(limit: number): Promise<AnomalyRecord[]> {
    const reply = (await this.#send([
      'LRANGE',
      `${this.#prefix}{anomalies}`,
      '0',
      String(Math.max(0, limit - 1)),
    ])) as string[];
    return reply.map((json) => JSON.parse(json) as AnomalyRecord);
  }

  async countAuthFailure(address: string, credential: string, windowMs: number): Promise<AuthFailureCount> {
    const tag = `${this.#prefix}{ip:${tagSafe(address)}}`;
    const reply = (await scripts.countAuthFailure.run(
      this.#send,
      [`${tag}:failures`, `${tag}:credentials`],
      [Math.ceil(windowMs), credential, this.#now()],
    )) as number[];
    return { failures: Number(reply[0]), distinct: Number(reply[1]), windowStart: Number(reply[2]) };
  }

  async claim(id: string, ttlMs: number): Promise<boolean> {
    const reply = await this.#send([
      'SET',
      `${this.#prefix}claim:{${tagSafe(id)}}`,
      '1',
      'NX',
      'PX',
      String(Math.max(1, Math.ceil(ttlMs))),
    ]);
    return reply === 'OK';
  }

  #abuseKey(what: string): string {
    return `${this.#prefix}abuse:{${tagSafe(what)}}`;
  }

  async addAbuseTallies(
    bucket: number,
    ttlMs: number,
    deltas: readonly AbuseTallyDelta[],
    slice = besideRequests(),
  ): Promise<void> {
    // A script call per few hundred subjects: one of 10,000 would hold Redis for every other caller meanwhile.
    const calls: Promise<unknown>[] = [];
    for (let from = 0; from < deltas.length; from += TALLY_DELTAS_PER_CALL) {
      const sums: string[] = [];
      const marks: string[] = [];
      for (const delta of deltas.slice(from, from + TALLY_DELTAS_PER_CALL)) {
        const fields = tallyFields(delta);
        for (const [field, value] of fields.sums) sums.push(field, String(value));
        marks.push(...fields.marks);
      }
      if (calls.length >= TALLY_CALLS_IN_FLIGHT) await calls.shift();
      const call = scripts.addAbuseTallies.run(this.#send, this.#bucketKeys(bucket), [
        String(Math.ceil(ttlMs)),
        String(MAX_ABUSE_FIELDS),
        String(sums.length / 2),
        String(TALLY_LOG_ENTRIES),
        ...sums,
        ...marks,
      ]);
      // Handled now, awaited later: a failure while this loop waits its turn is the flush's, not the process's end.
      call.catch(() => undefined);
      calls.push(call);
      await slice.pause();
    }
    await Promise.all(calls);
  }

  async abuseTallies(
    buckets: readonly number[],
    slice = besideRequests(),
    into = new AbuseWindow(),
  ): Promise<AbuseTallyTable> {
    const kept = !this.#bucketTablesBusy;
    if (kept) this.#keepBucketTables(buckets);
    try {
      // Each bucket (its own hash slot on Cluster) is scanned in pages, all at once: each page's answer lets the loop
      // turn.
      const scanned = await Promise.all(
        buckets.map((bucket) =>
          kept ? this.#readKept(bucket, this.#bucketTables.get(bucket)!, slice) : this.#scanTallies(bucket, slice),
        ),
      );
      // A bucket read from its log keeps its table's epoch, and the window sums again only the subjects it changed; a
      // table scanned for this read alone is one the window has not seen, so the next merge is whole.
      await into.merge(scanned, slice);
      if (!kept) for (const table of scanned) table.release();
      return into.table;
    } finally {
      if (kept) this.#bucketTablesBusy = false;
    }
  }

  /** Holds the kept tables for a read of `buckets`: one for each, those of buckets no longer asked for released. */
  #keepBucketTables(buckets: readonly number[]): void {
    this.#bucketTablesBusy = true;
    for (const [bucket, { table }] of this.#bucketTables)
      if (!buckets.includes(bucket)) {
        this.#bucketTables.delete(bucket);
        table.release();
      }
    for (const bucket of buckets)
      if (!this.#bucketTables.has(bucket))
        this.#bucketTables.set(bucket, { table: new AbuseTallyTable(), version: null, logId: null });
  }

  /**
   * A bucket into its kept table, as of its version now. Unchanged (the version and the log's last entry as held): kept
   * as it is. Written since: the log's entries after the one held, when each follows the one before (versions one
   * apart, from the held version to at least the one read now: a write by a release without the log, a trimmed log or
   * a bucket lost with its Redis breaks that chain); else the bucket is read whole, as of the log's last entry before
   * the read (a write during the read is in the log after it: the next read applies it, again, to the same value). A
   * bucket without a version (none written yet, or by a release before versions) is always read whole.
   */
  async #readKept(bucket: number, kept: KeptBucket, slice: TimeSlice): Promise<AbuseTallyTable> {
    const [, versionKey, logKey] = this.#bucketKeys(bucket);
    const [now, last] = await Promise.all([
      this.#send(['GET', versionKey]) as Promise<string | null>,
      this.#send(['XREVRANGE', logKey, '+', '-', 'COUNT', '1']) as Promise<LogEntry[]>,
    ]);
    const tail = last[0] ? { id: last[0][0], version: logVersion(last[0]) } : null;
    if (now !== null && now === kept.version && (tail?.id ?? null) === kept.logId) return kept.table;
    if (now !== null && tail && kept.logId !== null && (await this.#readLog(logKey, kept, Number(now), slice)))
      return kept.table;
    kept.version = null;
    kept.logId = null;
    await this.#scanTallies(bucket, slice, kept.table);
    if (tail) {
      kept.version = String(tail.version);
      kept.logId = tail.id;
    } else kept.version = now;
    return kept.table;
  }

  /**
   * The log's entries after the one `kept` holds, applied to its table (each field's value after that write, so an
   * entry applied twice changes nothing): true when they follow on from its version to at least `now`. A gap leaves
   * the table part-way, for the whole read that follows to renew.
   */
  async #readLog(logKey: string, kept: KeptBucket, now: number, slice: TimeSlice): Promise<boolean> {
    let version = Number(kept.version);
    let from = kept.logId!;
    for (;;) {
      // From the entry held (XRANGE's own bound is inclusive): its absence means the log was trimmed past it.
      const page = (await this.#send(['XRANGE', logKey, from, '+', 'COUNT', String(TALLY_LOG_PAGE + 1)])) as LogEntry[];
      if (page[0]?.[0] !== from) return false;
      for (let i = 1; i < page.length; i++) {
        const entry = page[i]!;
        if (logVersion(entry) !== version + 1) return false;
        const fields = logFields(entry);
        for (let f = 0; f + 1 < fields.length; f += 2) setTallyField(kept.table, fields[f]!, Number(fields[f + 1]));
        version++;
        from = entry[0];
        kept.version = String(version);
        kept.logId = from;
        await slice.pause();
      }
      if (page.length <= TALLY_LOG_PAGE) return version >= now;
    }
  }

  /** A bucket's hash of sums, its version and its log of writes (written by every add), in one hash slot. */
  #bucketKeys(bucket: number): [hash: string, version: string, log: string] {
    const hash = this.#abuseKey(`bucket:${bucket}`);
    return [hash, `${hash}:version`, `${hash}:log`];
  }

  /**
   * One bucket's sums per subject, read in HSCAN pages of about TALLY_SCAN_COUNT fields, into `table` (renewed) when
   * given, else a new one.
   */
  async #scanTallies(bucket: number, slice: TimeSlice, table = new AbuseTallyTable()): Promise<AbuseTallyTable> {
    const [key] = this.#bucketKeys(bucket);
    table.renew();
    let cursor = '0';
    do {
      const [next, fields] = (await this.#send(['HSCAN', key, cursor, 'COUNT', String(TALLY_SCAN_COUNT)])) as [
        string,
        string[],
      ];
      for (let i = 0; i < fields.length; i += 2) setTallyField(table, fields[i]!, Number(fields[i + 1]));
      cursor = next;
      await slice.pause();
    } while (cursor !== '0');
    return table;
  }

  async putAbuseState(name: string, value: string, ttlMs?: number): Promise<void> {
    const key = this.#abuseKey(`state:${name}`);
    await this.#send(
      ttlMs === undefined ? ['SET', key, value] : ['SET', key, value, 'PX', String(Math.max(1, Math.ceil(ttlMs)))],
    );
  }

  async abuseState(name: string): Promise<string | undefined> {
    const reply = await this.#send(['GET', this.#abuseKey(`state:${name}`)]);
    return typeof reply === 'string' ? reply : undefined;
  }

  async deleteAbuseState(name: string): Promise<boolean> {
    return Number(await this.#send(['DEL', this.#abuseKey(`state:${name}`)])) > 0;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const subscriber = this.#subscriber;
    if (!subscriber || !this.#watching) return;
    try {
      await subscriber.close();
    } catch {
      subscriber.destroy();
    }
  }
}

/** The detector's settings as the observe script reads them (ARGV 4-26). */
function detectorArgs(params: DetectorParams): string[] {
  return [
    params.zScore,
    params.minBuckets,
    params.minSpend,
    params.minRequests,
    params.quietBuckets,
    params.fastAlpha,
    params.slowAlpha,
    ...params.relativeFloors,
    ...params.absoluteFloors,
    ...params.evidenceFactors,
    params.drift,
    params.stepCap,
    params.clipZ,
    params.lagBuckets,
  ].map(String);
}

function parseFinding(reply: unknown[]): AnomalyFinding {
  const [metric, bucket, value, expected, z, sd, score, seen] = reply.map(Number) as number[];
  return {
    metric: METRIC_NAMES[metric!]!,
    bucket: bucket!,
    value: value!,
    expected: expected!,
    z: z!,
    sd: sd!,
    score: score!,
    seen: seen!,
  };
}

/** The script's layout (see redis-scripts.ts) back into baseline.ts's shape. */
function decodeState(numbers: number[], lag: number): EntityState {
  const at = (first: number, count: number) => numbers.slice(first - 1, first - 1 + count);
  return {
    bucket: numbers[0]!,
    seen: numbers[1]!,
    quietUntil: numbers[2]!,
    recentCount: numbers[3]!,
    current: at(5, METRIC_COUNT),
    largest: at(9, TRIMMED_METRICS),
    unit: at(11, TRIMMED_METRICS),
    baseline: at(13, STATE_WIDTH * METRIC_COUNT),
    recent: at(33, lag * METRIC_COUNT),
  };
}
