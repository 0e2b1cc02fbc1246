// @tollgate/core/provider-call: for the adapters (@tollgate/providers) and the middlewares around one provider call:
// the call a route declares, what the meter and the budget note on the request, and the readers of its response.
export type { CallAdapter, CallRequest, CallShape, UpstreamOutcome } from './provider-api.js';
export type { MeterCharge, ReservationNote } from './context.js';
export { budgetRemainingAfter, ProviderCall, sequentialIds } from './context.js';
export type { EndThrough, ResponseFilter, ResponseReader, WriteThrough } from './response-tap.js';
export type { MeteredToolCall, PricedToolCall, ToolCallOutcome } from './tool-call.js';
