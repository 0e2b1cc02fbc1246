// @tollgate/guard/options: for whoever checks a guard's options before building it (the gateway's config checks):
// the guard's and the prompt guardrails' options resolved as their factories resolve them, and the anomaly actions.
export { resolveGuardOptions } from './guard-options.js';
export { resolvePromptGuardrails } from './guardrail-options.js';
export type { AnomalyAction } from './types.js';
