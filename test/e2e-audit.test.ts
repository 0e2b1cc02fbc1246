// The audit trail of admin writes through the gateway: every mutating admin route leaves exactly one entry (a table
// of routes, and the live routers enumerated so a new route without one fails), filters, pages and CSV, append-only
// on PostgreSQL and PGlite, kept across a restart, `audit.event` on the alert stream, and a write refused when the
// trail cannot record it.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { memoryAuditStore } from '@tollgate/core/audit';
import type { AuditEntry, AuditPage, AuditStore } from '@tollgate/core/audit';
import { auditTableName, postgresAuditStore } from '@tollgate/metering';
import { openEmbeddedLedger } from '@tollgate/metering/postgres';
import { answerOf, MOCK_UPSTREAMS, newApiKey, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import { appRoutes } from './helpers/app-routes.js';
import type { Layer } from './helpers/app-routes.js';
import type { RunningProxy } from './helpers/proxy.js';
import { priceFile, readPrices } from './helpers/price-source.js';
import { startWebhookReceiver } from './helpers/webhook-receiver.js';
import type { WebhookReceiver } from './helpers/webhook-receiver.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const adminKey = newApiKey();
const appKey = newApiKey();
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-e2e-audit-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function baseConfig(extra: Record<string, unknown> = {}) {
  return {
    adminKeySha256: sha256Hex(adminKey),
    trustProxy: 'loopback',
    keys: [{ id: 'app', sha256: sha256Hex(appKey), tenant: 'acme' }],
    tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'month' } } },
    tiers: { pro: { requestsPerMinute: 1000, tokensPerMinute: 1_000_000 } },
    global: { budget: { usd: 1000, period: 'day' } },
    ...extra,
  };
}

async function admin(
  proxy: RunningProxy,
  method: string,
  route: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${proxy.url}${route}`, {
    method,
    headers: {
      authorization: `Bearer ${adminKey}`,
      accept: 'application/json',
      ...(body === undefined
        ? {}
        : { 'content-type': typeof body === 'string' ? 'application/x-ndjson' : 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return answerOf(response);
}

async function audit(proxy: RunningProxy, query = ''): Promise<AuditPage> {
  const answer = await admin(proxy, 'GET', `/admin/audit${query ? `?${query}` : ''}`);
  expect(answer.status).toBe(200);
  return answer.body as unknown as AuditPage;
}

/** Every entry, newest first, page by page. */
async function allEntries(proxy: RunningProxy, query = ''): Promise<AuditEntry[]> {
  const entries: AuditEntry[] = [];
  let cursor: string | null = null;
  do {
    const page = await audit(proxy, `${query}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    entries.push(...page.entries);
    cursor = page.nextCursor;
  } while (cursor);
  return entries;
}

interface Budget {
  spentNanoUsd?: number;
  creditNanoUsd?: number;
}

/** One mutating admin route, driven once: what it must record. */
interface AuditedRoute {
  /** The route as its router declares it (the enumeration's name for it). */
  route: string;
  method: string;
  path: string;
  body?: unknown;
  status: number;
  action: string;
  target: string;
  check(entry: AuditEntry): void;
}

const asRecord = (value: unknown) => value as Record<string, unknown>;

