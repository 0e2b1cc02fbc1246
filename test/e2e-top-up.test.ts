// A top-up never rewrites history: after $2 credited to a $1 budget with $0.25 spent, the admin API, the dashboard's
// JSON and its pages show spent $0.25, credit $2 and remaining $2.75 (limit + credit - spent - held), on memory and
// Redis, and the budget admits what its credit allows.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { memoryAndRedisStores, newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { OwnedStores, RunningProxy } from './helpers/proxy.js';

const adminKey = newApiKey();
const acmeKey = newApiKey();
const admin = { authorization: `Bearer ${adminKey}` };

const config: GatewayConfig = {
  adminKeySha256: sha256Hex(adminKey),
  tiers: { pro: { requestsPerMinute: 600, tokensPerMinute: 2_000_000, models: ['*'] } },
  tenants: { acme: { tier: 'pro', budget: { usd: 1, period: 'day' } } },
  keys: [{ id: 'acme-key', sha256: sha256Hex(acmeKey), tenant: 'acme', scopes: ['chat'] }],
};

interface Status {
  scope: string;
  key: string;
  resetAt: string;
  limitNanoUsd: number;
  spentNanoUsd: number;
  creditNanoUsd: number;
  reservedNanoUsd: number;
  remainingNanoUsd: number;
}

/** The figures of the symptom, in nano-USD: a $1 cap, $0.25 spent, then $2 credited. */
const SHOWN = {
  limitNanoUsd: 1_000_000_000,
  spentNanoUsd: 250_000_000,
  creditNanoUsd: 2_000_000_000,
  reservedNanoUsd: 0,
  remainingNanoUsd: 2_750_000_000,
};

describe.each(memoryAndRedisStores('top-up'))('a top-up on %s stores', (_kind, storesFor) => {
  let owned: OwnedStores;
  let proxy: RunningProxy;
  const get = async (path: string, accept = 'application/json') => {
    const response = await fetch(`${proxy.url}${path}`, { headers: { ...admin, accept } });
    expect(response.status).toBe(200);
    return response;
  };
  const tenantBudget = async (): Promise<Status> => {
    const body = (await (await get('/admin/budgets/tenant/acme')).json()) as { budgets: Status[] };
    return body.budgets.find((status) => status.scope === 'tenant')!;
  };

  beforeAll(async () => {
    owned = storesFor();
    proxy = await startProxy(config, { stores: owned.stores });
    // $0.25 spent in the budget's current period.
    const before = await tenantBudget();
    await owned.stores.ledger.adjustSpent(before.key, 250_000_000, Date.parse(before.resetAt));
    const topUp = await fetch(`${proxy.url}/admin/budgets/tenant/acme/top-up`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ usd: 2 }),
    });
    expect(topUp.status).toBe(200);
  });

  afterAll(async () => {
    await proxy?.close();
    await owned?.release();
  });

  it('keeps spent what was spent in the admin API, and adds the credit apart', async () => {
    expect(await tenantBudget()).toMatchObject({ ...SHOWN, spentUsd: 0.25, creditUsd: 2, remainingUsd: 2.75 });
  });

  it("shows the same figures in the dashboard's JSON, on the overview and the tenant's own", async () => {
    const tenant = (await (await get('/dashboard/api/tenants/acme')).json()) as { budgets: Status[] };
    expect(tenant.budgets.find((status) => status.scope === 'tenant')).toMatchObject(SHOWN);
    const overview = (await (await get('/dashboard/api/overview')).json()) as {
      tenants: { id: string; budget: Status; overNanoUsd: number }[];
    };
    const row = overview.tenants.find((candidate) => candidate.id === 'acme')!;
    expect(row.budget).toMatchObject(SHOWN);
    expect(row.overNanoUsd).toBe(0);
  });

  it('shows them on the tenant page and the overview page', async () => {
    const page = await (await get('/dashboard/tenants/acme', 'text/html')).text();
    const card = page.slice(page.indexOf('<article class="card budget" data-scope="tenant" data-id="acme"'));
    const figure = (name: string) =>
      new RegExp(`data-figure="${name}"><dt>[^<]*</dt><dd data-nano-usd="(\\d+)">([^<]*)<`).exec(card)!.slice(1);
    expect(figure('spent')).toEqual(['250000000', '$0.25']);
    expect(figure('credit')).toEqual(['2000000000', '$2.00']);
    expect(figure('remaining')).toEqual(['2750000000', '$2.75']);
    expect(figure('cap')).toEqual(['1000000000', '$1.00']);
    expect(card).toContain('$0.25 spent − $2.00 credit + $0.00 held + $2.75 remaining = $1.00 cap');
    // The bar: what was spent of what the budget may spend, in the decimals of the figures beside it.
    expect(card).toContain('$0.25 of $1.00 + $2.00 credit');

    const overview = await (await get('/dashboard', 'text/html')).text();
    const row = /<tr data-tenant="acme"[\s\S]*?<\/tr>/.exec(overview)![0];
    const cell = (name: string) => new RegExp(`data-figure="${name}" data-nano-usd="(\\d+)">([^<]*)<`).exec(row)![2];
    expect([cell('remaining'), cell('credit'), cell('held')]).toEqual(['$2.75', '$2.00', '$0.00']);
    expect(row).toContain('$0.25 of $1.00 + $2.00 credit');
  });

  it('admits what the credit allows, and no more: $2.75 held, then nothing', async () => {
    const { key, resetAt } = await tenantBudget();
    const scope = { key, limit: SHOWN.limitNanoUsd, expiresAt: Date.parse(resetAt) };
    const request = (id: string, amount: number) =>
      owned.stores.ledger.reserve({ id, amount, scopes: [scope], ttlMs: 60_000 });
    expect(await request(`fits-${Date.now()}`, 2_750_000_000)).toMatchObject({ ok: true });
    expect(await request(`over-${Date.now()}`, 1)).toMatchObject({ ok: false, remaining: 0 });
  });
});
