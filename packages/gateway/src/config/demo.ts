// The zero-config demo: a free and a pro tenant with fresh keys, so `pnpm start` works offline against the mock.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { ConfigError } from './error.js';
import type { KeyConfig, GatewayConfig } from './schema.js';
import { dataDirLayout } from '../data-dir.js';
import { embeddedLedgerInstalled } from './summary.js';

/** What the demo says when PGlite is not installed. */
const PGLITE_HINT = '@electric-sql/pglite is not installed; `npm i @electric-sql/pglite` keeps it';

export interface DemoKey {
  /** A tenant's name, or `admin` for the key of /admin and /dashboard. */
  tenant: string;
  tier: string;
  /** The key itself: shown once at start, never stored. */
  key: string;
}

const DEMO_TIERS: NonNullable<GatewayConfig['tiers']> = {
  free: {
    requestsPerMinute: 5,
    tokensPerMinute: 20_000,
    models: ['gpt-4o-mini', 'claude-haiku-4-5'],
    maxOutputTokens: 512,
  },
  pro: { requestsPerMinute: 600, tokensPerMinute: 2_000_000, models: ['*'] },
};

const DEMO_TENANTS: NonNullable<GatewayConfig['tenants']> = {
  'demo-free': { tier: 'free', budget: { usd: 1, period: 'day' } },
  'demo-pro': {
    tier: 'pro',
    budget: { usd: 100, period: 'month', softLimit: 0.8 },
    downgrade: { 'gpt-4o': 'gpt-4o-mini' },
  },
};

/** The demo's keys, made once: one per tenant, and the admin key of the dashboard. */
function makeDemoKeys(): { adminKeySha256: string; entries: KeyConfig[]; keys: DemoKey[] } {
  const free = generateApiKey();
  const pro = generateApiKey();
  const admin = generateApiKey();
  return {
    adminKeySha256: hashApiKey(admin),
    entries: [
      { id: 'demo-free-key', sha256: hashApiKey(free), tenant: 'demo-free', user: 'demo', scopes: ['chat'] },
      { id: 'demo-pro-key', sha256: hashApiKey(pro), tenant: 'demo-pro', user: 'demo', scopes: ['chat'] },
    ],
    keys: [
      { tenant: 'demo-free', tier: 'free', key: free },
      { tenant: 'demo-pro', tier: 'pro', key: pro },
      { tenant: 'admin', tier: '-', key: admin },
    ],
  };
}

/**
 * The demo config: two tiers, two tenants, one key each, an admin key for the dashboard, and the usage ledger in an
 * embedded PostgreSQL; the keys are returned for printing. Without `dataDir` everything is in memory and new keys are
 * made at each start. With one, the ledger and the keys are kept there: the first start makes the keys and writes
 * their hashes (and the admin key's) to `<dataDir>/keys.json`; later starts read them, and print no key.
 */
export function createDemoConfig(dataDir?: string): { config: GatewayConfig; keys: DemoKey[] } {
  // The mock on purpose; the ledger in PGlite when it is installed (an optional peer), else none: the demo runs
  // after `npm i @tollgate/gateway` alone, and its start line and banner say that usage is not kept.
  const base: GatewayConfig = {
    upstreams: { mock: { kind: 'mock' } },
    embeddedLedger: embeddedLedgerInstalled(),
    tiers: DEMO_TIERS,
    tenants: DEMO_TENANTS,
  };
  if (dataDir === undefined) {
    const made = makeDemoKeys();
    return { config: { ...base, adminKeySha256: made.adminKeySha256, keys: made.entries }, keys: made.keys };
  }
  const { keys: keysPath } = dataDirLayout(dataDir);
  const kept = readKeptAdminKey(keysPath);
  if (kept !== undefined) return { config: { ...base, dataDir, adminKeySha256: kept }, keys: [] };
  const made = makeDemoKeys();
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // Exclusive: two first starts cannot both write keys (the second fails here, the data directory's lock would stop it after).
  writeFileSync(keysPath, `${JSON.stringify({ adminKeySha256: made.adminKeySha256, keys: made.entries }, null, 2)}\n`, {
    mode: 0o600,
    flag: 'wx',
  });
  return { config: { ...base, dataDir, adminKeySha256: made.adminKeySha256 }, keys: made.keys };
}

/** The admin key hash a demo's data directory kept, or undefined when it holds none yet. */
function readKeptAdminKey(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot read ${path}: ${(error as Error).message}`);
  }
  let kept: unknown;
  try {
    kept = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${path} is not valid JSON: ${(error as Error).message}`);
  }
  const admin = (kept as { adminKeySha256?: unknown } | null)?.adminKeySha256;
  if (typeof admin !== 'string' || !/^[0-9a-f]{64}$/.test(admin))
    throw new ConfigError(
      `${path} holds no "adminKeySha256" (64 lowercase hex): the demo wrote one when it made this directory`,
    );
  return admin;
}

/**
 * The banner printed at start: the keys, and a curl line that works as printed. With a data directory whose keys were
 * made at an earlier start, no key can be shown (only their hashes are kept): it says how to make another.
 */
export function demoBanner(keys: DemoKey[], port: number, dataDir?: string): string {
  const installed = embeddedLedgerInstalled();
  const ledger = installed ? 'an embedded usage ledger' : `no usage ledger (${PGLITE_HINT})`;
  const where = dataDir
    ? `${installed ? 'the ledger and ' : ''}the keys kept in ${dataDir}${installed ? '' : `, ${ledger}`}`
    : `in-memory stores, ${ledger}`;
  const lines = ['', `tollgate demo: no TOLLGATE_CONFIG, so ${where} and the built-in mock provider.`];
  const callers = keys.filter((key) => key.tenant !== 'admin');
  if (callers.length === 0) {
    const keysFile = dataDir ? dataDirLayout(dataDir).keys : 'keys.json';
    lines.push(
      `The demo keys were printed when ${dataDir ?? 'the data directory'} was made, and work as long as it is kept. Another one:`,
      `  pnpm tollgate keys create --config ${keysFile} --tenant demo-pro --user demo --scopes chat`,
      `Dashboard: http://localhost:${port}/dashboard`,
      '',
    );
    return lines.join('\n');
  }
  lines.push(
    dataDir
      ? `Demo keys (shown once; ${dataDir} keeps their hashes, so they work after a restart):`
      : 'Demo keys (shown once, valid until this process stops):',
  );
  for (const key of callers) lines.push(`  ${key.tenant.padEnd(10)} tier ${key.tier.padEnd(5)} ${key.key}`);
  const admin = keys.find((key) => key.tenant === 'admin');
  if (admin) lines.push('', `Dashboard: http://localhost:${port}/dashboard  (sign in with the admin key ${admin.key})`);
  const first = callers[0]!;
  lines.push(
    '',
    'Try it:',
    `  curl -s http://localhost:${port}/v1/chat/completions -H "Authorization: Bearer ${first.key}" -H "content-type: application/json" \\`,
    `    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}]}'`,
    '',
  );
  return lines.join('\n');
}
