// @tollgate/metering/log: the pino log sink, and the proxy's access and error log, apart so that only their users need `pino` (an optional peer).
export { logSink } from './log-sink.js';
export type { LogSinkOptions } from './log-sink.js';
export { createGatewayLog, accessLog } from './observe/access-log.js';
export type { GatewayLog } from './observe/access-log.js';
