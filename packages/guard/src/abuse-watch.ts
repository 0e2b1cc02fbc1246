// The abuse watch: requests summed per subject on the hot path; on a timer the sums go to the store, the model is
// trained and every subject scored by one process at a time, and the scores act through the mitigations.
import type { IncomingMessage } from 'node:http';
import type { UsageRecord } from '@tollgate/core';
import { LRUCache } from 'lru-cache';
import type { Alerts } from './alerts.js';
import { featuresOf, SubjectTally, type AbuseSubject, type AbuseTally, type RequestTraits } from './abuse-features.js';
import {
  abuseEvidence,
  abuseScore,
  byKind,
  describeReasons,
  novelTo,
  populationProfile,
  trainAbuseForest,
  type AbuseModel,
  type AbuseReason,
} from './abuse-model.js';
import { BUCKETS_PER_WINDOW, type ResolvedAbuse } from './abuse-options.js';
import { clientAddress } from './client-address.js';
import type { GuardStore } from './guard-store.js';
import type { MitigationRegistry } from './mitigation-registry.js';
import type { Mitigation, Subject } from './types.js';

/** One scored subject as operators list it (`GET /admin/abuse`). */
export interface AbuseEntry {
  subject: AbuseSubject;
  score: number;
  /** Requests in the window. */
  requests: number;
  /** What the score does: in `shadow`, what it would have done. */
  action: 'none' | 'throttle' | 'block';
  /** Epoch ms the action ends. */
  until?: number;
  shadow?: boolean;
  reasons: AbuseReason[];
  /**
   * Epoch ms of the first and the latest scoring of its spell past the throttle threshold (with enough requests
   * and evidence to act): it is acted on once the spell has lasted a bucket.
   */
  pastSince?: number;
  pastAt?: number;
}

/** The latest scoring, shared through the store. */
interface Scoring {
  at: number;
  /** Null: no model yet (cold start), nobody is scored. */
  modelVersion: number | null;
  entries: AbuseEntry[];
}

interface TrainingWindow {
  at: number;
  subjects: string[];
  rows: number[][];
  /**
   * Taken before the watch had seen a whole window of traffic: every subject's window is only partly filled (its
   * rates read low, its values few). Dropped once a whole window is kept.
   */
  partial?: boolean;
}

/** How often sums are flushed, the model looked for and subjects scored. */
export const ABUSE_TICK_MS = 1_000;
/** Subjects this process keeps sums of (least recently seen dropped first). */
export const MAX_LOCAL_SUBJECTS = 10_000;
/** Subjects in the shared scoring (highest scores kept): bounds the store's value and each process's copy. */
export const MAX_LISTED_SUBJECTS = 2_000;
/** Rows the model is trained on at most (the oldest windows dropped first). */
export const MAX_TRAINING_ROWS = 8_192;
/** A subject with fewer requests in the window is scored but never acted on: too little to judge. */
export const MIN_REQUESTS_TO_ACT = 5;
/**
 * A score past a threshold acts only when one of the subject's features lies at least this many robust spreads from
 * its kind's median (`abuseEvidence`): in a small, uniform population a forest isolates trifles, and an action must
 * have a reason a person would call one.
 */
export const MIN_EVIDENCE = 5;
/**
 * Buckets (a fifth of the window) a subject's score must stay past the throttle threshold before it is acted on: a
 * burst or a template that sets an ordinary key apart for a moment passes, abuse that goes on does not.
 */
export const PERSIST_BUCKETS = 1;

/** The mitigation registry's subject for an abuse subject (addresses are `ip:` there, as the auth-failure blocks). */
export function registrySubject(subject: AbuseSubject): Subject {
  return (subject.startsWith('address:') ? `ip:${subject.slice(8)}` : subject) as Subject;
}

/** Whether a mitigation is the abuse model's (its refusals say so). */
export function isAbuseMitigation(mitigation: Mitigation): boolean {
  return mitigation.anomalyId?.startsWith('abuse:') === true;
}

export interface AbuseWatchParts {
  store: GuardStore;
  registry: MitigationRegistry;
  alerts: Alerts;
  onStoreError: (error: unknown) => void;
  clock: () => number;
  /** Rounds on a timer (ms); 0: only when `flush()` is called (a replay on a fake clock). @default ABUSE_TICK_MS */
  tickMs?: number;
}

