// @tollgate/core/options: for every package's factories and the gateway's config: checking options when a middleware
// is built (unknown names with a "did you mean", time zones, calendar periods, amounts in USD and their ceilings),
// and the optional or heavy dependency a configured feature needs, loaded when it does (loadOnDemand, optionalPeerError).
export { assertKnownOptions, closestName, didYouMean } from './errors.js';
export type { CalendarPeriod } from './duration.js';
export { CALENDAR_PERIODS, isCalendarPeriod, timeZoneProblem } from './duration.js';
export { MAX_USD, MAX_USD_PER_MILLION_TOKENS, usdAmountProblem } from './money.js';
export { loadOnDemand, optionalPeerError } from './optional-peer.js';
