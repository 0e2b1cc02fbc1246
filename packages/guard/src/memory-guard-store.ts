// The guard's store in the memory of one process: the embedded default, and the bench's detector.
import { besideRequests } from '@tollgate/core/store-contracts';
import { LRUCache } from 'lru-cache';
import { AbuseTallyTable, type AbuseTallyDelta } from './abuse-features.js';
import { AbuseWindow } from './abuse-window.js';
import { newEntityState, observeBucket, METRIC_COUNT, type AnomalyFinding, type EntityState } from './baseline.js';
import type {
  AuthFailureCount,
  GuardStore,
  MitigationChange,
  MitigationSnapshot,
  Observation,
  ObserveParams,
} from './guard-store.js';
import type { AnomalyRecord, Mitigation, Subject } from './types.js';

interface MemoryGuardStoreOptions {
  /**
   * Source of "now" in epoch ms; inject a fake clock in tests and benchmarks.
   * @default Date.now
   */
  clock?: () => number;
}

interface Watched {
  state: EntityState;
  /** Addresses seen in the current bucket. */
  addresses: Set<string>;
}

/** Beyond this many addresses in one bucket a subject's count stops growing (it is an anomaly long before). */
const MAX_ADDRESSES_PER_BUCKET = 10_000;
const MAX_ANOMALIES = 1_000;
/**
 * Addresses whose failed authentications are counted at once (each window ends by itself besides): past it the least
 * recently failing address is forgotten, and its count starts again at its next failure.
 */
export const MAX_AUTH_FAILURE_ADDRESSES = 100_000;
/**
 * Subjects the abuse watch's sums are kept of per bucket: past it the least recently seen subject's sums of that
 * bucket are dropped (it reads as quieter than it was, or unseen, until the bucket leaves the window).
 */
export const MAX_ABUSE_SUBJECTS = 200_000;

const mitigationKey = (kind: Mitigation['kind'], subject: Subject) => `${kind}|${subject}`;

