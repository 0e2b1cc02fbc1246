// The V8 settings the gateway's server process makes for itself: no allocation-site pretenuring, and a memory reducer
// that collects the usual way rather than compacting the whole heap; and the one it is started with, a young generation
// of a bounded size.
import { setFlagsFromString } from 'node:v8';

/** V8's flags the server turns off (as `node --no-<flag>` names them), from the V8 version that has each. */
const SERVER_FLAGS_OFF: readonly { flag: string; since: [major: number, minor: number] }[] = [
  // Pretenured request-scoped sites promote each request's whole graph: a scavenge cost 2.5 or 6 ms from run to run,
  // the CPU per request 300 µs instead of 250 (docs/performance.md, "What a request's garbage cost").
  { flag: 'allocation-site-pretenuring', since: [0, 0] },
  // The memory reducer compacted every old page in one pause after a burst: 25-50 ms with 100,000 abuse subjects
  // held (docs/performance.md, "One process's own sums in shared rows"). Node 20's and 22's V8 have no such flag.
  { flag: 'memory-reducer-favors-memory', since: [13, 6] },
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
 * Turns `SERVER_FLAGS_OFF` off for this process, each that its V8 knows and that the command line does not name
 * either way (an operator's choice stands). Returns the flags it set. Called first by `serveGateway`, before the
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
  const set = SERVER_FLAGS_OFF.filter(({ flag, since }) => v8AtLeast(since) && !named(flag)).map(
    ({ flag }) => `--no-${flag}`,
  );
  for (const flag of set) setFlagsFromString(flag);
  return set;
}
