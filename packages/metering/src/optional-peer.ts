// Loads an optional peer dependency (pg, pino, prom-client, PGlite, stripe, OpenTelemetry's SDK) when what needs it is
// built, so installs without them stay lean.
import { loadOnDemand, optionalPeerError } from '@tollgate/core/options';

type MeteringPeer = 'pg' | 'pino' | 'prom-client' | '@electric-sql/pglite' | 'stripe';

const peer = (name: string, feature: string) => ({
  name,
  feature,
  dependent: '@tollgate/metering',
  code: 'ERR_TG_METERING_MISSING_PEER',
});

/** The module `name`, or a TollgateError saying which package to install for `feature`. */
export function loadOptionalPeer<T>(name: MeteringPeer, feature: string): T {
  // CommonJS builds (PGlite and stripe ship one too), so a synchronous load keeps the sink factories synchronous.
  return loadOnDemand<T>(import.meta.url, name, peer(name, feature));
}

/** `load()` (an `import()` of an ESM-first peer, OpenTelemetry's SDK), or the same error when `name` is missing. */
export async function importOptionalPeer<T>(name: string, feature: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    throw optionalPeerError(error, peer(name, feature));
  }
}
