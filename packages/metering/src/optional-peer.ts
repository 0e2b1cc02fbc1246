// Loads an optional peer dependency (pg, pino, prom-client, PGlite, stripe) when what needs it is built, so installs without them stay lean.
import { createRequire } from 'node:module';
import { TollgateError } from '@tollgate/core';

// CommonJS builds (PGlite and stripe ship one too), so a synchronous require keeps the sink factories synchronous.
const requireFromHere = createRequire(import.meta.url);

/** The module `name`, or a TollgateError saying which package to install for `feature`. */
export function loadOptionalPeer<T>(
  name: 'pg' | 'pino' | 'prom-client' | '@electric-sql/pglite' | 'stripe',
  feature: string,
): T {
  try {
    return requireFromHere(name) as T;
  } catch (error) {
    if ((error as { code?: string }).code !== 'MODULE_NOT_FOUND') throw error;
    throw new TollgateError(
      'ERR_TG_METERING_MISSING_PEER',
      `${feature} needs the "${name}" package, an optional peer dependency of @tollgate/metering: npm install ${name}`,
    );
  }
}
