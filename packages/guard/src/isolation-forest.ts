// An isolation forest (Liu, Ting & Zhou, ICDM 2008): the abuse model, trained on the deployment's own traffic.
//
// Our own small implementation of the published algorithm: t trees, each grown on a subsample of ψ points by
// random axis-parallel splits up to depth ceil(log2 ψ); a point's score is 2^(-E(h(x)) / c(ψ)), where h is its path
// length (plus c(size) at an external node that held more than one point) and c(n) the average path length of an
// unsuccessful search in a binary search tree of n points. A seeded PRNG makes a training reproducible.

/** One tree, flat so that it serialises small: node i splits on `feature[i]` at `split[i]` (left child i + 1,
 *  right child `right[i]`); a leaf has `feature[i] = -1` and `split[i]` = the number of points it held. */
export interface IsolationTree {
  feature: number[];
  split: number[];
  right: number[];
  /**
   * Leaves whose points were all alike (no feature left to split them, short of the height limit): the point they
   * share, by leaf. A point that differs from it would have been split off there (see `pathLength`).
   */
  alike?: Record<number, number[]>;
}

export interface IsolationForest {
  /** ψ: the points each tree was grown on. */
  sampleSize: number;
  /** Features per point. */
  width: number;
  /** Per feature, the least and greatest value it was grown on. */
  ranges?: [number, number][];
  trees: IsolationTree[];
}

interface IsolationForestOptions {
  /** t. @default 100 */
  trees?: number;
  /** ψ (capped by the points given). @default 256 */
  sampleSize?: number;
  /** Seed of the PRNG: the same seed and points grow the same forest. @default 1 */
  seed?: number;
}

const EULER_GAMMA = 0.5772156649;

/** c(n): the average path length of an unsuccessful search in a binary search tree of n points. */
export function averagePathLength(n: number): number {
  if (n <= 1) return 0;
  if (n === 2) return 1;
  return 2 * (Math.log(n - 1) + EULER_GAMMA) - (2 * (n - 1)) / n;
}

/** mulberry32: a small, fast, seedable PRNG with a full 2^32 period; uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** ψ points drawn without replacement (a partial Fisher-Yates shuffle of the indices). */
function subsample(count: number, size: number, random: () => number): number[] {
  const indices = Array.from({ length: count }, (_, i) => i);
  for (let i = 0; i < size; i++) {
    const j = i + Math.floor(random() * (count - i));
    [indices[i], indices[j]] = [indices[j]!, indices[i]!];
  }
  return indices.slice(0, size);
}

function growTree(points: readonly number[][], rows: number[], limit: number, random: () => number): IsolationTree {
  const tree: IsolationTree = { feature: [], split: [], right: [] };
  const width = points[0]!.length;
  const grow = (members: number[], depth: number): void => {
    const node = tree.feature.length;
    tree.feature.push(-1);
    tree.split.push(members.length);
    tree.right.push(-1);
    if (depth >= limit || members.length <= 1) return;
    // Only features that still vary among the members can split them.
    const varying: { feature: number; min: number; max: number }[] = [];
    for (let feature = 0; feature < width; feature++) {
      let min = Infinity;
      let max = -Infinity;
      for (const row of members) {
        const value = points[row]![feature]!;
        if (value < min) min = value;
        if (value > max) max = value;
      }
      if (max > min) varying.push({ feature, min, max });
    }
    if (varying.length === 0) {
      (tree.alike ??= {})[node] = points[members[0]!]!.slice();
      return;
    }
    const { feature, min, max } = varying[Math.floor(random() * varying.length)]!;
    const split = min + random() * (max - min);
    const left = members.filter((row) => points[row]![feature]! < split);
    const right = members.filter((row) => points[row]![feature]! >= split);
    tree.feature[node] = feature;
    tree.split[node] = split;
    grow(left, depth + 1);
    tree.right[node] = tree.feature.length;
    grow(right, depth + 1);
  };
  grow(rows, 0);
  return tree;
}

/** Grows a forest on `points` (each an array of the same width). */
export function trainIsolationForest(
  points: readonly number[][],
  options: IsolationForestOptions = {},
): IsolationForest {
  if (points.length === 0) throw new RangeError('an isolation forest needs at least one point');
  const random = seededRandom(options.seed ?? 1);
  const sampleSize = Math.min(options.sampleSize ?? 256, points.length);
  const limit = Math.ceil(Math.log2(Math.max(2, sampleSize)));
  const trees = Array.from({ length: options.trees ?? 100 }, () =>
    growTree(points, subsample(points.length, sampleSize, random), limit, random),
  );
  return { sampleSize, width: points[0]!.length, ranges: featureRanges(points), trees };
}

