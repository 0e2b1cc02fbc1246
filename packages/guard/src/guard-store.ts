// What the guard keeps in a shared store: per-subject baselines, the mitigations in force, the anomaly log, auth failures, alert claims.
import type { TimeSlice } from '@tollgate/core/store-contracts';
import type { AbuseTallyDelta, AbuseTallyTable } from './abuse-features.js';
import type { AbuseWindow } from './abuse-window.js';
import type { AnomalyFinding, DetectorParams, EntityState } from './baseline.js';
import type { AnomalyRecord, Mitigation, Subject } from './types.js';

/** Usage of one subject since the last flush, summed in the process. */
export interface Observation {
  subject: Subject;
  /** nano-USD. */
  spend: number;
  tokens: number;
  requests: number;
  /** The largest single request among them: nano-USD and tokens. */
  largestSpend: number;
  largestTokens: number;
  /** Client addresses seen (keys only; at most a few dozen per flush). */
  addresses: readonly string[];
}

export interface ObserveParams {
  bucketMs: number;
  detector: DetectorParams;
}

/** The state of the mitigations, whole: what a process loads at start and after it may have missed a change. */
export interface MitigationSnapshot {
  /** Bumped by every change; a process that holds this version holds everything. */
  version: number;
  mitigations: Mitigation[];
}

/** One change, as every process is told of it. */
export type MitigationChange =
  | { version: number; op: 'put'; mitigation: Mitigation }
  | { version: number; op: 'delete'; kind: Mitigation['kind']; subject: Subject };

/** Failed authentications from one address in the current window. */
export interface AuthFailureCount {
  failures: number;
  /** Distinct credentials among them. */
  distinct: number;
  /** Epoch ms the window started. */
  windowStart: number;
}

export interface GuardStore {
  readonly kind: 'memory' | 'redis';
  /**
   * Adds each observation to its subject's current bucket (the store's clock picks the bucket) and
   * judges the bucket so far. Resolves, per observation, the anomaly it revealed: each is reported
   * to one caller only, however many processes observe the subject.
   */
  observe(observations: readonly Observation[], params: ObserveParams): Promise<(AnomalyFinding | undefined)[]>;
  /** A subject's baselines and current bucket, for operators and tests. */
  inspect(subject: Subject, params: ObserveParams): Promise<EntityState | undefined>;

  /** Epoch ms by the store's clock (Redis TIME on Redis). */
  now(): Promise<number>;
  /**
   * Puts a mitigation in force everywhere (replacing one of the same kind and subject), with the
   * store's clock: `at` is set here and `until` = `at` + `durationMs`. Resolves with what was stored.
   */
  putMitigation(mitigation: Omit<Mitigation, 'at' | 'until'>, durationMs?: number): Promise<Mitigation>;
  /** Lifts a mitigation; resolves with what was lifted, undefined when none was in force. */
  deleteMitigation(kind: Mitigation['kind'], subject: Subject): Promise<Mitigation | undefined>;
  /** Every mitigation in force, with the version they belong to. */
  mitigations(): Promise<MitigationSnapshot>;
  /** The version alone: a cheap check that a process's copy is current. */
  mitigationVersion(): Promise<number>;
  /**
   * Calls `listener` with every change made by any process, as soon as it is known (memory: at once;
   * Redis: by pub/sub when a subscriber was given). Changes may be missed while disconnected:
   * `onResync` then asks for a full reload.
   */
  watchMitigations(listener: (change: MitigationChange) => void, onResync: () => void): void;

  /** Adds an anomaly to the log operators read (the newest 1,000 are kept). */
  recordAnomaly(anomaly: AnomalyRecord): Promise<void>;
  /** The newest anomalies first. */
  anomalies(limit: number): Promise<AnomalyRecord[]>;

  /** Counts one failed authentication from `address`, with a digest of the credential it tried. */
  countAuthFailure(address: string, credential: string, windowMs: number): Promise<AuthFailureCount>;

  /**
   * Adds each delta to its subject's sums in `bucket` (a bucket is kept `ttlMs`). `slice`: the caller's share of the
   * event loop, so that the steps of one round do not each hold it a slice in a row (a new one when not given).
   */
  addAbuseTallies(bucket: number, ttlMs: number, deltas: readonly AbuseTallyDelta[], slice?: TimeSlice): Promise<void>;
  /**
   * The sums of `buckets`, merged per subject across buckets and processes (`slice` as above), into `into`'s table when
   * given (a window the caller keeps across rounds: only what changed since its last merge is summed again) and
   * returned.
   */
  abuseTallies(buckets: readonly number[], slice?: TimeSlice, into?: AbuseWindow): Promise<AbuseTallyTable>;
  /** A named value of the abuse model (forest, training windows, latest scores, a clear), kept `ttlMs` when given. */
  putAbuseState(name: string, value: string, ttlMs?: number): Promise<void>;
  abuseState(name: string): Promise<string | undefined>;
  /** Resolves true when there was a value to delete. */
  deleteAbuseState(name: string): Promise<boolean>;

  /** True for the first caller that claims `id` within `ttlMs`, in any process (alerts once per period). */
  claim(id: string, ttlMs: number): Promise<boolean>;

  close(): Promise<void>;
}
