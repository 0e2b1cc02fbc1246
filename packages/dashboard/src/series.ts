// Ledger points turned into chart series: every bucket present (zeros where nothing was spent), the biggest groups named.
import { nanoToUsd } from '@tollgate/core';
import type { UsagePoint } from '@tollgate/metering';
import type { ChartData } from './layout.js';

interface SeriesRange {
  /** Epoch seconds of the first bucket's start (a multiple of `bucketSeconds`). */
  since: number;
  /** Epoch seconds; the last bucket is the one holding it. */
  until: number;
  bucketSeconds: number;
  /** Groups drawn on their own; the rest are summed as "other". */
  maxSeries: number;
}

const OTHER = 'other';
const UNSET = '(none)';

export function seriesFromPoints(points: readonly UsagePoint[], range: SeriesRange): ChartData {
  const first = Math.floor(range.since / range.bucketSeconds) * range.bucketSeconds;
  const x: number[] = [];
  for (let bucket = first; bucket <= range.until; bucket += range.bucketSeconds) x.push(bucket);
  const end = (x[x.length - 1] ?? first) + range.bucketSeconds;
  if (points.length === 0) return { x, end, series: [], unit: 'USD' };
  const totals = new Map<string, number>();
  // Points marked `rest` already sum the groups the ledger did not name (usageOverTime's topGroups): "other".
  const rest = points.some((point) => point.rest);
  for (const point of points)
    if (!point.rest) totals.set(point.group ?? UNSET, (totals.get(point.group ?? UNSET) ?? 0) + point.costNanoUsd);
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([group]) => group);
  const named = ranked.length <= range.maxSeries && !rest ? ranked : ranked.slice(0, range.maxSeries - 1);
  const labels = ranked.length > named.length || rest ? [...named, OTHER] : named;
  const index = new Map(x.map((bucket, i) => [bucket, i]));
  // Summed in nano-USD (integers) and turned into dollars once, so a bucket's value is exact to the nano.
  const nano = labels.map(() => new Array<number>(x.length).fill(0));
  for (const point of points) {
    const column = index.get(Math.floor(point.bucket / 1000));
    if (column === undefined) continue;
    const group = point.group ?? UNSET;
    const row = !point.rest && named.includes(group) ? named.indexOf(group) : labels.length - 1;
    nano[row]![column]! += point.costNanoUsd;
  }
  return { x, end, series: labels.map((label, i) => ({ label, values: nano[i]!.map(nanoToUsd) })), unit: 'USD' };
}
