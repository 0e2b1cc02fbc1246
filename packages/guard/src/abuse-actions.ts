// What a score does: a spell past the threshold before it acts, the actions in force shown on the list, and an action
// put in force everywhere (or, in shadow, only noted) with an alert that tells a person.
import type { Alerts } from './alerts.js';
import type { AbuseSubject } from './abuse-features.js';
import { describeReasons, type AbuseReason } from './abuse-model.js';
import type { ResolvedAbuse } from './abuse-options.js';
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

/**
 * Buckets (a fifth of the window) a subject's score must stay past the throttle threshold before it is acted on: a
 * burst or a template that sets an ordinary key apart for a moment passes, abuse that goes on does not.
 */
const PERSIST_BUCKETS = 1;

/** The mitigation registry's subject for an abuse subject (addresses are `ip:` there, as the auth-failure blocks). */
export function registrySubject(subject: AbuseSubject): Subject {
  return (subject.startsWith('address:') ? `ip:${subject.slice(8)}` : subject) as Subject;
}

/** Whether a mitigation is the abuse model's (its refusals say so). */
export function isAbuseMitigation(mitigation: Mitigation): boolean {
  return mitigation.anomalyId?.startsWith('abuse:') === true;
}

/** The abuse watch's actions on its scored subjects. */
export class AbuseActions {
  readonly #config: ResolvedAbuse;
  readonly #parts: { store: GuardStore; registry: MitigationRegistry; alerts: Alerts };

  constructor(config: ResolvedAbuse, parts: { store: GuardStore; registry: MitigationRegistry; alerts: Alerts }) {
    this.#config = config;
    this.#parts = parts;
  }

  /**
   * One spell past the threshold (a scoring under it within a bucket of the last one past does not end it): marks it
   * on `entry`; whether it has lasted long enough to act.
   */
  spell(entry: AbuseEntry, spell: AbuseEntry | undefined, past: boolean, now: number): boolean {
    const { bucketMs } = this.#config;
    const going = spell?.pastSince !== undefined && now - spell.pastAt! <= bucketMs;
    if (past) {
      entry.pastSince = going ? spell.pastSince! : now;
      entry.pastAt = now;
    } else if (going) {
      entry.pastSince = spell.pastSince!;
      entry.pastAt = spell.pastAt!;
    }
    return past && now - entry.pastSince! >= PERSIST_BUCKETS * bucketMs;
  }

  /** In shadow, an action noted earlier stays listed until it would have ended, as one in force would. */
  stillNoted(entry: AbuseEntry, earlier: AbuseEntry | undefined, now: number): void {
    if (!earlier?.shadow || earlier.action === 'none' || (earlier.until ?? 0) <= now) return;
    entry.action = earlier.action;
    entry.until = earlier.until!;
    entry.shadow = true;
  }

  /** Shows on `entry` the model's block in force on its subject, or its throttle when `throttleToo`; whether any. */
  inForce(entry: AbuseEntry, now: number, throttleToo: boolean): boolean {
    const { registry } = this.#parts;
    const target = registrySubject(entry.subject);
    const existing =
      registry.get('block', target, now) ?? (throttleToo ? registry.get('throttle', target, now) : undefined);
    if (!existing || !isAbuseMitigation(existing)) return false;
    entry.action = existing.kind === 'block' ? 'block' : 'throttle';
    if (existing.until !== undefined) entry.until = existing.until;
    return true;
  }

  /**
   * Puts the action a score calls for in force everywhere (or, in shadow, only notes it), and tells a person.
   * `stuffing`: the subject is one of that many addresses of a coordinated credential-stuffing attack (a block).
   */
  async act(entry: AbuseEntry, now: number, stuffing?: number): Promise<void> {
    const { store, registry, alerts } = this.#parts;
    const config = this.#config;
    const action = stuffing !== undefined || entry.score >= config.blockAt ? 'block' : 'throttle';
    const target = registrySubject(entry.subject);
    if (this.inForce(entry, now, action === 'throttle')) return;
    if (await store.abuseState(`cleared:${entry.subject}`)) return;
    const durationMs = action === 'block' ? config.blockMs : config.throttleMs;
    const why = describeReasons(entry.reasons);
    const reason =
      stuffing !== undefined
        ? `it is one of ${stuffing} addresses that each failed every request with different credentials, ` +
          `credential stuffing spread thin (${why})`
        : `its traffic scored ${entry.score.toFixed(2)} as abuse (${why})`;
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
}