/** Every mutating admin route, in an order that makes each one do its work (a key exists before it is rotated). */
const ROUTES: AuditedRoute[] = [
  {
    route: 'POST /admin/keys',
    method: 'POST',
    path: '/admin/keys',
    body: { id: 'k-audit', tenant: 'acme', budget: { usd: 5, period: 'day' } },
    status: 201,
    action: 'key.create',
    target: 'key:k-audit',
    check(entry) {
      expect(entry.before).toBeNull();
      expect(asRecord(entry.after)).toMatchObject({ id: 'k-audit', tenantId: 'acme', budget: { usd: 5 } });
    },
  },
  {
    route: 'PATCH /admin/keys/:id',
    method: 'PATCH',
    path: '/admin/keys/k-audit',
    body: { budget: { usd: 7, period: 'day' } },
    status: 200,
    action: 'key.budget',
    target: 'key:k-audit',
    check(entry) {
      expect(asRecord(entry.before)).toMatchObject({ id: 'k-audit', budget: { usd: 5 } });
      expect(asRecord(entry.after)).toMatchObject({ id: 'k-audit', budget: { usd: 7 } });
    },
  },
  {
    route: 'POST /admin/keys/:id/rotate',
    method: 'POST',
    path: '/admin/keys/k-audit/rotate',
    body: { id: 'k-audit-2' },
    status: 201,
    action: 'key.rotate',
    target: 'key:k-audit',
    check(entry) {
      expect(asRecord(entry.before)).toMatchObject({ id: 'k-audit' });
      expect(asRecord(asRecord(entry.after).record)).toMatchObject({ id: 'k-audit-2' });
      expect(asRecord(asRecord(entry.after).previous)).toMatchObject({ id: 'k-audit' });
    },
  },
  {
    route: 'POST /admin/keys/:id/revoke',
    method: 'POST',
    path: '/admin/keys/k-audit/revoke',
    status: 200,
    action: 'key.revoke',
    target: 'key:k-audit',
    check(entry) {
      expect(asRecord(entry.before).disabled).toBeUndefined();
      expect(asRecord(entry.after).disabled).toBe(true);
    },
  },
  ...(['global', 'tenant/acme'] as const).flatMap((scope): AuditedRoute[] => {
    const route = scope === 'global' ? '/admin/budgets/global' : '/admin/budgets/:scope/:id';
    const target = scope === 'global' ? 'budget:global' : 'budget:tenant:acme';
    return [
      {
        route: `POST ${route}/top-up`,
        method: 'POST',
        path: `/admin/budgets/${scope}/top-up`,
        body: { usd: 3 },
        status: 200,
        action: 'budget.top-up',
        target,
        check(entry) {
          const [before] = entry.before as Budget[];
          const [after] = entry.after as Budget[];
          expect((after!.creditNanoUsd ?? 0) - (before!.creditNanoUsd ?? 0)).toBe(3e9);
        },
      },
      {
        route: `POST ${route}/reset`,
        method: 'POST',
        path: `/admin/budgets/${scope}/reset`,
        status: 200,
        action: 'budget.reset',
        target,
        check(entry) {
          expect((entry.before as Budget[]).length).toBe(1);
          expect((entry.after as Budget[]).length).toBe(1);
        },
      },
      {
        route: `POST ${route}/repair`,
        method: 'POST',
        path: `/admin/budgets/${scope}/repair`,
        status: 200,
        action: 'budget.repair',
        target,
        check(entry) {
          // Nothing drifted here: the scope's reading before and after, the counter where the ledger has it.
          const [before] = entry.before as { driftNanoUsd: number; spentNanoUsd: number; ledgerNanoUsd: number }[];
          const [after] = entry.after as { driftNanoUsd: number; spentNanoUsd: number; ledgerNanoUsd: number }[];
          expect(after).toMatchObject({ driftNanoUsd: 0, spentNanoUsd: before!.spentNanoUsd });
          expect(after!.spentNanoUsd).toBe(after!.ledgerNanoUsd);
        },
      },
    ];
  }),
  ...(['keys/app', 'tenants/acme'] as const).flatMap((subject): AuditedRoute[] => {
    const target = subject === 'keys/app' ? 'key:app' : 'tenant:acme';
    const route = subject === 'keys/app' ? '/admin/guard/keys/:id' : '/admin/guard/tenants/:id';
    return [
      {
        route: `POST ${route}/suspend`,
        method: 'POST',
        path: `/admin/guard/${subject}/suspend`,
        body: { reason: 'audit test' },
        status: 200,
        action: 'guard.suspend',
        target,
        check(entry) {
          expect(entry.before).toEqual([]);
          expect(entry.after).toEqual([expect.objectContaining({ kind: 'suspend', subject: target })]);
        },
      },
      {
        route: `POST ${route}/lift`,
        method: 'POST',
        path: `/admin/guard/${subject}/lift`,
        status: 200,
        action: 'guard.lift',
        target,
        check(entry) {
          expect(entry.before).toEqual([expect.objectContaining({ kind: 'suspend', subject: target })]);
          expect(entry.after).toEqual([]);
        },
      },
    ];
  }),
  {
    route: 'POST /admin/guard/addresses/:address/unblock',
    method: 'POST',
    path: '/admin/guard/addresses/10.9.8.7/unblock',
    status: 200,
    action: 'block.clear',
    target: 'address:10.9.8.7',
    check(entry) {
      expect(entry.before).toEqual([expect.objectContaining({ kind: 'block', subject: 'ip:10.9.8.7' })]);
      expect(entry.after).toEqual([]);
    },
  },
  {
    route: 'DELETE /admin/abuse/:subject',
    method: 'DELETE',
    path: '/admin/abuse/address:10.9.8.7',
    status: 200,
    action: 'abuse.clear',
    target: 'address:10.9.8.7',
    check(entry) {
      expect(entry.before).toEqual([]);
      expect(asRecord(entry.after).lifted).toEqual([]);
    },
  },
  {
    route: 'DELETE /admin/guard/abuse/:subject',
    method: 'DELETE',
    path: '/admin/guard/abuse/key:app',
    status: 200,
    action: 'abuse.clear',
    target: 'key:app',
    check(entry) {
      expect(asRecord(entry.after).lifted).toEqual([]);
    },
  },
  {
    route: 'POST /admin/tenants',
    method: 'POST',
    path: '/admin/tenants',
    body: { id: 't-audit', tier: 'pro' },
    status: 201,
    action: 'tenant.create',
    target: 'tenant:t-audit',
    check(entry) {
      expect(entry.before).toBeNull();
      expect(asRecord(entry.after)).toMatchObject({ id: 't-audit', tier: 'pro' });
    },
  },
  {
    route: 'PATCH /admin/tenants/:id',
    method: 'PATCH',
    path: '/admin/tenants/t-audit',
    body: { metadata: { owner: 'audit' } },
    status: 200,
    action: 'tenant.change',
    target: 'tenant:t-audit',
    check(entry) {
      expect(asRecord(entry.before)).toMatchObject({ id: 't-audit' });
      expect(JSON.stringify(entry.after)).toContain('"owner":"audit"');
    },
  },
  {
    route: 'POST /admin/tenants:import',
    method: 'POST',
    path: '/admin/tenants:import',
    body: `${JSON.stringify({ id: 't-imported', tier: 'pro' })}\n`,
    status: 200,
    action: 'tenant.import',
    target: 'tenants',
    check(entry) {
      expect(asRecord(entry.after).lines).toEqual([expect.objectContaining({ id: 't-imported', outcome: 'created' })]);
    },
  },
  {
    route: 'DELETE /admin/tenants/:id',
    method: 'DELETE',
    path: '/admin/tenants/t-audit',
    status: 200,
    action: 'tenant.delete',
    target: 'tenant:t-audit',
    check(entry) {
      expect(asRecord(entry.before)).toMatchObject({ id: 't-audit' });
      expect(entry.after).toBeNull();
    },
  },
  {
    route: 'POST /dashboard/keys',
    method: 'POST',
    path: '/dashboard/api/keys',
    body: { id: 'd-audit', tenant: 'acme' },
    status: 201,
    action: 'key.create',
    target: 'key:d-audit',
    check(entry) {
      expect(entry.before).toBeNull();
      expect(asRecord(entry.after)).toMatchObject({ id: 'd-audit' });
    },
  },
  {
    route: 'POST /dashboard/keys/:id/rotate',
    method: 'POST',
    path: '/dashboard/api/keys/d-audit/rotate',
    body: { id: 'd-audit-2' },
    status: 201,
    action: 'key.rotate',
    target: 'key:d-audit',
    check(entry) {
      expect(asRecord(entry.before)).toMatchObject({ id: 'd-audit' });
      expect(asRecord(asRecord(entry.after).record)).toMatchObject({ id: 'd-audit-2' });
    },
  },
  {
    route: 'POST /dashboard/keys/:id/revoke',
    method: 'POST',
    path: '/dashboard/api/keys/d-audit/revoke',
    status: 200,
    action: 'key.revoke',
    target: 'key:d-audit',
    check(entry) {
      expect(asRecord(entry.after)).toMatchObject({ id: 'd-audit' });
    },
  },
  ...(['global', 'tenant/acme'] as const).flatMap((scope): AuditedRoute[] => {
    const route = scope === 'global' ? '/dashboard/budgets/global' : '/dashboard/budgets/:scope/:id';
    const target = scope === 'global' ? 'budget:global' : 'budget:tenant:acme';
    return [
      {
        route: `POST ${route}/top-up`,
        method: 'POST',
        path: `/dashboard/api/budgets/${scope}/top-up`,
        body: { usd: 2 },
        status: 200,
        action: 'budget.top-up',
        target,
        check(entry) {
          const [before] = entry.before as Budget[];
          const [after] = entry.after as Budget[];
          expect((after!.creditNanoUsd ?? 0) - (before!.creditNanoUsd ?? 0)).toBe(2e9);
        },
      },
      {
        route: `POST ${route}/reset`,
        method: 'POST',
        path: `/dashboard/api/budgets/${scope}/reset`,
        status: 200,
        action: 'budget.reset',
        target,
        check(entry) {
          expect((entry.before as Budget[]).length).toBe(1);
        },
      },
    ];
  }),
];

