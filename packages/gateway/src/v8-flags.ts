// The one V8 setting the gateway's server process makes for itself: no allocation-site pretenuring.
import { setFlagsFromString } from 'node:v8';

/** V8's flag, as `node --allocation-site-pretenuring` / `--no-allocation-site-pretenuring` names it. */
const PRETENURING = 'allocation-site-pretenuring';

/**
 * Turns V8's allocation-site pretenuring off for this process, unless the command line names the flag either way (an
 * operator's choice stands). Returns whether it did.
 *
 * Why: V8 allocates objects straight in the old generation from an allocation site whose objects it found alive at a
 * scavenge. A server's request-scoped sites look like that while requests are in flight, and once a few are pretenured,
 * each dead old object keeps the young objects it points to alive until the next full collection, so a request's
 * whole graph is promoted. In the compiled proxy under the realistic deployment that decided, from run to run, whether
 * a scavenge cost 2.5 or 6 ms, and put the CPU per request at 300 µs instead of 250 (docs/performance.md, "What a
 * request's garbage cost"). Called first by `serveGateway`, before the config is parsed: a site's decision is taken
 * at the scavenges that follow its first allocations.
 */
export function turnOffPretenuring(execArgv: readonly string[] = process.execArgv): boolean {
  const named = execArgv.some((arg) =>
    arg
      .replaceAll('_', '-')
      .replace(/^--(no-)?/, '')
      .startsWith(PRETENURING),
  );
  if (named) return false;
  setFlagsFromString(`--no-${PRETENURING}`);
  return true;
}
