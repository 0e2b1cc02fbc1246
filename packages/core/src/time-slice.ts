// Long work in slices of the event loop: an estimate, a merge of many tallies, a rebuild of many scopes.
import { performance } from 'node:perf_hooks';
import { setImmediate as nextLoopTurn } from 'node:timers/promises';

/**
 * The event-loop share of one long piece of work: it runs for about `sliceMs`, then `pause()` lets the loop turn
 * (setImmediate) before the next slice. A single step inside a slice must be bounded too (an estimate's MAX_BATCH_COST,
 * a page of a scan), so that no stall is much longer than a slice.
 */
export class TimeSlice {
  private sliceStart = performance.now();
  /** Times the work gave the event loop a turn. */
  pauses = 0;

  constructor(private readonly sliceMs: number) {}

  get used(): boolean {
    return performance.now() - this.sliceStart >= this.sliceMs;
  }

  /** Yields to the event loop if this slice is used up. */
  async pause(): Promise<void> {
    if (!this.used) return;
    await nextLoopTurn();
    this.pauses++;
    this.sliceStart = performance.now();
  }
}
