// The guard's public vocabulary: who is watched, what was found, what was done about it, what a person is told.
import type { MetricName } from './baseline.js';

/** The action an anomaly takes. */
export type AnomalyAction = 'alert' | 'throttle' | 'suspend';

/**
 * Who a finding or a mitigation is about: `key:<keyId>`, `tenant:<tenantId>`, or, for blocks
 * before authentication, `ip:<address>` (IPv6 by /56).
 */
export type Subject = `key:${string}` | `tenant:${string}` | `ip:${string}`;

/** A measure in force in every process until it is lifted or runs out. */
export interface Mitigation {
  /** `suspend` refuses a key or tenant (403); `throttle` scales its limits down; `block` refuses an address (429). */
  kind: 'suspend' | 'throttle' | 'block';
  subject: Subject;
  /** Why, in words an operator and the refused client can read. */
  reason: string;
  /** Epoch ms it was put in force (the store's clock: Redis TIME on Redis). */
  at: number;
  /** Epoch ms it ends by itself; absent: until an operator lifts it. */
  until?: number;
  /** `throttle` only: the factor (0 < scale < 1) the subject's request and token limits are multiplied by. */
  scale?: number;
  /** The anomaly that caused it, when one did (`abuse:<subject>@<bucket>` for the abuse model's actions). */
  anomalyId?: string;
}

/** One anomaly as operators list it (`GET /anomalies`). */
export interface AnomalyRecord {
  /** Stable across processes: `anomaly:<subject>:<bucket>`. */
  id: string;
  subject: Subject;
  keyId?: string;
  tenantId?: string;
  metric: MetricName;
  /** The bucket's total when it was judged (spend in nano-USD; spend and tokens without the bucket's largest request). */
  value: number;
  /** What the fast baseline expected of a bucket. */
  expected: number;
  /** The bucket's z-score (square-root scale). */
  z: number;
  /** What crossed the threshold: the z-score, or the CUSUM of an excess that lasted, when higher. */
  score: number;
  /** Start of the bucket (epoch ms) and its length. */
  bucketStart: number;
  bucketSeconds: number;
  /** Epoch ms it was found. */
  at: number;
  action: AnomalyAction;
}

/** The kinds of event a person is told about. */
export type GuardEventType =
  | 'budget.threshold'
  | 'budget.exhausted'
  | 'budget.forecast'
  | 'budget.drift'
  | 'anomaly'
  | 'suspended'
  | 'auth_flood'
  | 'store_down'
  | 'breaker_open'
  | 'abuse.detected'
  | 'audit.event';

export const GUARD_EVENT_TYPES: readonly GuardEventType[] = [
  'budget.threshold',
  'budget.exhausted',
  'budget.forecast',
  'budget.drift',
  'anomaly',
  'suspended',
  'auth_flood',
  'store_down',
  'breaker_open',
  'abuse.detected',
  'audit.event',
];

/** One alert: the JSON body a webhook receives (format `json`). */
export interface GuardEvent {
  type: GuardEventType;
  /**
   * Names the occurrence, the same in every process that sees it (`anomaly:key:k1:29384756`): an
   * event is delivered once per id and dedupe period across processes, and a receiver can drop a
   * retried duplicate by it.
   */
  id: string;
  /** ISO 8601 time it happened. */
  at: string;
  tenantId?: string;
  keyId?: string;
  /** The client address, for `auth_flood`. */
  address?: string;
  /** One sentence for a person. */
  message: string;
  /** What the source knows besides (the anomaly's figures, the budget's numbers, ...). */
  details?: Record<string, unknown>;
}

/** The event as a producer hands it in: `at` defaults to now. */
export type GuardEventInput = Omit<GuardEvent, 'at'> & { at?: string };
