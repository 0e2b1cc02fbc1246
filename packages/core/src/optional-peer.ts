// What a missing optional peer dependency is, and how every package says which one to install: heavy integrations
// (pg, PGlite, stripe, OpenTelemetry's SDK, MCP) load only when a feature asks for them, so installs stay lean.
import { createRequire } from 'node:module';
import { TollgateError } from './errors.js';

/** Which optional package a feature needs, and whose peer it is. */
interface OptionalPeer {
  /** The npm package. */
  name: string;
  /** What needs it, as the user configured it (`"export.stripe"`, `postgresSink({ connectionString })`). */
  feature: string;
  /** The package that declares it as an optional peer (`@tollgate/metering`). */
  dependent: string;
  /** The TollgateError code thrown when it is missing. */
  code: string;
}

/**
 * What to throw when loading `peer` failed with `error`: a TollgateError naming the package to install when the
 * package itself is not found (require's MODULE_NOT_FOUND, import's ERR_MODULE_NOT_FOUND), else `error` as it is (a
 * package that is there but broken says so itself).
 */
export function optionalPeerError(error: unknown, peer: OptionalPeer): unknown {
  const { code, message } = (error ?? {}) as { code?: string; message?: string };
  const notFound = code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND';
  // Only this package's absence: a dependency missing inside an installed package is that package's problem.
  if (!notFound || !String(message).includes(`'${peer.name}`)) return error;
  return new TollgateError(
    peer.code,
    `${peer.feature} needs the "${peer.name}" package, an optional peer dependency of ${peer.dependent}: ` +
      `npm install ${peer.name}`,
  );
}

/**
 * The package `name` as resolved from the module at `from` (its `import.meta.url`), loaded when a feature first asks
 * for it rather than when its package is imported: a process that never configures the feature never pays for it
 * (docs/performance.md, memory at rest). Synchronous, so factories stay synchronous: CommonJS builds, and ESM-only
 * packages through require(esm) on the Node versions the packages support. With `peer` (an optional peer dependency),
 * its absence is the TollgateError naming the package to install.
 */
export function loadOnDemand<T>(from: string, name: string, peer?: Omit<OptionalPeer, 'name'>): T {
  try {
    return createRequire(from)(name) as T;
  } catch (error) {
    throw peer ? optionalPeerError(error, { name, ...peer }) : error;
  }
}
