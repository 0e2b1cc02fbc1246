// Answers that come at once where they can and by promise where they must: one way to take either.

/** An answer given at once, or the promise of it. */
export type MaybePromise<T> = T | Promise<T>;

/**
 * `then` with the answer: at once when it is there (no promise made, no turn of the event loop lost), else once the
 * promise fulfils. `failed` answers a rejection (of the promise only: an answer given at once did not fail).
 */
export function whenReady<T, R>(
  value: MaybePromise<T>,
  then: (value: T) => MaybePromise<R>,
  failed?: (error: unknown) => MaybePromise<R>,
): MaybePromise<R> {
  return value instanceof Promise ? value.then(then, failed) : then(value);
}

/** `call()`'s answer as a promise, for a caller that waits anyway (a layer's write behind a block); a throw rejects it. */
export function promised<T>(call: () => MaybePromise<T>): Promise<T> {
  try {
    return Promise.resolve(call());
  } catch (error) {
    return Promise.reject(error);
  }
}
