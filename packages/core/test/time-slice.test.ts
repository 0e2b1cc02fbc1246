// TimeSlice: long work yields a turn of the loop after its slice; with a TurnShare, a slice takes only what its turn
// left. On a clock of the test's own (performance.now), so the figures are exact on a busy machine.
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { performance } from 'node:perf_hooks';
import { BESIDE_REQUESTS, besideRequests, TimeSlice } from '@tollgate/core/store-contracts';

let clock = 0;
/** Work that holds the loop `ms` (on the test's clock). */
const busy = (ms: number) => void (clock += ms);

beforeEach(() => {
  clock = 1_000;
  jest.spyOn(performance, 'now').mockImplementation(() => clock);
});
afterEach(() => {
  jest.restoreAllMocks();
});

/**
 * Steps of 0.25 ms under a slice made now until it has paused `turns` times, `onTurn` run in each turn the work gives
 * the loop (before the work resumes: immediates run in the order set); the time each slice ran (ms).
 */
async function slices(share: TimeSlice | ConstructorParameters<typeof TimeSlice>[1], turns: number, onTurn = () => {}) {
  const slice = share instanceof TimeSlice ? share : new TimeSlice(3, share);
  const ran: number[] = [];
  let start = clock;
  while (slice.pauses < turns) {
    busy(0.25);
    if (!slice.used) continue;
    ran.push(clock - start);
    setImmediate(onTurn);
    await slice.pause();
    start = clock;
  }
  return ran;
}

describe('TimeSlice', () => {
  it('runs each slice its length, then gives the loop a turn, however long the turns between', async () => {
    expect(await slices(undefined, 4, () => busy(6))).toEqual([3, 3, 3, 3]);
  });

  it('beside requests, takes what its turn left: the least after a busy turn, its length after an idle one', async () => {
    // Each turn's requests held the loop 6 ms, past the 4 a turn may take: after the first slice (no turn before it),
    // each runs its least, half a millisecond.
    expect(await slices(BESIDE_REQUESTS, 5, () => busy(6))).toEqual([3, 0.5, 0.5, 0.5, 0.5]);
    // Requests of 2 ms a turn leave the slice the other 2.
    expect(await slices(BESIDE_REQUESTS, 4, () => busy(2))).toEqual([3, 2, 2, 2]);
    // An idle loop: each slice its whole length.
    expect(await slices(BESIDE_REQUESTS, 4)).toEqual([3, 3, 3, 3]);
  });

  it('gives all background work beside requests slices of at most 2 ms, less after a busy turn', async () => {
    // A scavenge of 5-8 ms may land in any slice: 2 ms leaves it room under a 10 ms turn.
    expect(await slices(besideRequests(), 4)).toEqual([2, 2, 2, 2]);
    expect(await slices(besideRequests(), 4, () => busy(3))).toEqual([2, 1, 1, 1]);
    expect(await slices(besideRequests(), 3, () => busy(6))).toEqual([2, 0.5, 0.5]);
  });

  it('does not pause a slice that is not used up', async () => {
    const slice = new TimeSlice(3, BESIDE_REQUESTS);
    busy(2.9);
    await slice.pause();
    expect(slice.pauses).toBe(0);
    busy(0.1);
    await slice.pause();
    expect(slice.pauses).toBe(1);
  });
});