export class MemoryGuardStore implements GuardStore {
  readonly kind = 'memory';
  readonly #clock: () => number;
  readonly #watched = new Map<Subject, Watched>();
  readonly #mitigations = new Map<string, Mitigation>();
  #version = 0;
  readonly #listeners: ((change: MitigationChange) => void)[] = [];
  readonly #anomalies: AnomalyRecord[] = [];
  readonly #authFailures = new LRUCache<string, { windowStart: number; failures: number; credentials: Set<string> }>({
    max: MAX_AUTH_FAILURE_ADDRESSES,
  });
  readonly #claims = new Map<string, number>();
  /**
   * The abuse watch's buckets, each a table of its subjects' sums (least recently seen first, past MAX_ABUSE_SUBJECTS
   * the least recently seen gives its row to a new one), with its end.
   */
  readonly #abuseBuckets = new Map<number, { until: number; table: AbuseTallyTable }>();
  readonly #abuseState = new Map<string, { value: string; until: number }>();

  constructor(options: MemoryGuardStoreOptions = {}) {
    this.#clock = options.clock ?? Date.now;
  }

  async observe(observations: readonly Observation[], params: ObserveParams): Promise<(AnomalyFinding | undefined)[]> {
    const bucket = Math.floor(this.#clock() / params.bucketMs);
    const increments = new Array<number>(METRIC_COUNT);
    const largest = [0, 0];
    return observations.map((observation) => {
      let watched = this.#watched.get(observation.subject);
      if (!watched) {
        watched = { state: newEntityState(bucket, params.detector), addresses: new Set() };
        this.#watched.set(observation.subject, watched);
      }
      if (bucket > watched.state.bucket) watched.addresses.clear();
      const before = watched.addresses.size;
      for (const address of observation.addresses) {
        if (watched.addresses.size >= MAX_ADDRESSES_PER_BUCKET) break;
        watched.addresses.add(address);
      }
      increments[0] = observation.spend;
      increments[1] = observation.tokens;
      increments[2] = observation.requests;
      increments[3] = watched.addresses.size - before;
      largest[0] = observation.largestSpend;
      largest[1] = observation.largestTokens;
      return observeBucket(watched.state, bucket, increments, largest, params.detector);
    });
  }

  async inspect(subject: Subject): Promise<EntityState | undefined> {
    const watched = this.#watched.get(subject);
    return watched && structuredClone(watched.state);
  }

  /** Forgets subjects idle for more than `idleMs` (their baselines have decayed to nothing by then). */
  sweep(idleMs: number, bucketMs: number): void {
    const oldest = Math.floor((this.#clock() - idleMs) / bucketMs);
    for (const [subject, watched] of this.#watched) if (watched.state.bucket < oldest) this.#watched.delete(subject);
    const now = this.#clock();
    for (const [id, until] of this.#claims) if (until <= now) this.#claims.delete(id);
    for (const [key, mitigation] of this.#mitigations)
      if (mitigation.until !== undefined && mitigation.until <= now) this.#mitigations.delete(key);
  }

  async now(): Promise<number> {
    return this.#clock();
  }

  async putMitigation(input: Omit<Mitigation, 'at' | 'until'>, durationMs?: number): Promise<Mitigation> {
    const at = this.#clock();
    const mitigation: Mitigation = { ...input, at, ...(durationMs === undefined ? {} : { until: at + durationMs }) };
    this.#mitigations.set(mitigationKey(mitigation.kind, mitigation.subject), mitigation);
    this.#announce({ version: ++this.#version, op: 'put', mitigation });
    return mitigation;
  }

  async deleteMitigation(kind: Mitigation['kind'], subject: Subject): Promise<Mitigation | undefined> {
    const key = mitigationKey(kind, subject);
    const lifted = this.#mitigations.get(key);
    if (!lifted) return undefined;
    this.#mitigations.delete(key);
    this.#announce({ version: ++this.#version, op: 'delete', kind, subject });
    // One that had run out was no longer in force: nothing was lifted.
    const inForce = lifted.until === undefined || lifted.until > this.#clock();
    return inForce ? lifted : undefined;
  }

  async mitigations(): Promise<MitigationSnapshot> {
    const now = this.#clock();
    const mitigations = [...this.#mitigations.values()].filter((m) => m.until === undefined || m.until > now);
    return { version: this.#version, mitigations };
  }

  async mitigationVersion(): Promise<number> {
    return this.#version;
  }

  watchMitigations(listener: (change: MitigationChange) => void): void {
    this.#listeners.push(listener);
  }

  #announce(change: MitigationChange): void {
    for (const listener of this.#listeners) listener(change);
  }

  async recordAnomaly(anomaly: AnomalyRecord): Promise<void> {
    this.#anomalies.unshift(anomaly);
    if (this.#anomalies.length > MAX_ANOMALIES) this.#anomalies.length = MAX_ANOMALIES;
  }

  async anomalies(limit: number): Promise<AnomalyRecord[]> {
    return this.#anomalies.slice(0, limit);
  }

  async countAuthFailure(address: string, credential: string, windowMs: number): Promise<AuthFailureCount> {
    const now = this.#clock();
    let entry = this.#authFailures.get(address);
    if (!entry || entry.windowStart + windowMs <= now) {
      // The window opens at the first failure, as express-rate-limit's fixed windows do.
      entry = { windowStart: now, failures: 0, credentials: new Set() };
      this.#authFailures.set(address, entry);
    }
    entry.failures++;
    if (entry.credentials.size < 1_000) entry.credentials.add(credential);
    return { failures: entry.failures, distinct: entry.credentials.size, windowStart: entry.windowStart };
  }

  async claim(id: string, ttlMs: number): Promise<boolean> {
    const now = this.#clock();
    const until = this.#claims.get(id);
    if (until !== undefined && until > now) return false;
    this.#claims.set(id, now + ttlMs);
    return true;
  }

  async addAbuseTallies(
    bucket: number,
    ttlMs: number,
    deltas: readonly AbuseTallyDelta[],
    slice = besideRequests(),
  ): Promise<void> {
    const now = this.#clock();
    for (const [known, entry] of this.#abuseBuckets)
      if (entry.until <= now) {
        this.#abuseBuckets.delete(known);
        entry.table.release();
      }
    let entry = this.#abuseBuckets.get(bucket);
    if (!entry) this.#abuseBuckets.set(bucket, (entry = { until: 0, table: new AbuseTallyTable(true) }));
    entry.until = now + ttlMs;
    const { table } = entry;
    for (let i = 0; i < deltas.length; i++) {
      const delta = deltas[i]!;
      table.addDelta(table.seen(delta.subject, MAX_ABUSE_SUBJECTS), delta);
      if ((i & 63) === 63) await slice.pause();
    }
  }

  async abuseTallies(
    buckets: readonly number[],
    slice = besideRequests(),
    into = new AbuseWindow(),
  ): Promise<AbuseTallyTable> {
    const now = this.#clock();
    const tables: AbuseTallyTable[] = [];
    for (const bucket of buckets) {
      const entry = this.#abuseBuckets.get(bucket);
      if (entry && entry.until > now) tables.push(entry.table);
    }
    // Nothing adds to a bucket while the watch reads it (its rounds take turns), so each is read as it is.
    await into.merge(tables, slice);
    return into.table;
  }

  async putAbuseState(name: string, value: string, ttlMs?: number): Promise<void> {
    this.#abuseState.set(name, { value, until: ttlMs === undefined ? Infinity : this.#clock() + ttlMs });
  }

  async abuseState(name: string): Promise<string | undefined> {
    const entry = this.#abuseState.get(name);
    if (entry && entry.until > this.#clock()) return entry.value;
    this.#abuseState.delete(name);
    return undefined;
  }

  async deleteAbuseState(name: string): Promise<boolean> {
    const value = await this.abuseState(name);
    this.#abuseState.delete(name);
    return value !== undefined;
  }

  async close(): Promise<void> {}
}
