// @tollgate/guard: spend anomalies, behavioural abuse, loops and auth floods caught, and alerts that reach a person.
export { createGuard } from './create-guard.js';
export type { Guard } from './create-guard.js';
export type { GuardOptions } from './guard-options.js';
export { abuseAdminRouter, guardAdminRouter } from './admin-router.js';
export { bodyAfterAuth } from './body-after-auth.js';
export { createAlerts } from './alerts.js';
export type { Alerts } from './alerts.js';
export type { WebhookOptions } from './webhook-sender.js';
export { breakerOpenAlerts, budgetAlerts, softLimitAlerts, storeDownAlerts } from './alert-sources.js';
export type { BudgetEventNotice } from './alert-sources.js';
export { loadShedder } from './load-shedder.js';
export type { LoadShedder, LoadShedderOptions } from './load-shedder.js';
export { MemoryGuardStore } from './memory-guard-store.js';
export { RedisGuardStore } from './redis-guard-store.js';
export type { GuardStore } from './guard-store.js';
export type { GuardEvent, Mitigation } from './types.js';
export { promptGuardrails } from './prompt-guardrails.js';
export type { PromptGuardrailsOptions } from './guardrail-options.js';
