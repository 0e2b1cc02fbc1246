// @tollgate/metering/stripe: Stripe billing meter events from usage records, apart so that only its users need `stripe` (an optional peer).
export { stripeMeterSink } from './stripe-sink.js';
export type { StripeMeterSink, StripeMeterSinkOptions } from './stripe-sink.js';
