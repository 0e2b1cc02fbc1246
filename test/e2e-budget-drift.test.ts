// Through the gateway on Redis and PostgreSQL: a tenant's budget counter raised by hand locks the tenant out though the
// usage ledger says it barely spent; the sampler's gauge shows exactly the change, budget.drift fires past the bound and
// not below it, and POST /admin/budgets/tenant/acme/repair sets the counter to the ledger without a restart (audited).
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { runCli } from '@tollgate/cli';
import { createRedisStores } from '@tollgate/redis';
import type { RedisStores } from '@tollgate/redis';
import { deleteRedisPrefix, newApiKey, REDIS_URL, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';
import { startWebhookReceiver } from './helpers/webhook-receiver.js';
import type { WebhookReceiver } from './helpers/webhook-receiver.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const table = `tg_e2e_drift_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const prefix = `tg-test:drift:${randomUUID()}:`;
const adminKey = newApiKey();
const apiKey = newApiKey();
/** $0.01 a month for the tenant; budget.drift past $0.001. */
const LIMIT = 10_000_000;
const BOUND = 1_000_000;
const SERIES = 'tollgate_budget_drift_nano_usd{scope="tenant",id="acme",period="month"}';

const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
let stores: RedisStores;
let hook: WebhookReceiver;
let proxy: RunningProxy;

beforeAll(async () => {
  stores = createRedisStores({ url: REDIS_URL, prefix });
  hook = await startWebhookReceiver();
  proxy = await startProxy(
    {
      postgresUrl: POSTGRES_URL,
      postgresTable: table,
      spool: false,
      adminKeySha256: sha256Hex(adminKey),
      // Calls go to the store one by one: a block would hand out what the counter no longer has.
      redis: { blocks: false },
      budgetDrift: { alertUsd: BOUND / 1e9, interval: '1s', scopesPerTick: 5 },
      alerts: { webhooks: [{ url: hook.url }] },
      tiers: { pro: { requestsPerMinute: 600, models: ['*'] } },
      defaultTier: 'pro',
      tenants: { acme: { tier: 'pro', budget: { usd: LIMIT / 1e9, period: 'month' } } },
      keys: [{ id: 'acme-key', sha256: sha256Hex(apiKey), tenant: 'acme', scopes: [] }],
      log: { level: 'silent' },
    } as never,
    { stores },
  );
  await proxy.app.spendReady();
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await stores?.close();
  await hook?.close();
  await deleteRedisPrefix(prefix);
  for (const suffix of ['audit', 'credits', 'outcomes', 'tenants', ''])
    await pool.query(`DROP TABLE IF EXISTS "${suffix ? `${table}_${suffix}` : table}"`);
  await pool.query(`DROP FUNCTION IF EXISTS "${table}_audit_append_only"()`);
  await pool.end();
});

const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };

async function chat(): Promise<number> {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] }),
  });
  await response.text();
  return response.status;
}

/** The PostgreSQL ledger's own sum for the tenant (the test runs within one month). */
async function ledgerSum(): Promise<number> {
  const { rows } = await pool.query<{ spent: string }>(
    `SELECT coalesce(sum(cost_nano_usd), 0)::text AS spent FROM "${table}" WHERE tenant_id = 'acme'`,
  );
  return Number(rows[0]!.spent);
}

interface Reading {
  key: string;
  spentNanoUsd: number;
  reservedNanoUsd: number;
  ledgerNanoUsd: number;
  driftNanoUsd: number;
}

