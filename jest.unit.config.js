// `pnpm test:unit`: the tests that need no service (no Redis, PostgreSQL, redis-server or Chromium), run without any.
// A test file needs a service when it, or a helper it imports from the repository, names one (the patterns below);
// every other file runs here, and in `pnpm test` with the rest.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import base from './jest.config.js';

const ROOT = dirname(fileURLToPath(import.meta.url));
/**
 * What a test file that talks to a service says: a client or store of its own, a URL, or a test helper that connects
 * (the helpers also hold what memory-only tests use, so importing one is not enough).
 */
const SERVICE = [
  /from 'redis'/,
  /@tollgate\/redis/,
  /createRedisStores/,
  /REDIS_URL/,
  /REDIS_CLUSTER_URLS/,
  /redis-server/,
  /redis:\/\//,
  /redisUrl/,
  /store: 'redis'/,
  /deleteRedisPrefix/,
  /redisTestStores/,
  /memoryAndRedisStores/,
  /clientStoreKinds/,
  /startSharingGateways/,
  /deleteKeys/,
  /redis-cluster/,
  /redis-relay/,
  /stalling-relay/,
  /guard-app/,
  /from 'pg'/,
  /POSTGRES_URL/,
  /postgres:\/\//,
  /postgresUrl/,
  /openLedgerDatabase/,
  /LEDGER_KINDS/,
  /postgresBackend/,
  /playwright/,
  /chromium/i,
];
/** A fixture a test runs in a child process: what it says counts as the test's own. */
const FIXTURE = /'(\.{1,2}\/(?:[\w-]+\/)*fixtures\/[^']+)'/g;

function testFiles(dir) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name === 'dist') continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...testFiles(path));
    else if (entry.name.endsWith('.test.ts') && /[/\\]test[/\\]/.test(path)) found.push(path);
  }
  return found;
}

const says = (file) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

/** The test file, or a fixture it runs, names a service. */
function needsService(file) {
  const text = says(file);
  if (SERVICE.some((pattern) => pattern.test(text))) return true;
  for (const [, spec] of text.matchAll(FIXTURE)) {
    const fixture = says(resolve(dirname(file), spec));
    if (SERVICE.some((pattern) => pattern.test(fixture))) return true;
  }
  return false;
}

const services = ['packages', 'examples', 'test']
  .flatMap((dir) => testFiles(join(ROOT, dir)))
  .filter((file) => needsService(file));
const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** @type {import('jest').Config} */
export default {
  ...base,
  // No service to look for: the global setup that refuses to start without them is not run.
  globalSetup: undefined,
  // Every core: these tests wait on nothing but their own process (jest's default leaves one core idle).
  maxWorkers: '100%',
  testPathIgnorePatterns: ['/node_modules/', ...services.map((file) => `^${escape(file)}$`)],
};
