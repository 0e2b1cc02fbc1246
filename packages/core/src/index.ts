// @tollgate/core: what an app uses — the request context, errors, pricing, memory stores and their layers.
// What the other packages share beyond it sits at subpaths named for their purpose (`/store-contracts`, `/checks`,
// `/options`, `/costs`, `/provider-call`, `/process-lock`, `/webhook`, `/audit`, `/csv`).
export { ApiError, apiErrorHandler, renderApiError, refusalRenderer } from './api-error.js';
export type { ErrorRenderer, ApiErrorCode } from './api-error.js';
export { TollgateError } from './errors.js';
export { UnknownModelError, createPricing, DEFAULT_PRICES, DEFAULT_PRICES_AS_OF } from './pricing.js';
export type { ModelPrice, Pricing } from './pricing.js';
export { StoreTimeoutError } from './timeout.js';
export { LeaseExhaustedError, leasedStores } from './leased-stores.js';
export { requestContext, getContext, contextOf, onSettleError } from './context.js';
export type { TollgateContext, ContextVariableMap, ReportedUsage } from './context.js';
export { endResponseNow, tapResponse } from './response-tap.js';
export { chain } from './chain.js';
export { startModuleWorker } from './module-worker.js';
export { createMemoryStores } from './memory-stores.js';
export { blockStores } from './block-stores.js';
export { parseDuration, periodWindow } from './duration.js';
export { formatUsd, usdToNano, nanoToUsd } from './money.js';
export type { ProviderApi } from './provider-api.js';
export type { Identity, KeyBudget, UsageRecord, TokenUsage, UsageEstimate, Provider } from './types.js';
export type { TollgateStores } from './stores.js';
