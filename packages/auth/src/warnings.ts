// The default warnings of the auth middleware: one line now and then during an outage, not one per request.

/** The least time between two warnings of one kind. */
const WARNING_INTERVAL_MS = 10_000;

/**
 * A function that emits `message` as a process warning, at most once per interval: while a
 * store or a JWKS is down every request fails, and a line each would flood the logs.
 */
export function throttledWarning(message: (error: unknown) => string): (error: unknown) => void {
  let lastAt = -Infinity;
  return (error) => {
    const now = Date.now();
    if (now - lastAt < WARNING_INTERVAL_MS) return;
    lastAt = now;
    process.emitWarning(message(error));
  };
}
