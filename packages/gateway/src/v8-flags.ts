// The V8 settings the gateway's server process makes for itself: no allocation-site pretenuring, a memory reducer that
// collects the usual way rather than compacting the whole heap, and an old generation grown by half between full
// collections; and the one it is started with, a young generation of a bounded size.
import { setFlagsFromString } from 'node:v8';

/** V8's flags the server sets (`flag` as `node --<flag>` names it, `set` its setting), from the V8 version that has each. */
const SERVER_FLAGS: readonly { flag: string; set: string; since: [major: number, minor: number] }[] = [
  // Pretenured request-scoped sites promote each request's whole graph: a scavenge cost 2.5 or 6 ms from run to run,
  // the CPU per request 300 µs instead of 250 (docs/performance.md, "What a request's garbage cost").
  { flag: 'allocation-site-pretenuring', set: '--no-allocation-site-pretenuring', since: [0, 0] },
  // The memory reducer compacted every old page in one pause after a burst: 25-50 ms with 100,000 abuse subjects
  // held (docs/performance.md, "One process's own sums in shared rows"). Node 20's and 22's V8 have no such flag.
  { flag: 'memory-reducer-favors-memory', set: '--no-memory-reducer-favors-memory', since: [13, 6] },
  // On a host of 2 GiB or more V8 lets the old generation grow up to 4x what the last full collection kept: RSS rose
  // 2.4 MiB a second to 340 MiB and back, and 25 MB more held grew it by 60-100 (docs/performance.md, "Heap growth").
  { flag: 'heap-growing-percent', set: '--heap-growing-percent=50', since: [0, 0] },
];

/**
 * The Node flags the gateway is started with (deploy/Dockerfile's ENTRYPOINT; `NODE_OPTIONS` takes them as well): what
 * V8 reads at start only, so the server cannot set it for itself. Semi-spaces of 8 MB: by default V8 grows them to 16
 * MB (Node 20, 22) or 64 MB (Node 24 on a large host), and a scavenge copies what survives it, so work that builds what
 * it keeps, sliced or not, stalled the loop in each: a budget rebuild of 100,000 scopes 15-50 ms at V8's default on
 * Node 24, 7-8 ms at 8 MB (docs/performance.md, "A rebuild that grows nothing at once").
 */
export const SERVER_NODE_ARGS: readonly string[] = ['--max-semi-space-size=8'];

/** Whether this process's V8 is at least `major.minor`. */
function v8AtLeast([major, minor]: readonly [number, number], version = process.versions.v8): boolean {
  const [have = 0, haveMinor = 0] = version.split('.').map(Number);
  return have > major || (have === major && haveMinor >= minor);
}

/**
 * Sets `SERVER_FLAGS` for this process, each that its V8 knows and that the command line does not name (either way,
 * or with a value: an operator's choice stands). Returns the flags it set. Called first by `serveGateway`, before the
 * config is parsed: a site's pretenuring decision is taken at the scavenges that follow its first allocations.
 */
export function applyServerV8Flags(execArgv: readonly string[] = process.execArgv): string[] {
  const named = (flag: string) =>
    execArgv.some((arg) =>
      arg
        .replaceAll('_', '-')
        .replace(/^--(no-)?/, '')
        .startsWith(flag),
    );
  const set = SERVER_FLAGS.filter(({ flag, since }) => v8AtLeast(since) && !named(flag)).map(({ set }) => set);
  for (const flag of set) setFlagsFromString(flag);
  return set;
}
