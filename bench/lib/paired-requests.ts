// Two cases side by side in one process, one request at a time: each request's CPU a sample, what it allocates, and the collections apart.
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { median } from './stats.js';

/** Sends one request of case `kind` (0 or 1) and resolves once it answered. */
type SendOne = (kind: 0 | 1) => Promise<void>;

interface PairedRounds {
  warmupRounds: number;
  blocks: number;
  roundsPerBlock: number;
}

interface PairedRun {
  /** Per block, each case's samples: CPU µs per request. */
  blocks: [number[], number[]][];
  /** Bytes each case's request allocates on the heap: the median growth over the requests no collection ran in. */
  allocatedBytes: [number, number];
  /** Garbage collection over the measured run (every `gc` performance entry), µs per byte allocated. */
  gcPerByte: number;
}

/**
 * One request to each case in turn (A B, then B A: neither always follows the other), each
 * request's CPU (user + system of the process, to a turn of the event loop after its answer, so
 * what runs after the answer belongs to it) a sample, pooled in blocks of rounds. A collection
 * lands on whichever request runs, so it is counted apart: each request's heap growth (read
 * outside its CPU window) is what it allocates, and the run's collection time is shared out per
 * byte allocated.
 */
export async function measurePairedRequests(send: SendOne, rounds: PairedRounds): Promise<PairedRun> {
  const { warmupRounds, blocks, roundsPerBlock } = rounds;
  let recording = false;
  const growth: [number[], number[]] = [[], []];
  const one = async (kind: 0 | 1): Promise<number> => {
    const heapBefore = getHeapStatistics().used_heap_size;
    const started = process.cpuUsage();
    await send(kind);
    await new Promise((resolve) => setImmediate(resolve));
    const used = process.cpuUsage(started);
    // A collection during the request shrinks the heap: such a request says nothing of what it allocated.
    const grown = getHeapStatistics().used_heap_size - heapBefore;
    if (recording && grown > 0) growth[kind].push(grown);
    return used.user + used.system;
  };
  let gcMs = 0;
  const observer = new PerformanceObserver((list) => {
    if (recording) for (const entry of list.getEntries()) gcMs += entry.duration;
  });
  const run: PairedRun = { blocks: [], allocatedBytes: [0, 0], gcPerByte: 0 };
  try {
    for (let round = 0; round < warmupRounds; round++) {
      await one(0);
      await one(1);
    }
    observer.observe({ entryTypes: ['gc'] });
    recording = true;
    for (let block = 0; block < blocks; block++) {
      const samples: [number[], number[]] = [[], []];
      for (let round = 0; round < roundsPerBlock; round++) {
        const first = round % 2 === 0 ? 0 : 1;
        samples[first].push(await one(first));
        samples[(1 - first) as 0 | 1].push(await one((1 - first) as 0 | 1));
      }
      run.blocks.push(samples);
    }
    // The observer reports on a later turn.
    await new Promise((resolve) => setTimeout(resolve, 50));
    recording = false;
  } finally {
    observer.disconnect();
  }
  run.allocatedBytes = [median(growth[0]), median(growth[1])];
  // Collections run as allocation fills the young generation: their cost is shared out by bytes allocated.
  run.gcPerByte = (gcMs * 1000) / ((run.allocatedBytes[0] + run.allocatedBytes[1]) * blocks * roundsPerBlock);
  return run;
}
