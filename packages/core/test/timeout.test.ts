// withTimeout: store calls under one timeout length share a deadline queue; each still gets its own deadline.
import { describe, expect, it } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import { StoreTimeoutError, withTimeout } from '@tollgate/core';

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

describe('withTimeout', () => {
  it('passes the value or the error of a call that answers in time', async () => {
    await expect(withTimeout(Promise.resolve(7), 50, 'op')).resolves.toBe(7);
    const failure = new Error('store down');
    await expect(withTimeout(Promise.reject(failure), 50, 'op')).rejects.toBe(failure);
  });

  it('rejects with StoreTimeoutError naming the operation once the deadline passed', async () => {
    const never = deferred<number>();
    const started = performance.now();
    const error = await withTimeout(never.promise, 40, 'ledger.reserve').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreTimeoutError);
    expect(error).toMatchObject({ operation: 'ledger.reserve', timeoutMs: 40 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(39);
    // Settling after the timeout is harmless: no unhandled rejection, nothing thrown.
    never.reject(new Error('late'));
  });

  it('gives every call of one length its own deadline: a later call is not cut short by an earlier one', async () => {
    const first = deferred<string>();
    const second = deferred<string>();
    const third = deferred<string>();
    const a = withTimeout(first.promise, 60, 'a').catch((e: unknown) => e);
    await sleep(30);
    const b = withTimeout(second.promise, 60, 'b').catch((e: unknown) => e);
    const c = withTimeout(third.promise, 60, 'c').catch((e: unknown) => e);
    // The oldest answers in time; the queue must then wait for b's own deadline, ~30 ms later.
    first.resolve('a done');
    expect(await a).toBe('a done');
    await sleep(45);
    // b was started 45 ms ago: its 60 ms are not over, so it can still answer.
    second.resolve('b done');
    expect(await b).toBe('b done');
    const timedOut = await c;
    expect(timedOut).toBeInstanceOf(StoreTimeoutError);
    expect(timedOut).toMatchObject({ operation: 'c' });
  });

  it('keeps lengths apart: a short deadline fires while a long one still waits', async () => {
    const slow = deferred<string>();
    const long = withTimeout(slow.promise, 500, 'long');
    const short = withTimeout(deferred<string>().promise, 20, 'short').catch((e: unknown) => e);
    expect(await short).toBeInstanceOf(StoreTimeoutError);
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