async function driftOfAcme(): Promise<Reading> {
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme/drift`, { headers: admin });
  expect(response.status).toBe(200);
  const { drift } = (await response.json()) as { drift: Reading[] };
  expect(drift).toHaveLength(1);
  return drift[0]!;
}

/** The gauge's value in a scrape of /metrics, if the series is there. */
async function gauge(): Promise<number | undefined> {
  const scrape = await (await fetch(`${proxy.url}/metrics`, { headers: admin })).text();
  const line = scrape.split('\n').find((candidate) => candidate.startsWith(`${SERIES} `));
  return line === undefined ? undefined : Number(line.slice(SERIES.length + 1));
}

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const value = await read();
    if (done(value)) return value;
    await sleep(100);
  }
  throw new Error(`waited 10 s for ${what}`);
}

const driftEvents = () =>
  hook.deliveries
    .map((delivery) => JSON.parse(delivery.body) as { type: string; details: Record<string, unknown> })
    .filter((event) => event.type === 'budget.drift');

describe('a budget counter changed by hand, through the gateway', () => {
  let hash: string;
  let spent: number;

  it('reads no drift while the counter and the ledger agree', async () => {
    for (let i = 0; i < 3; i++) expect(await chat()).toBe(200);
    await proxy.app.flushUsage();
    spent = await ledgerSum();
    expect(spent).toBeGreaterThan(0);
    expect(await driftOfAcme()).toMatchObject({ spentNanoUsd: spent, ledgerNanoUsd: spent, driftNanoUsd: 0 });
    expect(await waitFor(gauge, (value) => value === 0, 'the gauge at 0')).toBe(0);
    // The whole keyspace, cursor by cursor: the shared Redis may hold other suites' keys meanwhile.
    const match = `${prefix}*scope:${(await driftOfAcme()).key}`;
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = (await stores.sendCommand(['SCAN', cursor, 'MATCH', match, 'COUNT', '1000'])) as [
        string,
        string[],
      ];
      keys.push(...found);
      cursor = next;
    } while (cursor !== '0');
    expect(keys).toHaveLength(1);
    hash = keys[0]!;
  });

  it('shows a change below the bound on the gauge, with no alert', async () => {
    await stores.sendCommand(['HINCRBY', hash, 's', String(BOUND)]);
    expect(await waitFor(gauge, (value) => value === BOUND, 'the sampler to read the change')).toBe(BOUND);
    await sleep(300);
    expect(driftEvents()).toEqual([]);
  });

  it('locks the tenant out past the bound, shows the change to the nano-USD and alerts once', async () => {
    // The counter at the limit: the ledger says $0.0099 and more is left.
    const change = LIMIT - spent;
    await stores.sendCommand(['HINCRBY', hash, 's', String(change - BOUND)]);
    expect(await chat()).toBe(429);
    expect(await waitFor(gauge, (value) => value === change, 'the sampler to read the change')).toBe(change);
    expect(await driftOfAcme()).toMatchObject({ spentNanoUsd: LIMIT, ledgerNanoUsd: spent, driftNanoUsd: change });
    const [event] = await waitFor(
      async () => driftEvents(),
      (events) => events.length > 0,
      'budget.drift',
    );
    expect(event!.details).toMatchObject({ type: 'budget.drift', scope: 'tenant', id: 'acme', driftNanoUsd: change });
    expect(await ledgerSum()).toBe(spent);
  });

  it('is repaired without a restart: the counter at the ledger, calls admitted as it says, the write audited', async () => {
    // Read again each second since, past the bound all along: told once.
    await sleep(1_100);
    expect(driftEvents()).toHaveLength(1);
    const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme/repair`, { method: 'POST', headers: admin });
    expect(response.status).toBe(200);
    const { repairs } = (await response.json()) as {
      repairs: { repaired: boolean; spentBeforeNanoUsd: number; spentAfterNanoUsd: number; after: Reading }[];
    };
    expect(repairs).toMatchObject([
      { repaired: true, spentBeforeNanoUsd: LIMIT, spentAfterNanoUsd: spent, after: { driftNanoUsd: 0 } },
    ]);
    expect(await stores.sendCommand(['HGET', hash, 's'])).toBe(String(spent));
    expect(await waitFor(gauge, (value) => value === 0, 'the gauge back at 0')).toBe(0);

    const { budgets } = (await (await fetch(`${proxy.url}/admin/budgets/tenant/acme`, { headers: admin })).json()) as {
      budgets: { spentNanoUsd: number; remainingNanoUsd: number }[];
    };
    expect(budgets[0]).toMatchObject({ spentNanoUsd: spent, remainingNanoUsd: LIMIT - spent });
    expect(await chat()).toBe(200);
    await proxy.app.flushUsage();
    const after = await ledgerSum();
    expect(after).toBeGreaterThan(spent);
    // Money balances: the counter is the ledger's sum to the nano-USD.
    expect(await driftOfAcme()).toMatchObject({ spentNanoUsd: after, ledgerNanoUsd: after, driftNanoUsd: 0 });

    const audit = (await (await fetch(`${proxy.url}/admin/audit?action=budget.repair`, { headers: admin })).json()) as {
      entries: { target: string; outcome: string; before: Reading[]; after: Reading[] }[];
    };
    expect(audit.entries).toHaveLength(1);
    expect(audit.entries[0]).toMatchObject({
      target: 'budget:tenant:acme',
      outcome: 'done',
      before: [{ spentNanoUsd: LIMIT, ledgerNanoUsd: spent, driftNanoUsd: LIMIT - spent }],
      after: [{ spentNanoUsd: spent, driftNanoUsd: 0 }],
    });
  });

  it('is read and repaired by `tollgate budgets` through the admin API', async () => {
    const tollgate = async (...argv: string[]) => {
      let stdout = '';
      let stderr = '';
      const io = {
        stdout: { write: (text: string) => (stdout += text) },
        stderr: { write: (text: string) => (stderr += text) },
      };
      const code = await runCli(argv, io, { ...process.env, TOLLGATE_ADMIN_KEY: adminKey, TOLLGATE_URL: proxy.url });
      return { code, stdout, stderr };
    };
    const spentNow = await ledgerSum();
    // $0.25 by hand; the command line shows USD to the micro-USD.
    await stores.sendCommand(['HINCRBY', hash, 's', '250000000']);
    const drift = await tollgate('budgets', 'drift', 'tenant/acme', '--format', 'json');
    expect(drift).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(drift.stdout)).toEqual([
      {
        key: expect.stringMatching(/^budget:tenant:acme:month/),
        counterUsd: expect.closeTo((spentNow + 250_000_000) / 1e9, 5),
        heldUsd: 0,
        ledgerUsd: expect.closeTo(spentNow / 1e9, 5),
        driftUsd: 0.25,
      },
    ]);
    const repair = await tollgate('budgets', 'repair', 'tenant/acme', '--format', 'json');
    expect(repair.code).toBe(0);
    expect(JSON.parse(repair.stdout)).toMatchObject([
      { repaired: 'yes', counterAfterUsd: expect.closeTo(spentNow / 1e9, 5) },
    ]);
    expect(await stores.sendCommand(['HGET', hash, 's'])).toBe(String(spentNow));
    const holds = await tollgate('budgets', 'holds', 'tenant/acme', '--format', 'json');
    expect(holds).toMatchObject({ code: 0, stdout: '[]\n' });
    const audit = (await (await fetch(`${proxy.url}/admin/audit?action=budget.repair`, { headers: admin })).json()) as {
      entries: unknown[];
    };
    // The command line's repair went through the admin API: recorded like the route's.
    expect(audit.entries).toHaveLength(2);
    expect((await tollgate('budgets', 'repair', 'nobody')).code).toBe(2);
  });
});
