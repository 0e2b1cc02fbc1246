// @tollgate/metering/log: the pino log sink, apart so that only its users need `pino` (an optional peer).
export { logSink } from './log-sink.js';
export type { LogSinkOptions } from './log-sink.js';
