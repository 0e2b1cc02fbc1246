// A deadline on every store call: a slow Redis must never hang a request.

export class StoreTimeoutError extends Error {
  override readonly name = 'StoreTimeoutError';
  constructor(readonly operation: string, readonly timeoutMs: number) {
    super(`store operation ${operation} took longer than ${timeoutMs} ms`);
  }
}

/** Resolves like `promise`, or rejects with StoreTimeoutError after `timeoutMs`. */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, operation: string): Promise<T> {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) return promise;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreTimeoutError(operation, timeoutMs)), timeoutMs);
    timer.unref?.();
  });
  // The losing promise may still reject later: keep that from becoming an unhandled rejection.
  promise.catch(() => undefined);
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
