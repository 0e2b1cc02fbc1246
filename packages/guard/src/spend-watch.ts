// The guard's spend-anomaly watch: the usage feed goes to the detector, and each finding is recorded, told and acted on.
import type { IncomingMessage } from 'node:http';
import { formatUsd, type UsageRecord } from '@tollgate/core';
import type { Alerts } from './alerts.js';
import { clientAddress } from './client-address.js';
import type { GuardStore } from './guard-store.js';
import { MemoryGuardStore } from './memory-guard-store.js';
import type { MitigationRegistry } from './mitigation-registry.js';
import { SpendAnomalyDetector, type SubjectFinding } from './spend-anomaly.js';
import type { ResolvedSpendAnomaly } from './spend-anomaly-options.js';
import type { AnomalyRecord } from './types.js';

/** A bucket total in words: `$4.21`, `52,000 tokens`, `340 requests`, `requests from 61 addresses`. */
function amount(metric: AnomalyRecord['metric'], value: number): string {
  const rounded = Math.round(value).toLocaleString('en-US');
  switch (metric) {
    case 'spend':
      return formatUsd(value);
    case 'tokens':
      return `${rounded} tokens`;
    case 'requests':
      return `${rounded} requests`;
    case 'addresses':
      return `requests from ${rounded} addresses`;
  }
}

/** One sentence for a person: who, how much in which bucket, against what is usual. */
function describeAnomaly(anomaly: AnomalyRecord): string {
  const who = anomaly.subject.startsWith('tenant:')
    ? `Tenant ${anomaly.tenantId}`
    : `Key ${anomaly.keyId}${anomaly.tenantId ? ` (tenant ${anomaly.tenantId})` : ''}`;
  const when = new Date(anomaly.bucketStart).toISOString();
  // Spend and tokens are judged without the bucket's largest request (see baseline.ts).
  const aside = anomaly.metric === 'spend' || anomaly.metric === 'tokens' ? ', its largest request aside' : '';
  return `${who}: ${amount(anomaly.metric, anomaly.value)} in the ${anomaly.bucketSeconds}s from ${when}${aside}, where about ${amount(anomaly.metric, anomaly.expected)} is usual (score ${anomaly.score.toFixed(1)}).`;
}

/** Where an anomaly's answer goes: the record of anomalies, the mitigations in force and the alert stream. */
interface AnomalyResponders {
  readonly store: GuardStore;
  readonly registry: MitigationRegistry;
  readonly alerts: Alerts;
}

/** An anomaly found by this process (the store reports each to one process): logged, told, acted on. */
async function actOnAnomaly(
  { store, registry, alerts }: AnomalyResponders,
  found: SubjectFinding,
  settings: ResolvedSpendAnomaly,
): Promise<void> {
  const { subject, keyId, tenantId, finding } = found;
  const anomaly: AnomalyRecord = {
    id: `anomaly:${subject}:${finding.bucket}`,
    subject,
    ...(keyId === undefined ? {} : { keyId }),
    ...(tenantId === undefined ? {} : { tenantId }),
    metric: finding.metric,
    value: finding.value,
    expected: finding.expected,
    z: finding.z,
    score: finding.score,
    bucketStart: finding.bucket * settings.bucketMs,
    bucketSeconds: settings.bucketSeconds,
    at: Date.now(),
    action: settings.action,
  };
  const description = describeAnomaly(anomaly);
  await store.recordAnomaly(anomaly);
  const scope = { ...(keyId === undefined ? {} : { keyId }), ...(tenantId === undefined ? {} : { tenantId }) };
  const reason = `unusual ${anomaly.metric} (${amount(anomaly.metric, anomaly.value)} in ${anomaly.bucketSeconds}s, about ${amount(anomaly.metric, anomaly.expected)} usual; ${anomaly.id})`;
  if (settings.action === 'throttle') {
    await registry.put(
      { kind: 'throttle', subject, reason, scale: settings.throttleScale, anomalyId: anomaly.id },
      settings.cooldownMs,
    );
    alerts.emit({
      type: 'anomaly',
      id: anomaly.id,
      ...scope,
      message: `${description} Its limits are scaled to ${Math.round(settings.throttleScale * 100)}% for ${Math.round(settings.cooldownMs / 1000)}s.`,
      details: { ...anomaly },
    });
  } else if (settings.action === 'suspend') {
    await registry.put({ kind: 'suspend', subject, reason, anomalyId: anomaly.id });
    alerts.emit({ type: 'anomaly', id: anomaly.id, ...scope, message: description, details: { ...anomaly } });
    alerts.emit({
      type: 'suspended',
      id: `suspended:${anomaly.id}`,
      ...scope,
      message: `${subject.startsWith('tenant:') ? `Every key of tenant ${tenantId}` : `Key ${keyId}`} is suspended until an operator lifts it: ${reason}.`,
      details: { ...anomaly },
    });
  } else {
    alerts.emit({ type: 'anomaly', id: anomaly.id, ...scope, message: description, details: { ...anomaly } });
  }
}

/** The usage feed watched for unusual spend, with the actions on what it finds kept until they are done. */
export class SpendWatch {
  readonly #detector: SpendAnomalyDetector;
  /** Actions on anomalies under way: `settle()` waits for them. */
  readonly #acting = new Set<Promise<void>>();
  /** The in-memory store forgets idle subjects on a timer; a shared store expires them itself. */
  readonly #sweep: NodeJS.Timeout | undefined;

  constructor(spend: ResolvedSpendAnomaly, responders: AnomalyResponders, onStoreError: (error: unknown) => void) {
    const { store } = responders;
    this.#detector = new SpendAnomalyDetector({
      store,
      params: { bucketMs: spend.bucketMs, detector: spend.detector },
      watchKeys: spend.watchKeys,
      watchTenants: spend.watchTenants,
      flushIntervalMs: spend.flushIntervalMs,
      onFinding: (found) => {
        const action = actOnAnomaly(responders, found, spend).catch(onStoreError);
        this.#acting.add(action);
        void action.finally(() => this.#acting.delete(action));
      },
      onStoreError,
    });
    if (store instanceof MemoryGuardStore) {
      this.#sweep = setInterval(
        () => store.sweep((4 * spend.bucketMs) / spend.detector.slowAlpha, spend.bucketMs),
        60_000,
      );
      this.#sweep.unref();
    }
  }

  /** One request's usage (the request, when there is one, gives the client address). */
  observe(record: UsageRecord, req: IncomingMessage | undefined): void {
    this.#detector.observe({
      keyId: record.keyId,
      tenantId: record.tenantId,
      costNanoUsd: record.costNanoUsd,
      tokens: record.inputTokens + record.outputTokens,
      ...(req ? { address: clientAddress(req) } : {}),
    });
  }

  /** Sends the usage summed so far to the store. */
  flushUsage(): Promise<void> {
    return this.#detector.flush();
  }

  /** Waits until no action is under way: a flush may start new ones while the first finish. */
  async settle(): Promise<void> {
    while (this.#acting.size > 0) await Promise.all(this.#acting);
  }

  /** Stops the detector (it flushes first), waits for the actions under way and stops the sweep. */
  async close(): Promise<void> {
    await this.#detector.close();
    await this.settle();
    if (this.#sweep) clearInterval(this.#sweep);
  }
}
