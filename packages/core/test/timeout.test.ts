// withTimeout: store calls under one timeout length share a deadline queue; each still gets its own deadline.
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { StoreTimeoutError } from '@tollgate/core';
import { withTimeout } from '@tollgate/core/store-contracts';

/** A promise and the hands that settle it. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** What a promise has settled with so far (undefined while it is pending). */
function outcomeOf(promise: Promise<unknown>): { value?: unknown } {
  const outcome: { value?: unknown } = {};
  void promise.then((value) => (outcome.value = value));
  return outcome;
}

// The deadlines are timers and performance.now(): both on jest's clock, moved by the tests.
beforeEach(() => {
  jest.useFakeTimers();
});
afterEach(async () => {
  // Each length's queue is module state: its timer must not be left armed on a clock that goes away.
  await jest.runAllTimersAsync();
  jest.useRealTimers();
});

describe('withTimeout', () => {
  it('passes the value or the error of a call that answers in time', async () => {
    await expect(withTimeout(Promise.resolve(7), 50, 'op')).resolves.toBe(7);
    const failure = new Error('store down');
    await expect(withTimeout(Promise.reject(failure), 50, 'op')).rejects.toBe(failure);
  });

  it('rejects with StoreTimeoutError naming the operation once the deadline passed', async () => {
    const never = deferred<number>();
    const outcome = outcomeOf(withTimeout(never.promise, 40, 'ledger.reserve').catch((e: unknown) => e));
    await jest.advanceTimersByTimeAsync(39);
    expect(outcome.value).toBeUndefined();
    await jest.advanceTimersByTimeAsync(1);
    expect(outcome.value).toBeInstanceOf(StoreTimeoutError);
    expect(outcome.value).toMatchObject({ operation: 'ledger.reserve', timeoutMs: 40 });
    // Settling after the timeout is harmless: no unhandled rejection, nothing thrown.
    never.reject(new Error('late'));
  });

  it('gives every call of one length its own deadline: a later call is not cut short by an earlier one', async () => {
    const first = deferred<string>();
    const second = deferred<string>();
    const third = deferred<string>();
    const a = withTimeout(first.promise, 60, 'a').catch((e: unknown) => e);
    await jest.advanceTimersByTimeAsync(30);
    const b = withTimeout(second.promise, 60, 'b').catch((e: unknown) => e);
    const c = outcomeOf(withTimeout(third.promise, 60, 'c').catch((e: unknown) => e));
    // The oldest answers in time; the queue must then wait for b's own deadline, 30 ms later.
    first.resolve('a done');
    expect(await a).toBe('a done');
    await jest.advanceTimersByTimeAsync(45);
    // b was started 45 ms ago: its 60 ms are not over, so it can still answer.
    second.resolve('b done');
    expect(await b).toBe('b done');
    // c, started with b, has 15 ms left.
    await jest.advanceTimersByTimeAsync(14);
    expect(c.value).toBeUndefined();
    await jest.advanceTimersByTimeAsync(1);
    expect(c.value).toBeInstanceOf(StoreTimeoutError);
    expect(c.value).toMatchObject({ operation: 'c' });
  });

  it('keeps lengths apart: a short deadline fires while a long one still waits', async () => {
    const slow = deferred<string>();
    const long = withTimeout(slow.promise, 500, 'long');
    const short = outcomeOf(withTimeout(deferred<string>().promise, 20, 'short').catch((e: unknown) => e));
    await jest.advanceTimersByTimeAsync(20);
    expect(short.value).toBeInstanceOf(StoreTimeoutError);
    slow.resolve('long done');
    await expect(long).resolves.toBe('long done');
  });

  it('leaves a call without a usable timeout alone', async () => {
    const pending = deferred<number>();
    expect(withTimeout(pending.promise, 0, 'op')).toBe(pending.promise);
    expect(withTimeout(pending.promise, Number.POSITIVE_INFINITY, 'op')).toBe(pending.promise);
    pending.resolve(1);
  });
});
