// @tollgate/router: deployments, model groups, retries, circuit breakers, fallback and cost-aware choice.
export { createModelRouter } from './model-router.js';
export type {
  AttemptResult,
  ModelRouter,
  RouteAttempts,
  RouteFailure,
  RoutePlan,
  RouterEvent,
} from './model-router.js';
export { resolveRouterOptions } from './options.js';
export type {
  CircuitBreakerOptions,
  ModelGroupOptions,
  RequestClassOptions,
  ResolvedTarget,
  RetryOptions,
} from './options.js';
export { isRetryableStatus, retryAfterMs, retryDelayMs } from './backoff.js';
export type { TargetReport } from './target-health.js';
export {
  canTranslate,
  createStreamTranslator,
  translateError,
  translateRequest,
  translateResponse,
} from './translate/index.js';
export type { StreamTranslator } from './translate/index.js';
