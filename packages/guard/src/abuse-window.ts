// The abuse watch's window kept from round to round: each bucket's table merged whole when the buckets change, and
// otherwise only the subjects written since the last merge summed again.
import type { TimeSlice } from '@tollgate/core/store-contracts';
import { AbuseTallyTable, type AbuseSubject } from './abuse-features.js';

/** Nodes of marks a kept window's table may leave unreached (rows summed again) before it is merged whole. */
const ORPHANED_NODES_KEPT = 65_536;

/** A bucket's table as the window last merged it: at which epoch, and after how many of its writes. */
interface MergedBucket {
  table: AbuseTallyTable;
  epoch: number;
  writes: number;
}

/**
 * Subjects' sums over the buckets of a window (`table`), kept across rounds. A round in which the same buckets come
 * (the same tables, none renewed or pushed a subject out since) sums again only the subjects written since: at
 * 100,000 subjects, merging every row every second was 70-140 ms of the loop a round in slices, and its scavenges
 * (bench/guard-stall.ts). `changed` says which rows a merge wrote: undefined when it merged the buckets whole.
 */
export class AbuseWindow {
  readonly table = new AbuseTallyTable();
  /** The rows of `table` the last merge summed again; undefined: it merged every bucket whole. */
  changed: number[] | undefined;
  #merged: MergedBucket[] = [];

  /** Merges `buckets` (the tables of the window's buckets, in order): whole, or only what was written since. */
  async merge(buckets: readonly AbuseTallyTable[], slice: TimeSlice): Promise<void> {
    if (this.#sameBuckets(buckets)) await this.#mergeWritten(buckets, slice);
    else await this.#mergeWhole(buckets, slice);
    this.#merged = buckets.map((table) => ({ table, epoch: table.epoch, writes: table.writes }));
  }

  #sameBuckets(buckets: readonly AbuseTallyTable[]): boolean {
    const merged = this.#merged;
    if (merged.length !== buckets.length) return false;
    if (this.table.orphanedNodes > Math.max(ORPHANED_NODES_KEPT, this.table.usedNodes / 2)) return false;
    return buckets.every((table, i) => merged[i]!.table === table && merged[i]!.epoch === table.epoch);
  }

  async #mergeWhole(buckets: readonly AbuseTallyTable[], slice: TimeSlice): Promise<void> {
    const { table } = this;
    table.renew();
    let merging = 0;
    for (const bucket of buckets)
      for (let row = 0; row < bucket.size; row++) {
        if (!bucket.live(row)) continue;
        table.addRow(bucket, row);
        if ((++merging & 63) === 0) await slice.pause();
      }
    this.changed = undefined;
  }

  /** Sums again, from every bucket, each subject a bucket wrote since the last merge. */
  async #mergeWritten(buckets: readonly AbuseTallyTable[], slice: TimeSlice): Promise<void> {
    const written = new Set<AbuseSubject>();
    for (let i = 0; i < buckets.length; i++) {
      const bucket = buckets[i]!;
      const since = this.#merged[i]!.writes;
      if (bucket.writes === since) continue;
      for (let row = 0; row < bucket.size; row++) {
        if (bucket.writtenSince(row, since) && bucket.live(row)) written.add(bucket.subjects[row]!);
        if ((row & 4095) === 4095) await slice.pause();
      }
    }
    const { table } = this;
    const changed: number[] = [];
    for (const subject of written) {
      const row = table.rowOf(subject);
      table.clearRow(row);
      for (const bucket of buckets) {
        const from = bucket.find(subject);
        if (from !== undefined) table.addRow(bucket, from);
      }
      changed.push(row);
      if ((changed.length & 63) === 0) await slice.pause();
    }
    this.changed = changed;
  }
}
