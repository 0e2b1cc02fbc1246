// @tollgate/router: deployments, model groups, retries, circuit breakers, fallback and cost-aware choice.
export { createModelRouter } from './model-router.js';
export type {
  AttemptResult,
  ModelRouter,
  ModelRouterSetup,
  RouteAttempts,
  RouteFailure,
  RoutePlan,
  RouteRequest,
  RouterEvent,
} from './model-router.js';
export { resolveRouterOptions, STRATEGIES } from './options.js';
export type {
  CircuitBreakerOptions,
  ClassRuleOptions,
  ModelGroupOptions,
  ModelRouterOptions,
  RequestClassOptions,
  ResolvedGroup,
  ResolvedTarget,
  RetryOptions,
  RouterConfig,
  Strategy,
  TargetOptions,
} from './options.js';
export { isRetryableStatus, retryAfterMs, retryDelayMs } from './backoff.js';
export { classifyRequest, type RequestTraits } from './request-classes.js';
export type { BreakerState, TargetReport } from './target-health.js';
export {
  canTranslate,
  createStreamTranslator,
  translateError,
  translateRequest,
  translateResponse,
} from './translate/index.js';
export type {
  StreamTranslator,
  StreamTranslatorOptions,
  TranslatedError,
  TranslatedRequest,
} from './translate/index.js';