type Caller = { tollgate?: { identity?: { keyId: string; tenantId?: string } } };

export class AbuseWatch {
  readonly #config: ResolvedAbuse;
  readonly #parts: AbuseWatchParts;
  readonly #tallies = new LRUCache<AbuseSubject, SubjectTally>({ max: MAX_LOCAL_SUBJECTS });
  readonly #scores = new Map<AbuseSubject, number>();
  #scoring: Scoring = { at: 0, modelVersion: null, entries: [] };
  #model: AbuseModel | undefined;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;

  constructor(config: ResolvedAbuse, parts: AbuseWatchParts) {
    this.#config = config;
    this.#parts = parts;
    const tickMs = parts.tickMs ?? ABUSE_TICK_MS;
    if (tickMs > 0) {
      this.#timer = setInterval(() => void this.tick(), tickMs);
      // The watch must never keep a process alive.
      this.#timer.unref();
    }
  }

  #tally(subject: AbuseSubject): SubjectTally {
    let tally = this.#tallies.get(subject);
    if (!tally) this.#tallies.set(subject, (tally = new SubjectTally()));
    return tally;
  }

  /** The subjects a request counts for, by the configured kinds. */
  subjectsOf(address: string, keyId: string | undefined, tenantId: string | undefined): AbuseSubject[] {
    const { subjects } = this.#config;
    const out: AbuseSubject[] = [];
    if (subjects.has('address')) out.push(`address:${address}`);
    if (keyId !== undefined && subjects.has('key')) out.push(`key:${keyId}`);
    if (tenantId !== undefined && subjects.has('tenant')) out.push(`tenant:${tenantId}`);
    return out;
  }

  /**
   * One finished request from `address` (the hot path: sums in memory, no I/O). `peerOfAddress` is what the address
   * tried: the key, else a digest of the credential.
   */
  record(req: IncomingMessage, address: string, traits: RequestTraits, peerOfAddress: string): void {
    const identity = (req as IncomingMessage & Caller).tollgate?.identity;
    const bucket = Math.floor(traits.at / this.#config.bucketMs);
    for (const subject of this.subjectsOf(address, identity?.keyId, identity?.tenantId)) {
      const tally = this.#tally(subject);
      const peer = subject.startsWith('address:') ? peerOfAddress : address;
      tally.observe(traits, this.#config.windowMs, peer);
      tally.mark('peer', peer, bucket);
      tally.mark('agent', traits.agent, bucket);
      tally.mark('route', traits.route, bucket);
      if (traits.model !== undefined) tally.mark('model', traits.model, bucket);
    }
  }

  /** A settled request's tokens and spend, for its key, tenant and address. */
  recordUsage(record: UsageRecord, req: IncomingMessage | undefined): void {
    const address = req ? clientAddress(req) : undefined;
    const subjects = this.subjectsOf('', record.keyId ?? undefined, record.tenantId ?? undefined).filter(
      (subject) => subject !== 'address:',
    );
    if (address !== undefined && this.#config.subjects.has('address')) subjects.push(`address:${address}`);
    for (const subject of subjects) {
      const tally = this.#tally(subject);
      tally.add('tokens', record.inputTokens + record.outputTokens);
      tally.add('spendNanoUsd', record.costNanoUsd);
    }
  }

  /** The latest score of a subject, as this process knows it; undefined when it was not scored. */
  scoreOf(subject: AbuseSubject): number | undefined {
    return this.#scores.get(subject);
  }

  /** The latest scoring: subjects by score, highest first. */
  entries(): AbuseEntry[] {
    return this.#scoring.entries;
  }

  /** Whether a model is in use, and which. */
  model(): Pick<AbuseModel, 'version' | 'trainedAt' | 'subjects'> | undefined {
    const model = this.#model;
    return model && { version: model.version, trainedAt: model.trainedAt, subjects: model.subjects };
  }

  /**
   * Lifts the abuse actions on `subject` everywhere and leaves it alone for the longer of the throttle and block
   * periods (it is still scored). Resolves with what was lifted.
   */
  async clear(subject: AbuseSubject): Promise<Mitigation[]> {
    const { store, registry } = this.#parts;
    const quiet = Math.max(this.#config.blockMs, this.#config.throttleMs);
    await store.putAbuseState(`cleared:${subject}`, '1', quiet);
    const target = registrySubject(subject);
    const lifted: Mitigation[] = [];
    for (const kind of ['block', 'throttle'] as const) {
      // An auth-failure block or a spend throttle on the same subject is not the model's to lift.
      const inForce = registry.get(kind, target);
      if (inForce && !isAbuseMitigation(inForce)) continue;
      const gone = await registry.lift(kind, target);
      if (gone) lifted.push(gone);
    }
    const entries = this.#scoring.entries.map((entry): AbuseEntry => {
      if (entry.subject !== subject) return entry;
      const { until: _ended, shadow: _noted, ...rest } = entry;
      return { ...rest, action: 'none' };
    });
    this.#useScoring({ ...this.#scoring, entries });
    return lifted;
  }

  /** One round: flush the sums, follow the model, train and score when this process holds the turn. */
  tick(): Promise<void> {
    this.#ticking ??= this.#round(false)
      .catch(this.#parts.onStoreError)
      .finally(() => (this.#ticking = undefined));
    return this.#ticking;
  }

  #buckets(now: number): number[] {
    const current = Math.floor(now / this.#config.bucketMs);
    return Array.from({ length: BUCKETS_PER_WINDOW }, (_, i) => current - i);
  }

  /**
   * One process per tick scores, one per `train.every` trains (claims in the store); before the first model, any
   * tick may train. `now`: this process trains if there is no model yet and scores, whoever held the turn.
   */
  async #round(now: boolean): Promise<void> {
    const { store, clock } = this.#parts;
    const at = clock();
    await this.#flush(at);
    await this.#followModel();
    // Before a model, any tick may train; before a model grown on a whole window, one a bucket.
    const [trainSlot, trainMs] = !this.#model
      ? [`abuse:train:cold:${Math.floor(at / ABUSE_TICK_MS)}`, ABUSE_TICK_MS]
      : this.#model.partial
        ? [`abuse:train:warm:${Math.floor(at / this.#config.bucketMs)}`, this.#config.bucketMs]
        : [`abuse:train:${Math.floor(at / this.#config.trainEveryMs)}`, this.#config.trainEveryMs];
    const [claimedTrain, claimedScore] = await Promise.all([
      store.claim(trainSlot, trainMs),
      store.claim(`abuse:score:${Math.floor(at / ABUSE_TICK_MS)}`, ABUSE_TICK_MS),
    ]);
    const train = claimedTrain || (now && !this.#model);
    const score = claimedScore || now;
    if (!train && !score) return this.#followScoring();
    const features = this.#features(await store.abuseTallies(this.#buckets(at)));
    if (train) await this.#train(features, at, true);
    else if (score && this.#model && (now || at - this.#model.trainedAt >= this.#config.bucketMs)) {
      // A subject unlike anything the model was grown on: grown anew with it (at most once a bucket).
      const model = this.#model;
      const novel = [...features.values()].some(
        ({ features: row, requests }) => requests >= MIN_REQUESTS_TO_ACT && novelTo(model, row),
      );
      if (novel) await this.#train(features, at, false);
    }
    if (score) await this.#score(features, at);
    else await this.#followScoring();
  }

  async #flush(now: number): Promise<void> {
    const deltas = [];
    for (const [subject, tally] of this.#tallies.entries()) if (tally.dirty) deltas.push(tally.take(subject));
    if (deltas.length === 0) return;
    const bucket = Math.floor(now / this.#config.bucketMs);
    await this.#parts.store.addAbuseTallies(bucket, this.#config.windowMs + 2 * this.#config.bucketMs, deltas);
  }

  #features(tallies: Map<AbuseSubject, AbuseTally>): Map<AbuseSubject, { features: number[]; requests: number }> {
    const out = new Map<AbuseSubject, { features: number[]; requests: number }>();
    for (const [subject, tally] of tallies)
      if (tally.counts.requests > 0)
        out.set(subject, {
          features: featuresOf(subject, tally, this.#config.windowMs),
          requests: tally.counts.requests,
        });
    return out;
  }

  async #followModel(): Promise<void> {
    const { store } = this.#parts;
    const version = Number((await store.abuseState('modelVersion')) ?? -1);
    if (version < 0 || version === this.#model?.version) return;
    const json = await store.abuseState('model');
    const model = json ? (JSON.parse(json) as Partial<AbuseModel>) : undefined;
    // A model of an earlier release (one forest, no groups) is not read: this process grows its own.
    if (Array.isArray(model?.views)) this.#model = model as AbuseModel;
  }

  async #followScoring(): Promise<void> {
    const json = await this.#parts.store.abuseState('scores');
    if (json) this.#useScoring(JSON.parse(json) as Scoring);
  }

  #useScoring(scoring: Scoring): void {
    this.#scoring = scoring;
    this.#scores.clear();
    for (const entry of scoring.entries) this.#scores.set(entry.subject, entry.score);
  }

  /** Adds this window to the training windows and grows a forest on them once they hold `minSubjects` subjects. */
  /**
   * Grows a forest on the training windows and this one, once they hold `minSubjects` subjects. `keep`: this window
   * joins the training windows (a scheduled training; a bucket's later view replaces its earlier one). A training for
   * a novel subject keeps nothing: a subject kept once per tick would soon outnumber the crowd it must stand out of.
   */
  async #train(features: Map<AbuseSubject, { features: number[] }>, now: number, keep: boolean): Promise<void> {
    const { store } = this.#parts;
    const stored = await store.abuseState('history');
    let windows = (stored ? (JSON.parse(stored) as TrainingWindow[]) : []).filter(
      (window) => window.at > now - this.#config.historyMs,
    );
    const current: TrainingWindow = {
      at: now,
      subjects: [...features.keys()],
      rows: [...features.values()].map((f) => f.features),
    };
    // The start's windows are partial until one is taken a whole window after the first; it replaces them.
    const first = windows[0];
    if (!first || (first.partial && now - first.at < this.#config.windowMs)) current.partial = true;
    else windows = windows.filter((window) => !window.partial);
    if (keep && features.size > 0) {
      if (windows.length > 0 && now - windows.at(-1)!.at < this.#config.bucketMs) windows.pop();
      windows.push(current);
      let rows = windows.reduce((sum, window) => sum + window.rows.length, 0);
      while (rows > MAX_TRAINING_ROWS && windows.length > 1) rows -= windows.shift()!.rows.length;
      await store.putAbuseState('history', JSON.stringify(windows), this.#config.historyMs);
    } else windows.push(current);
    const subjects = new Set(windows.flatMap((window) => window.subjects)).size;
    if (subjects < this.#config.minSubjects) return;
    const version = (this.#model?.version ?? 0) + 1;
    const model: AbuseModel = {
      version,
      trainedAt: now,
      subjects,
      partial: windows.every((window) => window.partial === true),
      ...trainAbuseForest(
        windows.flatMap((window) => window.rows),
        version,
      ),
    };
    await store.putAbuseState('model', JSON.stringify(model));
    await store.putAbuseState('modelVersion', String(version));
    this.#model = model;
  }

  /** Scores every subject of the window, acts on those past a threshold, and shares the scoring. */
  async #score(features: Map<AbuseSubject, { features: number[]; requests: number }>, now: number): Promise<void> {
    const model = this.#model;
    const entries: AbuseEntry[] = [];
    const evidence = new Map<AbuseSubject, number>();
    if (model) {
      for (const group of byKind(features.entries()).values()) {
        const profile = populationProfile(group.map(([, f]) => f.features));
        for (const [subject, { features: row, requests }] of group) {
          const score = Number(abuseScore(model, row).toFixed(4));
          const { reasons, distance } = abuseEvidence(row, profile);
          entries.push({ subject, score, requests, action: 'none', reasons });
          evidence.set(subject, distance);
        }
      }
      entries.sort((a, b) => b.score - a.score);
      entries.length = Math.min(entries.length, MAX_LISTED_SUBJECTS);
      const before = new Map(this.#scoring.entries.map((entry) => [entry.subject, entry]));
      const { bucketMs } = this.#config;
      for (const entry of entries) {
        const past =
          !model.partial &&
          entry.score >= this.#config.throttleAt &&
          entry.requests >= MIN_REQUESTS_TO_ACT &&
          (evidence.get(entry.subject) ?? 0) >= MIN_EVIDENCE;
        // One spell past the threshold: a scoring under it within a bucket of the last one past does not end it.
        const spell = before.get(entry.subject);
        const going = spell?.pastSince !== undefined && now - spell.pastAt! <= bucketMs;
        if (past) {
          entry.pastSince = going ? spell.pastSince! : now;
          entry.pastAt = now;
        } else if (going) {
          entry.pastSince = spell.pastSince!;
          entry.pastAt = spell.pastAt!;
        }
        const acts = past && now - entry.pastSince! >= PERSIST_BUCKETS * bucketMs;
        // A subject whose score fell under the thresholds (its requests refused) is listed with its action in force.
        if (acts) await this.#act(entry, now);
        else this.#inForce(entry, now, true);
      }
    }
    const scoring: Scoring = { at: now, modelVersion: model?.version ?? null, entries };
    await this.#parts.store.putAbuseState('scores', JSON.stringify(scoring), 2 * this.#config.windowMs);
    this.#useScoring(scoring);
  }

  /** Shows on `entry` the model's block in force on its subject, or its throttle when `throttleToo`; whether any. */
  #inForce(entry: AbuseEntry, now: number, throttleToo: boolean): boolean {
    const { registry } = this.#parts;
    const target = registrySubject(entry.subject);
    const existing =
      registry.get('block', target, now) ?? (throttleToo ? registry.get('throttle', target, now) : undefined);
    if (!existing || !isAbuseMitigation(existing)) return false;
    entry.action = existing.kind === 'block' ? 'block' : 'throttle';
    if (existing.until !== undefined) entry.until = existing.until;
    return true;
  }

  /** Puts the action a score calls for in force everywhere (or, in shadow, only notes it), and tells a person. */
  async #act(entry: AbuseEntry, now: number): Promise<void> {
    const { store, registry, alerts } = this.#parts;
    const config = this.#config;
    const action = entry.score >= config.blockAt ? 'block' : 'throttle';
    const target = registrySubject(entry.subject);
    if (this.#inForce(entry, now, action === 'throttle')) return;
    if (await store.abuseState(`cleared:${entry.subject}`)) return;
    const durationMs = action === 'block' ? config.blockMs : config.throttleMs;
    const why = describeReasons(entry.reasons);
    const reason = `its traffic scored ${entry.score.toFixed(2)} as abuse (${why})`;
    const window = Math.floor(now / config.bucketMs);
    const anomalyId = `abuse:${entry.subject}@${window}`;
    entry.action = action;
    entry.until = now + durationMs;
    if (config.shadow) entry.shadow = true;
    else {
      const mitigation = await registry.put(
        action === 'block'
          ? { kind: 'block', subject: target, reason, anomalyId }
          : { kind: 'throttle', subject: target, reason, anomalyId, scale: config.throttleFactor },
        durationMs,
      );
      if (mitigation.until !== undefined) entry.until = mitigation.until;
    }
    const keyId = entry.subject.startsWith('key:') ? { keyId: entry.subject.slice(4) } : {};
    const tenantId = entry.subject.startsWith('tenant:') ? { tenantId: entry.subject.slice(7) } : {};
    const address = entry.subject.startsWith('address:') ? { address: entry.subject.slice(8) } : {};
    const verb = action === 'block' ? 'blocked' : 'throttled';
    const done = config.shadow
      ? `would be ${verb} (shadow: nothing was done)`
      : `${verb} for ${Math.round(durationMs / 1000)}s`;
    alerts.emit({
      type: 'abuse.detected',
      id: `${anomalyId}:${action}`,
      ...keyId,
      ...tenantId,
      ...address,
      message: `${entry.subject} ${done}: ${reason}.`,
      details: {
        subject: entry.subject,
        score: entry.score,
        action,
        shadow: config.shadow,
        until: new Date(entry.until).toISOString(),
        reasons: entry.reasons,
      },
    });
  }

  /** Sums to the store, and subjects scored now (trained first when there is no model yet). */
  async flush(): Promise<void> {
    await this.#ticking;
    this.#ticking = this.#round(true)
      .catch(this.#parts.onStoreError)
      .finally(() => (this.#ticking = undefined));
    await this.#ticking;
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#ticking;
    await this.#flush(this.#parts.clock()).catch(this.#parts.onStoreError);
  }
}
