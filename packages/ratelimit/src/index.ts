// @tollgate/ratelimit: tiered request limits, token limits, concurrency limits, tier policy and their headers.
export { tieredRateLimit, type TieredRateLimitOptions } from './tiered-rate-limit.js';
export { tokenRateLimit, type TokenRateLimitOptions } from './token-rate-limit.js';
export { concurrencyLimit, type ConcurrencyLimitOptions } from './concurrency-limit.js';
export { combineLimits } from './combine-limits.js';
export { tierPolicy, type TierPolicyOptions } from './tier-policy.js';
export type { LimitLayerOptions } from './limit-layers.js';
export type { StoresWithCommands } from './types.js';
export { describeWindow } from './rate-limit-headers.js';
export type { LimitReading } from './limit-check.js';
export { readLimits } from './limit-readings.js';
// Core's shadow mode, at the door of the pieces it shadows: `app.use(shadowMode(rule))` before the limiters.
export { shadowMode, type ShadowRule } from '@tollgate/core/checks';
