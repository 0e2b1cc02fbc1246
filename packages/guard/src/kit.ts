// @tollgate/guard/kit: everything the package has, for tollgate's own packages and for whoever builds on it.
// An app needs only `@tollgate/guard`; what is here beyond it may change between minor versions.
export { createGuard, type Guard } from './create-guard.js';
export { describeAnomaly } from './spend-watch.js';
export {
  resolveGuardOptions,
  type AuthFailuresOptions,
  type GuardConfig,
  type GuardOptions,
  type RepeatedRequestsOptions,
} from './guard-options.js';
export { guardAdminRouter, type GuardAdminRouterOptions } from './admin-router.js';
export { bodyAfterAuth, type BodyAfterAuthOptions } from './body-after-auth.js';
export { createAlerts, type AlertClaims, type Alerts, type AlertsOptions } from './alerts.js';
export { signBody, slackMessage, type WebhookOptions } from './webhook-sender.js';
export {
  breakerOpenAlerts,
  budgetAlerts,
  softLimitAlerts,
  storeDownAlerts,
  type BudgetEventNotice,
  type SoftLimitNotice,
} from './alert-sources.js';
export { clientAddress } from './client-address.js';
export * from './types.js';
export * from './baseline.js';
export type * from './guard-store.js';
export { MemoryGuardStore, type MemoryGuardStoreOptions } from './memory-guard-store.js';
export { RedisGuardStore, type RedisGuardStoreOptions } from './redis-guard-store.js';
export {
  SpendAnomalyDetector,
  type SpendAnomalyDetectorOptions,
  type SubjectFinding,
  type UsageSample,
} from './spend-anomaly.js';
export {
  resolveSpendAnomalyOptions,
  type ResolvedSpendAnomaly,
  type SpendAnomalyOptions,
} from './spend-anomaly-options.js';
export { requestFingerprint, VOLATILE_FIELDS } from './request-fingerprint.js';
export { RepeatCounter, type CountedSend, type RepeatCounterConfig } from './repeat-counter.js';
export { loadShedder, type LoadShedder, type LoadShedderOptions } from './load-shedder.js';
export { promptGuardrails } from './prompt-guardrails.js';
export {
  resolvePromptGuardrails,
  type AnswerTextContext,
  type AnswerTextHook,
  type GuardrailsConfig,
  type GuardrailVerdict,
  type PiiMode,
  type PromptCheck,
  type PromptCheckInput,
  type PromptGuardrailsOptions,
} from './guardrail-options.js';
export { maskPii, noPii, passesLuhn, PII_KINDS, PII_MASKS, type PiiCounts, type PiiKind } from './pii.js';
