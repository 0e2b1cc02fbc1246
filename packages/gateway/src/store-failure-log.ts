// Store failures in the proxy's log: each counted, logged at most once per 10 s per layer (a store that keeps failing would drown the log).
import type { Logger } from 'pino';

/** A store that keeps failing is logged once per this long per layer, with the count of failures in between. */
const STORE_FAILURE_LOG_INTERVAL_MS = 10_000;

/**
 * An `onStoreError` for the middlewares of `layer`: each failure counted (`count`), logged at
 * error level at most once per 10 s with how many came in between.
 */
export function storeFailureReporter(
  logger: Logger,
  layer: string,
  count: (layer: string) => void,
): (error: unknown) => void {
  let lastLoggedAt = -Infinity;
  let suppressed = 0;
  return function reportStoreFailure(error) {
    count(layer);
    const now = Date.now();
    if (now - lastLoggedAt < STORE_FAILURE_LOG_INTERVAL_MS) {
      suppressed++;
      return;
    }
    lastLoggedAt = now;
    logger.error({ layer, suppressed, err: error }, 'store failure');
    suppressed = 0;
  };
}
