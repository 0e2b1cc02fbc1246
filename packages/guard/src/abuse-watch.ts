// The abuse watch: requests summed per subject on the hot path; on a timer the sums go to the store, the model is
// trained and every subject scored by one process at a time, and the scores act through the mitigations.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { UsageRecord } from '@tollgate/core';
import { besideRequests } from '@tollgate/core/store-contracts';
import type { TimeSlice } from '@tollgate/core/store-contracts';
import type { Alerts } from './alerts.js';
import {
  MARK_SEPARATOR,
  TALLY_COUNTS,
  AbuseTallyTable,
  type AbuseSubject,
  type RequestTraits,
  writeFeatures,
} from './abuse-features.js';
import { AbuseWindow } from './abuse-window.js';
import { LocalTallies } from './local-tallies.js';
import { AbuseActions, isAbuseMitigation, registrySubject, type AbuseEntry } from './abuse-actions.js';
import { FEATURE_COUNT, MIN_REQUESTS_TO_ACT, reasonsAt, type ScoredColumns, type WindowRows } from './abuse-scoring.js';
export type { AbuseEntry } from './abuse-actions.js';
import { AbuseWorker, type ModelMeta } from './abuse-worker-client.js';
import { BUCKETS_PER_WINDOW, type ResolvedAbuse } from './abuse-options.js';
import { clientAddress } from './client-address.js';
import type { GuardStore } from './guard-store.js';
import type { MitigationRegistry } from './mitigation-registry.js';
import type { Mitigation } from './types.js';

/** The latest scoring, shared through the store. */
export interface Scoring {
  at: number;
  /** Null: no model yet (cold start), nobody is scored. */
  modelVersion: number | null;
  entries: AbuseEntry[];
}

/**
 * A window of subjects as the watch sends it to the worker (`rows`) and reads it after (`subjects`, `requests`: their
 * first `rows.count` entries).
 */
interface Window {
  subjects: AbuseSubject[];
  requests: Float64Array;
  rows: WindowRows;
}

/** A subject's requests, `TALLY_COUNTS`' first. */
const REQUESTS = TALLY_COUNTS.indexOf('requests');
/** Subjects joined at a time for the worker (a join of 100,000 holds the loop about 4 ms). */
const JOIN_PART = 8_192;
/** How often sums are flushed, the model looked for and subjects scored. */
const ABUSE_TICK_MS = 1_000;
/**
 * A score past a threshold acts only when one of the subject's features lies at least this many robust spreads from
 * its kind's median (`abuseEvidence`): in a small, uniform population a forest isolates trifles, and an action must
 * have a reason a person would call one.
 */
const MIN_EVIDENCE = 5;
interface AbuseWatchParts {
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
  /** This process's sums since its last flush, per subject. */
  readonly #tallies = new LocalTallies();
  /** When this process last shared its scoring (`abuseState('scores')`), and that scoring's `marksOf`. */
  #sharedAt = -Infinity;
  #sharedMarks = '';
  /** The `scoresAt` of the scoring this process last followed or shared. */
  #followed: string | undefined;
  /** The latest scoring's entries by subject: kept, updated in place each round (`#useScoring`). */
  readonly #listed = new Map<AbuseSubject, AbuseEntry>();
  #scoring: Scoring = { at: 0, modelVersion: null, entries: [] };
  /** The model in use (it lives in the worker), as of the worker's `generation`. */
  #model: ModelMeta | undefined;
  readonly #worker = new AbuseWorker();
  readonly #actions: AbuseActions;
  #generation = 0;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  /** `performance.now()` before which a timer's round waits (see `#onTimer`). */
  #restUntil = 0;
  /** See `#windowBuffers`. */
  #shared: { rows: Float64Array; requests: Float64Array } | undefined;
  /**
   * The window's sums and its subjects, kept from round to round (`AbuseWindow`): built anew, 100,000 subjects' maps
   * and arrays each round outlived the young generation, and the full collections they brought held the loop past the
   * stall target (bench/guard-stall.ts); summed whole each round, they held it 70-140 ms a second in slices.
   */
  readonly #kept = new AbuseWindow();
  /** The window's subjects by place (the first `#count`), and each row of `#kept.table`'s place (-1: none). */
  readonly #windowSubjects: AbuseSubject[] = [];
  #count = 0;
  #placeOf = new Int32Array(0);

