// @tollgate/core: the types, errors, context, pricing, durations and stores every package shares.
export * from './types.js';
export * from './money.js';
export * from './duration.js';
export * from './errors.js';
export * from './api-error.js';
export * from './context.js';
export * from './timeout.js';
export * from './stores.js';
export * from './store-input.js';
export * from './pricing.js';
export * from './provider-api.js';
export * from './tier-models.js';
export * from './memory-stores.js';
export * from './pre-call-check.js';
export * from './leased-stores.js';
export * from './block-stores.js';
export * from './chain.js';