/** Per feature, the least and greatest value among `points` (each an array of the same width). */
export function featureRanges(points: readonly (readonly number[])[]): [number, number][] {
  return (points[0] ?? []).map((_, feature): [number, number] => {
    let min = Infinity;
    let max = -Infinity;
    for (const point of points) {
      min = Math.min(min, point[feature]!);
      max = Math.max(max, point[feature]!);
    }
    return [min, max];
  });
}

/**
 * How far `point` lies from the point a leaf's members all share, as a share (0-1) of the widest gap to it among the
 * features, each against its range in the whole training (a feature that did not vary there: 1 if it differs).
 */
function offAlike(
  points: ArrayLike<number>,
  at: number,
  alike: ArrayLike<number>,
  ranges: readonly [number, number][],
): number {
  let off = 0;
  for (let feature = 0; feature < alike.length; feature++) {
    const gap = Math.abs(points[at + feature]! - alike[feature]!);
    if (gap === 0) continue;
    const [min, max] = ranges[feature]!;
    off = Math.max(off, max > min ? Math.min(1, gap / (max - min)) : 1);
  }
  return off;
}

/**
 * A tree as typed arrays, with c(size) of each leaf worked out once: a window of 100,000 subjects walks 300 trees
 * each, and the arrays of a parsed model (and a logarithm at every leaf) made that 2.3 s a round (bench/guard-stall.ts).
 */
interface CompiledTree {
  feature: Int32Array;
  split: Float64Array;
  right: Int32Array;
  /** Per leaf, c(the points it held). */
  rest: Float64Array;
  /** Per leaf, its points' shared point (`IsolationTree.alike`) in `alike`, -1 for none. */
  alikeAt: Int32Array;
  alike: Float64Array[];
}

const compiledForests = new WeakMap<IsolationForest, CompiledTree[]>();

function compiled(forest: IsolationForest): CompiledTree[] {
  let trees = compiledForests.get(forest);
  if (!trees) {
    trees = forest.trees.map((tree) => {
      const alike: Float64Array[] = [];
      const alikeAt = new Int32Array(tree.feature.length).fill(-1);
      for (const [node, point] of Object.entries(tree.alike ?? {})) {
        alikeAt[Number(node)] = alike.length;
        alike.push(Float64Array.from(point));
      }
      return {
        feature: Int32Array.from(tree.feature),
        split: Float64Array.from(tree.split),
        right: Int32Array.from(tree.right),
        rest: Float64Array.from(tree.split, (size, node) => (tree.feature[node]! < 0 ? averagePathLength(size) : 0)),
        alikeAt,
        alike,
      };
    });
    compiledForests.set(forest, trees);
  }
  return trees;
}

/**
 * A point's path length in a tree: its depth, plus c(size) at a leaf that held more than one point. At a leaf whose
 * points were all alike (our extension of the published algorithm), a point that differs from them would have been
 * split off by one more split drawn over the training's range: with a chance of its share of that range (`offAlike`)
 * it ends one level down, otherwise it stays among them. Without it, a tree whose sample held nothing but ordinary
 * points alike in a few features (every ordinary key's share of new addresses is 0) could not tell a key that is
 * not from them.
 */
function pathLength(
  tree: CompiledTree,
  points: Float64Array,
  at: number,
  ranges: readonly [number, number][] | undefined,
): number {
  const { feature, split, right } = tree;
  let node = 0;
  let depth = 0;
  for (let on = feature[0]!; on >= 0; on = feature[node]!) {
    node = points[at + on]! < split[node]! ? node + 1 : right[node]!;
    depth++;
  }
  const rest = tree.rest[node]!;
  const alike = tree.alikeAt[node]!;
  if (!ranges || alike < 0) return depth + rest;
  const off = offAlike(points, at, tree.alike[alike]!, ranges);
  return depth + off + (1 - off) * rest;
}

/** The anomaly score of `point` in [0, 1]: near 1 isolated at once, about 0.5 or less like the rest. */
export function isolationScore(forest: IsolationForest, point: ArrayLike<number>): number {
  return isolationScores(forest, Float64Array.from(point), 1, new Float64Array(1))[0]!;
}

/**
 * `isolationScore` of `count` points of `forest.width` values each, one after another in `points`, into `out`. Tree by
 * tree, each walked by every point while it is in the processor's cache: a window of 100,000 walked point by point
 * through 300 trees spent most of its time waiting on memory.
 */
export function isolationScores(
  forest: IsolationForest,
  points: Float64Array,
  count: number,
  out: Float64Array,
): Float64Array {
  const norm = averagePathLength(forest.sampleSize);
  if (norm === 0) return out.fill(0.5, 0, count);
  out.fill(0, 0, count);
  const { width, ranges } = forest;
  for (const tree of compiled(forest))
    for (let i = 0; i < count; i++) out[i] = out[i]! + pathLength(tree, points, i * width, ranges);
  for (let i = 0; i < count; i++) out[i] = 2 ** -(out[i]! / forest.trees.length / norm);
  return out;
}
