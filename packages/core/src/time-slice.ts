// Long work in slices of the event loop: an estimate, a merge of many tallies, a rebuild of many scopes.
import { performance } from 'node:perf_hooks';
import { setImmediate as nextLoopTurn } from 'node:timers/promises';

/** How background work shares a turn of the loop with the requests served in it (`TimeSlice`'s second argument). */
export interface TurnShare {
  /**
   * The longest a turn of the loop should take: a slice ends once the rest of its turn (the time from its last pause
   * to its start: timers, requests read and answered, collections) and the slice itself reach this, so work in the
   * background never makes a busy turn longer. Ignored for a slice with no pause before it.
   */
  turnMs: number;
  /** The least a slice runs, however busy its turn: the work still ends. */
  minSliceMs: number;
}

/**
 * The event-loop share of one long piece of work: it runs for about `sliceMs`, then `pause()` lets the loop turn
 * (setImmediate) before the next slice. A single step inside a slice must be bounded too (an estimate's MAX_BATCH_COST,
 * a page of a scan), so that no stall is much longer than a slice. With a `TurnShare`, a slice takes only what its turn
 * left (never less than `minSliceMs`): work in the background beside requests.
 */
export class TimeSlice {
  private sliceStart = performance.now();
  /** What the current slice may take (ms). */
  private budgetMs: number;
  /** Times the work gave the event loop a turn. */
  pauses = 0;

  constructor(
    private readonly sliceMs: number,
    private readonly share?: TurnShare,
  ) {
    this.budgetMs = sliceMs;
  }

  get used(): boolean {
    return performance.now() - this.sliceStart >= this.budgetMs;
  }

  /** Yields to the event loop if this slice is used up. */
  async pause(): Promise<void> {
    if (!this.used) return;
    const pausedAt = performance.now();
    await nextLoopTurn();
    this.pauses++;
    this.sliceStart = performance.now();
    if (!this.share) return;
    const rest = this.sliceStart - pausedAt;
    this.budgetMs = Math.min(this.sliceMs, Math.max(this.share.minSliceMs, this.share.turnMs - rest));
  }
}

/**
 * The share of background work (the abuse watch's rounds, rebuilds) beside the requests a process serves: a turn of
 * the loop held about 4 ms at most by the work and the requests together, half a millisecond of progress a turn
 * however many requests come (bench/guard-stall.ts measures it).
 */
export const BESIDE_REQUESTS: TurnShare = { turnMs: 4, minSliceMs: 0.5 };

/**
 * The longest stretch of background work between two turns (ms). A scavenge lands in some slice, whoever made its
 * garbage: 5-8 ms while a rebuild keeps what it builds (8 MB semi-spaces, bench/guard-stall.ts `--background`), so a
 * slice leaves it room under the 10 ms a turn may be held: slices of 4 ms held it 10-12.
 */
const BACKGROUND_SLICE_MS = 2;

/**
 * A slice of background work beside the requests a process serves (the abuse watch's rounds and merges, a rebuild, a
 * drift reading, a rebuild's cut): one rule for all of them.
 */
export function besideRequests(): TimeSlice {
  return new TimeSlice(BACKGROUND_SLICE_MS, BESIDE_REQUESTS);
}
