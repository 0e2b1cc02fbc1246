// The spend-anomaly detector: usage summed in the process, sent to the shared store in flushes, findings handed on.
import type { AnomalyFinding } from './baseline.js';
import type { GuardStore, Observation, ObserveParams } from './guard-store.js';
import type { Subject } from './types.js';

/** One request's usage (or several, summed), as the detector takes it. */
export interface UsageSample {
  keyId?: string | null;
  tenantId?: string | null;
  /** nano-USD. */
  costNanoUsd: number;
  tokens: number;
  /** Requests this sample stands for. @default 1 */
  requests?: number;
  /**
   * The largest single request among them (nano-USD, tokens): spend and tokens are judged without
   * a bucket's largest request. @default the whole sample for one request, its average for several
   */
  largestCostNanoUsd?: number;
  largestTokens?: number;
  /** The client address (IPv6 by /56), when known. */
  address?: string;
}

/** A finding with who it is about, as the flush that revealed it knew them. */
export interface SubjectFinding {
  subject: Subject;
  keyId?: string;
  tenantId?: string;
  finding: AnomalyFinding;
}

interface SpendAnomalyDetectorOptions {
  store: GuardStore;
  params: ObserveParams;
  /** Watch each API key, each tenant, or both. */
  watchKeys: boolean;
  watchTenants: boolean;
  /** How often the usage summed in the process goes to the store; 0: only when `flush()` is called. */
  flushIntervalMs: number;
  /** Told of every anomaly (after the store reported it to this process only). Never throws into the flush. */
  onFinding: (finding: SubjectFinding) => void;
  /** Told when a flush could not reach the store (its usage is dropped, the baselines miss it). */
  onStoreError: (error: unknown) => void;
}

interface Pending {
  subject: Subject;
  keyId: string | undefined;
  tenantId: string | undefined;
  spend: number;
  tokens: number;
  requests: number;
  largestSpend: number;
  largestTokens: number;
  addresses: Set<string> | undefined;
}

/** Addresses kept per subject per flush: enough to show a key used from many places, not a memory sink. */
const MAX_ADDRESSES_PER_FLUSH = 64;

/**
 * Sums usage per subject in the process and sends it to the store once per flush, so the shared
 * store sees one update per active subject per interval, not one per request, and nothing of
 * this runs before a request's answer.
 */
export class SpendAnomalyDetector {
  readonly #options: SpendAnomalyDetectorOptions;
  #pending = new Map<Subject, Pending>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;

  constructor(options: SpendAnomalyDetectorOptions) {
    this.#options = options;
    if (options.flushIntervalMs > 0) {
      this.#timer = setInterval(() => void this.flush(), options.flushIntervalMs);
      // The detector alone must never keep a process alive.
      this.#timer.unref();
    }
  }

  /** Counts a sample for its key and its tenant; does no I/O. */
  observe(sample: UsageSample): void {
    const requests = sample.requests ?? 1;
    const keyId = sample.keyId ?? undefined;
    const tenantId = sample.tenantId ?? undefined;
    if (this.#options.watchKeys && keyId !== undefined)
      this.#add(`key:${keyId}`, keyId, tenantId, sample, requests, sample.address);
    if (this.#options.watchTenants && tenantId !== undefined)
      this.#add(`tenant:${tenantId}`, undefined, tenantId, sample, requests, undefined);
  }

  #add(
    subject: Subject,
    keyId: string | undefined,
    tenantId: string | undefined,
    sample: UsageSample,
    requests: number,
    address: string | undefined,
  ): void {
    let pending = this.#pending.get(subject);
    if (!pending) {
      pending = {
        subject,
        keyId,
        tenantId,
        spend: 0,
        tokens: 0,
        requests: 0,
        largestSpend: 0,
        largestTokens: 0,
        addresses: undefined,
      };
      this.#pending.set(subject, pending);
    }
    pending.spend += sample.costNanoUsd;
    pending.tokens += sample.tokens;
    pending.requests += requests;
    const largestSpend = sample.largestCostNanoUsd ?? sample.costNanoUsd / requests;
    const largestTokens = sample.largestTokens ?? sample.tokens / requests;
    if (largestSpend > pending.largestSpend) pending.largestSpend = largestSpend;
    if (largestTokens > pending.largestTokens) pending.largestTokens = largestTokens;
    if (address !== undefined) {
      pending.addresses ??= new Set();
      if (pending.addresses.size < MAX_ADDRESSES_PER_FLUSH) pending.addresses.add(address);
    }
  }

  /** Sends what was summed to the store and hands on what it found. One flush at a time; resolves when this one is done. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending.values()];
    this.#pending = new Map();
    this.#flushing = this.#send(batch);
    try {
      await this.#flushing;
    } finally {
      this.#flushing = undefined;
    }
  }

  async #send(batch: Pending[]): Promise<void> {
    const observations: Observation[] = batch.map((pending) => ({
      subject: pending.subject,
      spend: pending.spend,
      tokens: pending.tokens,
      requests: pending.requests,
      largestSpend: pending.largestSpend,
      largestTokens: pending.largestTokens,
      addresses: pending.addresses ? [...pending.addresses] : [],
    }));
    let findings: (AnomalyFinding | undefined)[];
    try {
      findings = await this.#options.store.observe(observations, this.#options.params);
    } catch (error) {
      this.#options.onStoreError(error);
      return;
    }
    findings.forEach((finding, index) => {
      if (!finding) return;
      const { subject, keyId, tenantId } = batch[index]!;
      this.#options.onFinding({
        subject,
        ...(keyId === undefined ? {} : { keyId }),
        ...(tenantId === undefined ? {} : { tenantId }),
        finding,
      });
    });
  }

  /** Stops the timer and sends what is left. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