/** Non-GET routes behind /admin and /dashboard that are no admin write, and why. */
const NOT_ADMIN_WRITES: Record<string, string> = {
  'POST /dashboard/login': 'signing in: no admin is let in yet',
  'POST /dashboard/logout': 'signing out of the browser session: changes nothing of the gateway',
};

/** Every write route of a router with its mount path, as `METHOD /path`. */
function mutatingRoutes(stack: readonly Layer[]): Set<string> {
  return new Set([...appRoutes(stack)].filter((route) => !route.startsWith('GET ')));
}

/** Where a gateway keeps its ledger and so its trail; `db` reads the trail's table from outside, where it can. */
interface Ledger {
  config: Record<string, unknown>;
  db?: pg.Pool;
  table?: string;
  drop(): Promise<void>;
}

function postgresLedger(): Ledger {
  const table = `tg_e2e_audit_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  return {
    config: { postgresUrl: POSTGRES_URL, postgresTable: table, spool: false },
    db: pool,
    table,
    async drop() {
      for (const suffix of ['audit', 'credits', 'outcomes', ''])
        await pool.query(`DROP TABLE IF EXISTS "${suffix ? `${table}_${suffix}` : table}"`);
      await pool.query(`DROP FUNCTION IF EXISTS "${table}_audit_append_only"()`);
      await pool.end();
    },
  };
}

function embeddedLedger(): Ledger {
  return { config: { dataDir: mkdtempSync(path.join(dir, 'ledger-')) }, drop: async () => undefined };
}

describe.each([
  ['PostgreSQL', postgresLedger],
  ['the embedded ledger (PGlite)', embeddedLedger],
])('the audit trail of a gateway on %s', (_name, open) => {
  const ledger = open();
  const config = baseConfig({
    ...ledger.config,
    guard: { authFailures: { max: 3, windowSeconds: 60, block: '5m' }, abuse: { subjects: ['key', 'address'] } },
  });
  let hook: WebhookReceiver;
  let proxy: RunningProxy;
  const driven = new Map<string, AuditEntry>();

  afterAll(async () => {
    await proxy.close();
    await hook.close();
    await ledger.drop();
  });

  beforeAll(async () => {
    hook = await startWebhookReceiver();
    proxy = await startProxy({ ...config, alerts: { webhooks: [{ url: hook.url }] } } as never);
  }, 60_000);

  it('records exactly one entry per admin write, with its action, target, before and after', async () => {
    // An address blocked for failed authentications, for the unblock to lift.
    for (let i = 0; i < 4; i++)
      await fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer tgk_wrong-${i}`, 'x-forwarded-for': '10.9.8.7' },
      });
    for (const route of ROUTES) {
      const before = await allEntries(proxy);
      const answer = await admin(proxy, route.method, route.path, route.body);
      expect({ route: route.route, path: route.path, status: answer.status }).toEqual({
        route: route.route,
        path: route.path,
        status: route.status,
      });
      const after = await allEntries(proxy);
      const added = after.slice(0, after.length - before.length);
      expect(added.map((entry) => `${entry.method} ${entry.path}`)).toEqual([`${route.method} ${route.path}`]);
      const [entry] = added;
      expect(entry).toMatchObject({
        actor: 'admin key',
        role: 'admin',
        via: 'admin-key',
        address: '127.0.0.1',
        action: route.action,
        target: route.target,
        outcome: 'done',
        status: route.status,
      });
      expect(Date.parse(entry!.at)).toBeGreaterThan(Date.now() - 60_000);
      route.check(entry!);
      driven.set(route.route, entry!);
    }
    // No secret reached the trail: neither a key's secret nor its hash.
    const text = JSON.stringify(await allEntries(proxy));
    expect(text).not.toMatch(/tgk_|sha256/);
  }, 60_000);

  it('covers every mutating route of the admin API and the dashboard', () => {
    const app = proxy.app as unknown as { router: { stack: Layer[] } };
    const routes = mutatingRoutes(app.router.stack);
    const expected = new Set([...ROUTES.map((route) => route.route), ...Object.keys(NOT_ADMIN_WRITES)]);
    const admins = [...routes].filter((route) => / \/(admin|dashboard)(\/|$)/.test(route));
    expect(admins.length).toBeGreaterThanOrEqual(ROUTES.length);
    // A route here without a row in ROUTES is a write nobody checked is audited: add it to ROUTES.
    expect(admins.filter((route) => !expected.has(route)).sort()).toEqual([]);
    expect([...expected].filter((route) => !admins.includes(route)).sort()).toEqual([]);
  });

  it('filters by action family, target, actor and time, pages with a cursor, and exports CSV', async () => {
    const all = await allEntries(proxy);
    expect(all.length).toBe(ROUTES.length);
    const keys = await allEntries(proxy, 'action=key');
    expect(keys.map((entry) => entry.action).sort()).toEqual(
      all
        .filter((entry) => entry.action.startsWith('key.'))
        .map((entry) => entry.action)
        .sort(),
    );
    expect((await allEntries(proxy, 'action=key.rotate')).map((entry) => entry.target)).toEqual([
      'key:d-audit',
      'key:k-audit',
    ]);
    // Top-up, reset and repair through the admin API; top-up and reset through the dashboard.
    expect((await allEntries(proxy, 'target=budget:global')).length).toBe(5);
    expect((await allEntries(proxy, 'actor=admin%20key')).length).toBe(all.length);
    expect((await allEntries(proxy, 'actor=someone')).length).toBe(0);
    const middle = all[Math.floor(all.length / 2)]!.at;
    const since = await allEntries(proxy, `since=${encodeURIComponent(middle)}`);
    const until = await allEntries(proxy, `until=${encodeURIComponent(middle)}`);
    expect(since.length + until.length).toBe(all.length);
    expect(since.every((entry) => entry.at >= middle) && until.every((entry) => entry.at < middle)).toBe(true);

    const paged: AuditEntry[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: AuditPage = await audit(proxy, `limit=4${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.entries.length).toBeLessThanOrEqual(4);
      paged.push(...page.entries);
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(Math.ceil(all.length / 4));
    expect(paged.map((entry) => entry.id)).toEqual(all.map((entry) => entry.id));

    const csv = await fetch(`${proxy.url}/admin/audit?format=csv&action=budget&limit=1000`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const lines = (await csv.text()).trimEnd().split('\n');
    expect(lines[0]).toBe('at,actor,role,via,address,action,target,outcome,status,method,path,before,after,id');
    expect(lines.length - 1).toBe(all.filter((entry) => entry.action.startsWith('budget.')).length);
    expect(lines[1]).toContain(',admin key,admin,admin-key,127.0.0.1,budget.');

    expect((await admin(proxy, 'GET', '/admin/audit?limit=0')).status).toBe(400);
    expect((await admin(proxy, 'GET', '/admin/audit?since=yesterday')).status).toBe(400);
  });

  it('has no route that changes or removes an entry, and its table refuses UPDATE, DELETE and TRUNCATE', async () => {
    const count = (await allEntries(proxy)).length;
    for (const method of ['PUT', 'PATCH', 'DELETE', 'POST'])
      expect((await admin(proxy, method, '/admin/audit', method === 'DELETE' ? undefined : {})).status).toBe(404);
    const after = await allEntries(proxy);
    // Each of those was itself an attempted write, recorded and refused; nothing before it changed.
    expect(after.length).toBe(count + 4);
    expect(after.slice(0, 4).every((entry) => entry.outcome === 'refused' && entry.action.startsWith('write.'))).toBe(
      true,
    );
    // The embedded ledger is this process's own while the gateway holds it: its table is tried below, on its own.
    if (!ledger.db) return;
    const name = auditTableName({ table: ledger.table! });
    await expect(ledger.db.query(`UPDATE ${name} SET actor = 'someone else'`)).rejects.toThrow(/append-only/);
    await expect(ledger.db.query(`DELETE FROM ${name}`)).rejects.toThrow(/append-only/);
    await expect(ledger.db.query(`TRUNCATE ${name}`)).rejects.toThrow(/append-only/);
  });

  it('sends each entry on the alert stream as audit.event', async () => {
    const events = await waitFor(() => {
      const audited = hook.deliveries
        .map((delivery) => JSON.parse(delivery.body) as { type: string; details?: AuditEntry })
        .filter((event) => event.type === 'audit.event');
      return audited.length >= ROUTES.length ? audited : undefined;
    }, 'the audit events');
    const rotation = events.find((event) => event.details?.id === driven.get('POST /admin/keys/:id/rotate')!.id);
    expect(rotation?.details).toMatchObject({ action: 'key.rotate', target: 'key:k-audit', actor: 'admin key' });
  });

  it('keeps the trail across a restart', async () => {
    const before = await allEntries(proxy);
    await proxy.close();
    proxy = await startProxy(config as never);
    expect((await allEntries(proxy)).map((entry) => entry.id)).toEqual(before.map((entry) => entry.id));
  }, 60_000);
});

describe('the audit table on PGlite', () => {
  it('refuses UPDATE and DELETE on its table', async () => {
    const db = openEmbeddedLedger(undefined, 'the audit test');
    try {
      const store = postgresAuditStore(db);
      const attempt = {
        id: randomUUID(),
        at: new Date().toISOString(),
        actor: 'admin key',
        role: 'admin' as const,
        via: 'admin-key',
        address: '127.0.0.1',
        method: 'POST',
        path: '/admin/keys',
        action: 'write.post',
        target: '/admin/keys',
      };
      await store.attempt(attempt);
      await store.conclude({
        id: attempt.id,
        finishedAt: new Date().toISOString(),
        action: 'key.create',
        target: 'key:x',
        status: 201,
        outcome: 'done',
        before: null,
        after: { id: 'x' },
      });
      await expect(db.query(`UPDATE ${auditTableName()} SET actor = 'x'`)).rejects.toThrow(/append-only/);
      await expect(db.query(`DELETE FROM ${auditTableName()}`)).rejects.toThrow(/append-only/);
      const page = await store.list({ limit: 10 });
      expect(page.entries).toEqual([
        expect.objectContaining({ action: 'key.create', target: 'key:x', after: { id: 'x' } }),
      ]);
    } finally {
      await db.close();
    }
  });
});

describe('a trail that cannot be written', () => {
  /** A store whose writes fail, as a database that went away does. */
  function failingStore(): AuditStore {
    const kept = memoryAuditStore();
    return {
      attempt: async () => {
        throw new Error('connection refused');
      },
      conclude: (conclusion) => kept.conclude(conclusion),
      list: (query) => kept.list(query),
    };
  }

  it('refuses the write with 503 and changes nothing', async () => {
    const guard = { authFailures: { max: 3, windowSeconds: 60, block: '5m' } };
    const proxy = await startProxy(baseConfig({ guard }) as never, { audit: failingStore() });
    try {
      const created = await admin(proxy, 'POST', '/admin/keys', { id: 'never' });
      expect(created.status).toBe(503);
      expect(asRecord(created.body.error)).toMatchObject({ code: 'service_unavailable' });
      const listed = await admin(proxy, 'GET', '/admin/keys');
      expect((listed.body.keys as { id: string }[]).map((key) => key.id)).toEqual(['app']);

      const [budget] = (await admin(proxy, 'GET', '/admin/budgets/tenant/acme')).body.budgets as Budget[];
      expect((await admin(proxy, 'POST', '/admin/budgets/tenant/acme/top-up', { usd: 5 })).status).toBe(503);
      expect((await admin(proxy, 'POST', '/dashboard/api/budgets/tenant/acme/top-up', { usd: 5 })).status).toBe(503);
      const [unchanged] = (await admin(proxy, 'GET', '/admin/budgets/tenant/acme')).body.budgets as Budget[];
      expect(unchanged!.creditNanoUsd ?? 0).toBe(budget!.creditNanoUsd ?? 0);
      expect((await admin(proxy, 'POST', '/admin/guard/keys/app/suspend')).status).toBe(503);
      // Reads still work: the trail guards writes only.
      expect((await admin(proxy, 'GET', '/admin/audit')).body).toEqual({ entries: [], nextCursor: null });
    } finally {
      await proxy.close();
    }
  });
});

describe('a config file reloaded', () => {
  it('is recorded as config.reload by the config file, with the keys before and after, and no hash', async () => {
    const proxy = await startProxy(baseConfig() as never);
    try {
      const file = path.join(dir, 'tollgate.json');
      const next = baseConfig({
        upstreams: MOCK_UPSTREAMS,
        keys: [
          { id: 'app', sha256: sha256Hex(appKey), tenant: 'acme' },
          { id: 'reloaded', sha256: sha256Hex(newApiKey()), tenant: 'acme' },
        ],
      });
      // The file as the gateway already serves it (what a start reads) changes no key: nothing is recorded.
      expect(proxy.app.reloadConfigFile(JSON.stringify(baseConfig({ upstreams: MOCK_UPSTREAMS })), file).status).toBe(
        'valid',
      );
      expect(await allEntries(proxy)).toEqual([]);
      expect(proxy.app.reloadConfigFile(JSON.stringify(next), file).status).toBe('valid');
      const [entry] = await allEntries(proxy);
      expect(entry).toMatchObject({
        actor: 'config file',
        role: 'admin',
        via: 'file-watch',
        address: 'local',
        action: 'config.reload',
        target: `file:${file}`,
        outcome: 'done',
        before: { keys: ['app'] },
        after: { status: 'valid', problems: [], keys: ['app', 'reloaded'] },
      });
      expect(JSON.stringify(entry)).not.toContain('sha256');
    } finally {
      await proxy.close();
    }
  });
});

describe('a price source refreshed', () => {
  it('is recorded as prices.refresh when a load changes the prices in use, not at the first load', async () => {
    const source = path.join(dir, 'prices.json');
    writeFileSync(source, priceFile(1, 2));
    const proxy = await startProxy(baseConfig({ prices: { source, refresh: 100 } }) as never);
    try {
      const first = await waitFor(async () => (await readPrices(proxy.url, adminKey)).loadedAt ?? undefined, 'a load');
      const before = (await readPrices(proxy.url, adminKey)).version;
      expect(first).toBeTruthy();
      expect(await allEntries(proxy)).toEqual([]);
      writeFileSync(source, priceFile(3, 4));
      const after = await waitFor(async () => {
        const { version } = await readPrices(proxy.url, adminKey);
        return version === before ? undefined : version;
      }, 'the new prices');
      const entries = await waitFor(async () => {
        const found = await allEntries(proxy, 'action=prices');
        return found.length > 0 ? found : undefined;
      }, 'the entry');
      expect(entries).toEqual([
        expect.objectContaining({
          actor: 'price source',
          via: 'price-refresh',
          action: 'prices.refresh',
          target: 'prices',
          outcome: 'done',
          before: { version: before },
          after: expect.objectContaining({ version: after, changed: 1 }),
        }),
      ]);
      expect((entries[0]!.after as { changes: { model: string }[] }).changes.map((change) => change.model)).toEqual([
        'gpt-4o-mini',
      ]);
    } finally {
      await proxy.close();
    }
  });
});
