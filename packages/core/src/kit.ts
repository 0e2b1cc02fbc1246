// @tollgate/core/kit: everything core has, for tollgate's own packages and for whoever builds stores or middlewares on it.
// An app needs only `@tollgate/core`; what is here beyond it may change between minor versions.
export * from './types.js';
export * from './money.js';
export * from './duration.js';
export * from './errors.js';
export * from './process-lock.js';
export * from './api-error.js';
export * from './context.js';
export * from './response-tap.js';
export * from './timeout.js';
export * from './stores.js';
export * from './maybe-promise.js';
export * from './store-calls.js';
export * from './store-input.js';
export * from './pricing.js';
export * from './provider-api.js';
export * from './tier-models.js';
export * from './memory-stores.js';
export * from './pre-call-check.js';
export * from './shadow.js';
export * from './leased-stores.js';
export * from './block-stores.js';
export * from './chain.js';
