// The zero-config demo: a free and a pro tenant with fresh keys, so `pnpm start` works offline against the mock.
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import type { ProxyConfig } from './config.js';

export interface DemoKey {
  /** A tenant's name, or `admin` for the key of /admin and /dashboard. */
  tenant: string;
  tier: string;
  /** The key itself: shown once at start, never stored. */
  key: string;
}

/**
 * The demo config: two tiers, two tenants, one key each, an admin key for the dashboard, and the
 * usage ledger in an embedded PostgreSQL (in memory); the keys are returned for printing.
 */
export function createDemoConfig(): { config: ProxyConfig; keys: DemoKey[] } {
  const free = generateApiKey();
  const pro = generateApiKey();
  const admin = generateApiKey();
  const sha256 = hashApiKey;
  const config: ProxyConfig = {
    adminKeySha256: sha256(admin),
    embeddedLedger: true,
    tiers: {
      free: {
        requestsPerMinute: 5,
        tokensPerMinute: 20_000,
        models: ['gpt-4o-mini', 'claude-haiku-4-5'],
        maxOutputTokens: 512,
      },
      pro: { requestsPerMinute: 600, tokensPerMinute: 2_000_000, models: ['*'] },
    },
    tenants: {
      'demo-free': { tier: 'free', budget: { usd: 1, period: 'day' } },
      'demo-pro': {
        tier: 'pro',
        budget: { usd: 100, period: 'month', softLimit: 0.8 },
        downgrade: { 'gpt-4o': 'gpt-4o-mini' },
      },
    },
    keys: [
      { id: 'demo-free-key', sha256: sha256(free), tenant: 'demo-free', user: 'demo', scopes: ['chat'] },
      { id: 'demo-pro-key', sha256: sha256(pro), tenant: 'demo-pro', user: 'demo', scopes: ['chat'] },
    ],
  };
  return {
    config,
    keys: [
      { tenant: 'demo-free', tier: 'free', key: free },
      { tenant: 'demo-pro', tier: 'pro', key: pro },
      { tenant: 'admin', tier: '-', key: admin },
    ],
  };
}

/** The banner printed at start: the keys, and a curl line that works as printed. */
export function demoBanner(keys: DemoKey[], port: number): string {
  const lines = [
    '',
    'tollgate demo: no TOLLGATE_CONFIG, so in-memory stores, an embedded usage ledger and the built-in mock provider.',
    'Demo keys (shown once, valid until this process stops):',
  ];
  const callers = keys.filter((key) => key.tenant !== 'admin');
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
