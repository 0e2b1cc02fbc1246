// @tollgate/providers/count-budget: for the meter, which counts a request's tokens without holding the event loop:
// the budget that times a count, and how long an estimate may run at once, in slices, or before it goes async.
export { CountBudget } from './tokenizer.js';
export { ASYNC_ESTIMATE_MS, ESTIMATE_SLICE_MS, SYNC_ESTIMATE_MS } from './counter.js';