  constructor(config: ResolvedAbuse, parts: AbuseWatchParts) {
    this.#config = config;
    this.#parts = parts;
    this.#actions = new AbuseActions(config, parts);
    const tickMs = parts.tickMs ?? ABUSE_TICK_MS;
    if (tickMs > 0) {
      this.#timer = setInterval(() => this.#onTimer(), tickMs);
      // The watch must never keep a process alive.
      this.#timer.unref();
    }
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
    const tallies = this.#tallies;
    for (const subject of this.subjectsOf(address, identity?.keyId, identity?.tenantId)) {
      const row = tallies.rowOf(subject);
      const peer = subject.startsWith('address:') ? peerOfAddress : address;
      tallies.observe(row, traits, this.#config.windowMs, peer, bucket);
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
      const row = this.#tallies.rowOf(subject);
      this.#tallies.add(row, 'tokens', record.inputTokens + record.outputTokens);
      this.#tallies.add(row, 'spendNanoUsd', record.costNanoUsd);
    }
  }

  /** The latest score of a subject, as this process knows it; undefined when it was not scored. */
  scoreOf(subject: AbuseSubject): number | undefined {
    return this.#listed.get(subject)?.score;
  }

  /** The latest scoring: subjects by score, highest first. */
  entries(): AbuseEntry[] {
    return this.#scoring.entries;
  }

  /** Whether a model is in use, and which. */
  model(): Pick<ModelMeta, 'version' | 'trainedAt' | 'subjects'> | undefined {
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
    // The next scoring is shared even if it lists what this one now does: the shared copy still shows the action.
    this.#sharedAt = -Infinity;
    return lifted;
  }

  /** One round: flush the sums, follow the model, train and score when this process holds the turn. */
  tick(): Promise<void> {
    if (this.#ticking) return this.#ticking;
    const started = performance.now();
    this.#ticking = this.#round(false)
      .catch(this.#parts.onStoreError)
      .finally(() => {
        this.#ticking = undefined;
        this.#restUntil = performance.now() + (performance.now() - started);
      });
    return this.#ticking;
  }

  /**
   * The timer's round. One of a large window takes seconds of slices: the next waits its length again, so the watch's
   * share of the loop stays under about half however many subjects there are (a second apart while they are short).
   * A replay that calls `tick()` itself is not paced.
   */
  #onTimer(): void {
    if (performance.now() >= this.#restUntil) void this.tick();
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
    // One share of the loop for the round's steps: each its own would hold it a slice each in a row.
    const slice = besideRequests();
    await this.#flush(at, slice);
    await this.#followModel(slice);
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
    // The store merges into the kept window's table: `changed` says which of its rows moved.
    await store.abuseTallies(this.#buckets(at), slice, this.#kept);
    const window = await this.#window(this.#kept.table, this.#kept.changed, slice);
    const novel = await this.#worker.load(window.rows);
    if (train) await this.#train(window, at, true, slice);
    // A subject unlike anything the model was grown on: grown anew with it (at most once a bucket).
    else if (score && novel && this.#model && (now || at - this.#model.trainedAt >= this.#config.bucketMs))
      await this.#train(window, at, false, slice);
    if (score) await this.#score(window, at, slice);
    else await this.#followScoring();
  }

  async #flush(now: number, slice = besideRequests()): Promise<void> {
    const { touched, evicted: deltas } = this.#tallies.takeTouched();
    // Only the subjects added to since the last flush: not a walk of every one kept (10,000) each round.
    let walked = 0;
    for (const subject of touched) {
      const delta = this.#tallies.take(subject);
      if (delta) deltas.push(delta);
      if ((++walked & 63) === 0) await slice.pause();
    }
    if (deltas.length === 0) return;
    const bucket = Math.floor(now / this.#config.bucketMs);
    await this.#parts.store.addAbuseTallies(bucket, this.#config.windowMs + 2 * this.#config.bucketMs, deltas, slice);
  }

  /**
   * The window's subjects with requests, and their features as rows for the worker (built in slices). `changed`: the
   * table's rows summed again since the last window (the rest as they were); undefined, all of them. A subject keeps
   * its place in the window while the window's buckets stay; one new to it is added at the end.
   */
  async #window(tallies: AbuseTallyTable, changed: readonly number[] | undefined, slice: TimeSlice): Promise<Window> {
    if (changed === undefined) {
      this.#count = 0;
      this.#placeOf.fill(-1);
      this.#windowBuffers(tallies.liveSize);
      for (let row = 0; row < tallies.size; row++) {
        if (tallies.live(row)) this.#place(tallies, row);
        if ((row & 63) === 63) await slice.pause();
      }
    } else
      for (let i = 0; i < changed.length; i++) {
        this.#place(tallies, changed[i]!);
        if ((i & 63) === 63) await slice.pause();
      }
    const { rows, requests } = this.#windowBuffers(this.#count);
    // The worker reads `count` rows only (entries past it are an earlier window's).
    return { subjects: this.#windowSubjects, requests, rows: { rows, requests, count: this.#count } };
  }

  /** Writes a row's features at its place in the window (a new place for a subject with requests new to it). */
  #place(tallies: AbuseTallyTable, row: number): void {
    const sent = tallies.count(row, REQUESTS);
    if (row >= this.#placeOf.length) {
      const grown = new Int32Array(Math.ceil(tallies.size * 1.25) + 256).fill(-1);
      grown.set(this.#placeOf);
      this.#placeOf = grown;
    }
    let place = this.#placeOf[row]!;
    if (place < 0) {
      if (sent <= 0) return;
      place = this.#count++;
      this.#placeOf[row] = place;
      const subjects = this.#windowSubjects;
      if (place < subjects.length) subjects[place] = tallies.subjects[row]!;
      else subjects.push(tallies.subjects[row]!);
    }
    const { rows, requests } = this.#windowBuffers(place + 1);
    writeFeatures(rows, place * FEATURE_COUNT, tallies, row, this.#config.windowMs);
    requests[place] = sent;
  }

  /**
   * The buffers a window is written in, shared with the worker (a round's calls to it all end before the next round
   * writes them again): one pair kept, grown with what they hold, not 20 MB of new memory each round for 100,000
   * subjects: external memory growing that fast calls for full collections (bench/guard-stall.ts).
   */
  #windowBuffers(size: number): { rows: Float64Array; requests: Float64Array } {
    if (this.#shared && this.#shared.requests.length >= size) return this.#shared;
    const capacity = Math.ceil(size * 1.25) + 256;
    const grown = {
      rows: new Float64Array(new SharedArrayBuffer(capacity * FEATURE_COUNT * Float64Array.BYTES_PER_ELEMENT)),
      requests: new Float64Array(new SharedArrayBuffer(capacity * Float64Array.BYTES_PER_ELEMENT)),
    };
    if (this.#shared) {
      grown.rows.set(this.#shared.rows.subarray(0, this.#count * FEATURE_COUNT));
      grown.requests.set(this.#shared.requests.subarray(0, this.#count));
    }
    this.#shared = grown;
    return grown;
  }

  async #followModel(slice: TimeSlice): Promise<void> {
    // A worker started anew (it failed) holds no model: the stored one is handed to it again.
    if (this.#generation !== this.#worker.generation) this.#model = undefined;
    const { store } = this.#parts;
    const version = Number((await store.abuseState('modelVersion')) ?? -1);
    if (version < 0 || version === this.#model?.version) return;
    const json = await store.abuseState('model');
    const meta = json ? await this.#worker.use(json, slice) : null;
    this.#generation = this.#worker.generation;
    if (meta) this.#model = meta;
  }

  /**
   * Another process's scoring, read and parsed only when it shared a new one (`scoresAt`, a few bytes, says which):
   * half a megabyte of JSON parsed each round was the old generation's growth on every process that follows.
   */
  async #followScoring(): Promise<void> {
    const { store } = this.#parts;
    const at = await store.abuseState('scoresAt');
    if (at !== undefined && at === this.#followed) return;
    const json = await store.abuseState('scores');
    if (!json) return;
    this.#followed = at;
    this.#useScoring(JSON.parse(json) as Scoring);
  }

  #useScoring(scoring: Scoring): void {
    // The subjects of the last scoring out, this one's in: one map kept, not one made and grown each round.
    for (const entry of this.#scoring.entries) this.#listed.delete(entry.subject);
    this.#scoring = scoring;
    for (const entry of scoring.entries) this.#listed.set(entry.subject, entry);
  }

  /**
   * Grows a forest, in the worker, on the training windows and this one (`growModel`); `keep`: this window joins
   * the training windows.
   */
  async #train(window: Window, now: number, keep: boolean, slice: TimeSlice): Promise<void> {
    const { store } = this.#parts;
    const config = this.#config;
    const { subjects } = window;
    const count = window.rows.count;
    // Parts of subjects joined (a subject never holds the separator) and encoded in slices, moved to the worker whole.
    const encoder = new TextEncoder();
    const parts: Uint8Array[] = [];
    for (let from = 0; from < count; from += JOIN_PART) {
      parts.push(encoder.encode(subjects.slice(from, Math.min(count, from + JOIN_PART)).join(MARK_SEPARATOR)));
      await slice.pause();
    }
    const grown = await this.#worker.grow(
      {
        history: await store.abuseState('history'),
        subjects: parts,
        now,
        keep,
        version: (this.#model?.version ?? 0) + 1,
        windowMs: config.windowMs,
        bucketMs: config.bucketMs,
        historyMs: config.historyMs,
        minSubjects: config.minSubjects,
      },
      slice,
    );
    this.#generation = this.#worker.generation;
    if (grown.history !== undefined) await store.putAbuseState('history', grown.history, config.historyMs);
    if (!grown.json || !grown.meta) return;
    await store.putAbuseState('model', grown.json);
    await store.putAbuseState('modelVersion', String(grown.meta.version));
    this.#model = grown.meta;
  }

  /**
   * Scores every subject of the window (in the worker), acts on those past a threshold, and shares the scoring. Its
   * 2,000 listed subjects are walked, and their JSON written, in the round's slices: in one step they held the loop
   * past the stall target (bench/guard-stall.ts).
   */
  async #score(window: Window, now: number, slice: TimeSlice): Promise<void> {
    const model = this.#model;
    const { scored, stuffing } = await this.#worker.score();
    // A listed subject's entry is made anew each round (its action is decided again), its reasons kept when the same.
    const entryOf = (rows: ScoredColumns, i: number): AbuseEntry => {
      const index = rows.index[i]!;
      const subject = window.subjects[index]!;
      return {
        subject,
        score: rows.score[i]!,
        requests: window.requests[index]!,
        action: 'none',
        reasons: reasonsAt(rows, i, this.#listed.get(subject)?.reasons),
      };
    };
    const entries: AbuseEntry[] = [];
    if (model)
      for (let i = 0; i < scored.count; i++) {
        entries.push(entryOf(scored, i));
        if ((i & 255) === 255) await slice.pause();
      }
    // The stuffing addresses: the listed entry of one, or an entry of its own (no Map a round unless there are any).
    const stuffed = new Set<AbuseEntry>();
    if (stuffing.count > 0) {
      const listedAt = new Map<number, number>();
      for (let i = 0; i < entries.length; i++) listedAt.set(scored.index[i]!, i);
      for (let i = 0; i < stuffing.count; i++) {
        const at = listedAt.get(stuffing.index[i]!);
        const entry = at === undefined ? entryOf(stuffing, i) : entries[at]!;
        if (at === undefined) entries.push(entry);
        stuffed.add(entry);
      }
    }
    await slice.pause();
    // In the scoring's order (highest first); the worker sends the listed rows sorted, `distance` beside each.
    for (let i = 0; i < entries.length; i++) {
      if ((i & 63) === 63) await slice.pause();
      const entry = entries[i]!;
      if (stuffed.has(entry)) {
        await this.#actions.act(entry, now, stuffing.count);
        continue;
      }
      if (!model) continue;
      const before = this.#listed.get(entry.subject);
      const past =
        !model.partial &&
        entry.score >= this.#config.throttleAt &&
        entry.requests >= MIN_REQUESTS_TO_ACT &&
        scored.distance[i]! >= MIN_EVIDENCE;
      const acts = this.#actions.spell(entry, before, past, now);
      // A subject whose score fell under the thresholds (its requests refused) is listed with its action in force.
      if (acts) await this.#actions.act(entry, now);
      else if (!this.#actions.inForce(entry, now, true)) this.#actions.stillNoted(entry, before, now);
    }
    if (entries.length > scored.count) entries.sort((a, b) => b.score - a.score);
    const scoring: Scoring = { at: now, modelVersion: model?.version ?? null, entries };
    // Shared at once when what other processes act and list by changed (a model, an action, a spell), else every
    // SHARE_EVERY_MS: 2,000 entries' JSON each round was half a megabyte a second, growing the old generation into a
    // full collection every few seconds, its compaction the request loop's longest pause (bench/guard-stall.ts).
    const marks = marksOf(scoring);
    if (marks !== this.#sharedMarks || now - this.#sharedAt >= Math.min(SHARE_EVERY_MS, this.#config.windowMs)) {
      const { store } = this.#parts;
      await store.putAbuseState('scores', await scoringJson(scoring, slice), 2 * this.#config.windowMs);
      // Which scoring is shared, for those that follow it (after it: one that reads it new reads the scoring new).
      this.#followed = `${now}:${randomUUID()}`;
      await store.putAbuseState('scoresAt', this.#followed, 2 * this.#config.windowMs);
      this.#sharedAt = now;
      this.#sharedMarks = marks;
    }
    this.#useScoring(scoring);
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
    await this.#worker.close();
  }
}

/**
 * How often a scoring is shared when only scores and counts moved: other processes list subjects and score requests by
 * a copy this old at most (what they act on, `marksOf`, is shared at once).
 */
const SHARE_EVERY_MS = 10_000;

/** What of a scoring other processes act on: its model, and each entry with an action or in a spell past the threshold. */
function marksOf(scoring: Scoring): string {
  let marks = String(scoring.modelVersion);
  for (const { subject, action, until, shadow, pastSince, pastAt } of scoring.entries)
    if (action !== 'none' || pastSince !== undefined)
      marks += `\n${subject} ${action} ${until} ${shadow} ${pastSince} ${pastAt}`;
  return marks;
}

/** Entries written to JSON at a time (a slice each): 2,000 entries with their reasons in one step took milliseconds. */
const JSON_PART = 256;

/** `JSON.stringify(scoring)`, its entries written in parts between the slice's pauses. */
export async function scoringJson(scoring: Scoring, slice: TimeSlice): Promise<string> {
  const { entries, ...head } = scoring;
  const parts: string[] = [];
  for (let from = 0; from < entries.length; from += JSON_PART) {
    parts.push(JSON.stringify(entries.slice(from, from + JSON_PART)).slice(1, -1));
    await slice.pause();
  }
  return `${JSON.stringify(head).slice(0, -1)},"entries":[${parts.join(',')}]}`;
}
