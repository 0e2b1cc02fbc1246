// jest's clock for part of the time APIs only: for tests whose subject is time but whose app runs over real HTTP.
import { jest } from '@jest/globals';

type FakeableApis = NonNullable<
  Extract<Parameters<typeof jest.useFakeTimers>[0], { doNotFake?: unknown }>['doNotFake']
>;

/** What jest's clock can take over in Node. */
const FAKEABLE: FakeableApis = [
  'Date',
  'hrtime',
  'nextTick',
  'performance',
  'queueMicrotask',
  'setImmediate',
  'clearImmediate',
  'setInterval',
  'clearInterval',
  'setTimeout',
  'clearTimeout',
];

/**
 * Puts `apis` alone on jest's clock, stopped at `now` until the test moves it (`jest.advanceTimersByTime`,
 * `jest.setSystemTime`); every other timer and all I/O stay real. Call it before making what reads the time, and
 * undo it with `jest.useRealTimers()`.
 */
export function fakeOnly(apis: FakeableApis, now = Date.now()): void {
  jest.useFakeTimers({ now, doNotFake: FAKEABLE.filter((api) => !apis.includes(api)) });
}

/** Waits on real turns of the event loop (real I/O goes on while jest's clock holds the timers) until `done()`. */
export async function turnsUntil(done: () => boolean, what: string): Promise<void> {
  const until = performance.now() + 5_000;
  while (!done()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}
