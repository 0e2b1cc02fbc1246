// The V8 settings the gateway's server process makes for itself: no allocation-site pretenuring, and a memory reducer
// that collects the usual way rather than compacting the whole heap.
import { setFlagsFromString } from 'node:v8';

/**
 * V8's flags the server turns off, as `node --<flag>` / `--no-<flag>` name them.
 *
 * `allocation-site-pretenuring`: V8 allocates objects straight in the old generation from an allocation site whose
 * objects it found alive at a scavenge. A server's request-scoped sites look like that while requests are in flight,
 * and once a few are pretenured, each dead old object keeps the young objects it points to alive until the next full
 * collection, so a request's whole graph is promoted. In the compiled proxy under the realistic deployment that
 * decided, from run to run, whether a scavenge cost 2.5 or 6 ms, and put the CPU per request at 300 µs instead of 250
 * (docs/performance.md, "What a request's garbage cost").
 *
 * `memory-reducer-favors-memory`: some seconds after a burst of allocation V8's memory reducer collects again; with
 * this flag it compacts every page of the old generation in that pause. With the abuse watch's 100,000 subjects held
 * that one pause took 25-50 ms under load; off, the reducer's collections compact by the usual heuristics (5-9 ms) and
 * the pages come back over the following collections instead (docs/performance.md, "One process's own sums").
 */
const SERVER_FLAGS_OFF: readonly { flag: string; since: [major: number, minor: number] }[] = [
  { flag: 'allocation-site-pretenuring', since: [0, 0] },
  // Node 24's V8 (13.6) has it; Node 22's (12.4) and 20's do not, and their reducer always compacts.
  { flag: 'memory-reducer-favors-memory', since: [13, 6] },
];

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
