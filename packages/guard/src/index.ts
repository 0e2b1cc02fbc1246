// @tollgate/guard: spend-anomaly detection, loop and auth-flood protection, and alerts that reach a person.
export { createGuard } from './create-guard.js';
export type { Guard } from './create-guard.js';
export type { GuardOptions, AuthFailuresOptions, RepeatedRequestsOptions } from './guard-options.js';
export type { SpendAnomalyOptions } from './spend-anomaly-options.js';
export { guardAdminRouter } from './admin-router.js';
export type { GuardAdminRouterOptions } from './admin-router.js';
export { bodyAfterAuth } from './body-after-auth.js';
export type { BodyAfterAuthOptions } from './body-after-auth.js';
export { createAlerts } from './alerts.js';
export type { Alerts, AlertsOptions } from './alerts.js';
export { slackMessage, signBody } from './webhook-sender.js';
export type { WebhookOptions } from './webhook-sender.js';
export { breakerOpenAlerts, budgetAlerts, softLimitAlerts, storeDownAlerts } from './alert-sources.js';
export type { BudgetEventNotice, SoftLimitNotice } from './alert-sources.js';
export { loadShedder } from './load-shedder.js';
export type { LoadShedder, LoadShedderOptions } from './load-shedder.js';
export { MemoryGuardStore } from './memory-guard-store.js';
export type { MemoryGuardStoreOptions } from './memory-guard-store.js';
export { RedisGuardStore } from './redis-guard-store.js';
export type { RedisGuardStoreOptions } from './redis-guard-store.js';
export type { GuardStore, MitigationSnapshot } from './guard-store.js';
export { GUARD_EVENT_TYPES } from './types.js';
export type { GuardEvent, GuardEventType, AnomalyRecord, Mitigation, Subject } from './types.js';
export { promptGuardrails } from './prompt-guardrails.js';
export { resolvePromptGuardrails } from './guardrail-options.js';
export type {
  PromptGuardrailsOptions,
  PromptCheck,
  PromptCheckInput,
  AnswerTextHook,
  AnswerTextContext,
  GuardrailVerdict,
  PiiMode,
} from './guardrail-options.js';
export { maskPii, PII_KINDS } from './pii.js';
export type { PiiKind, PiiCounts } from './pii.js';
