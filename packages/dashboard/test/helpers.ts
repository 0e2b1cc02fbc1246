// Test helpers: a real app with the dashboard, an API guarded by the same key store, and a ledger on PGlite or PostgreSQL.
import { afterAll, beforeAll } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Express } from 'express';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard } from '@tollgate/budget';
import { apiErrorHandler, createMemoryStores, getContext } from '@tollgate/core';
import type { ApiKeyRecord, TollgateStores, UsageRecord } from '@tollgate/core';
import { dashboard } from '@tollgate/dashboard';
import type { DashboardOptions } from '@tollgate/dashboard';
import { insertUsageRecords, migrateUsageLedger } from '@tollgate/metering';
import type { LedgerLocation, Queryable } from '@tollgate/metering';
import type { Test } from 'supertest';

/** Debian's Chromium, as CI installs it (.ci/run), driven by playwright-core: no browser download. */
export const CHROMIUM = {
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
};

export const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export type LedgerKind = 'PGlite' | 'PostgreSQL';
export const LEDGER_KINDS: LedgerKind[] = ['PGlite', 'PostgreSQL'];

/** A database for the tests of one file: PGlite in memory, or a pool on the test PostgreSQL. */
export interface LedgerDatabase {
  db: Queryable;
  /** A new, migrated table of the test's own (dropped at `close`). */
  table(): Promise<LedgerLocation>;
  close(): Promise<void>;
}

export async function openLedgerDatabase(kind: LedgerKind): Promise<LedgerDatabase> {
  const db: Queryable & { close?(): Promise<void>; end?(): Promise<void> } = kind === 'PGlite' ? new PGlite() : new pg.Pool({ connectionString: POSTGRES_URL, max: 3 });
  const tables: string[] = [];
  return {
    db,
    async table() {
      // Unique per test: other test runs share the PostgreSQL database.
      const location = { table: `tg_dash_${randomBytes(6).toString('hex')}` };
      tables.push(location.table);
      await migrateUsageLedger(db, location);
      return location;
    },
    async close() {
      for (const table of tables) await db.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes"`);
      if (kind === 'PGlite') await (db as PGlite).close();
      else await (db as pg.Pool).end();
    },
  };
}

let sequence = 0;

/** A usage record as the meter writes it, with overrides. */
export function usageRecord(overrides: Partial<UsageRecord> = {}): UsageRecord {
  sequence += 1;
  return {
    id: randomUUID(), requestId: `req-${sequence}`, timestamp: new Date().toISOString(),
    keyId: 'acme-app', tenantId: 'acme', userId: 'alice', feature: 'support-bot', route: '/v1/chat/completions',
    provider: 'openai', model: 'gpt-4o', requestedModel: 'gpt-4o',
    inputTokens: 1000, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 200, reasoningTokens: 0,
    costNanoUsd: 4_500_000, estimatedCostNanoUsd: 9_000_000, status: 200, stream: false, aborted: false, latencyMs: 800, usageSource: 'provider',
    ...overrides,
  };
}

export interface DashboardTestApp {
  app: Express;
  adminKey: string;
  stores: TollgateStores;
  guard: BudgetGuard;
  /** A key of tenant acme in the store, accepted by the API until revoked. */
  apiKey: string;
  apiKeyRecord: ApiKeyRecord;
  /** Charges a budget's current period (as settles would) by nano-USD. */
  charge(scope: 'tenant' | 'feature', id: string, nano: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * An app with the dashboard at /dashboard and `GET /v1/whoami` behind apiKeyAuth on the same key
 * store: what the dashboard changes there, the API sees.
 */
export async function createDashboardApp(options: { ledger?: Queryable; ledgerTable?: LedgerLocation; dashboard?: Partial<DashboardOptions> } = {}): Promise<DashboardTestApp> {
  const stores = createMemoryStores({ sweepIntervalMs: 0 });
  const guard = budgetGuard({
    ledger: stores.ledger,
    tenants: { acme: { usd: 10, period: 'month', softLimit: 0.8 }, globex: { usd: 100, period: 'month', softLimit: 0.8 } },
    features: { 'support-bot': { usd: 50, period: 'month' } },
    log: false,
  });
  const adminKey = generateApiKey();
  const apiKey = generateApiKey();
  const apiKeyRecord: ApiKeyRecord = { id: 'acme-app', sha256: hashApiKey(apiKey), tenantId: 'acme', userId: 'alice', scopes: ['chat'], createdAt: new Date(Date.now() - 86_400_000).toISOString() };
  await stores.keys.put(apiKeyRecord);
  const app = express();
  app.get('/v1/whoami', apiKeyAuth({ keys: stores.keys }), (req, res) => {
    res.json({ identity: getContext(req, res).identity });
  });
  app.use('/dashboard', dashboard({
    adminKeySha256: hashApiKey(adminKey),
    budgets: guard,
    keys: stores.keys,
    tenants: ['acme', 'globex'],
    ...(options.ledger ? { ledger: options.ledger, ledgerTable: options.ledgerTable } : {}),
    ...options.dashboard,
  }));
  app.use(apiErrorHandler());
  return {
    app,
    adminKey,
    stores,
    guard,
    apiKey,
    apiKeyRecord,
    async charge(scope, id, nano) {
      const [status] = await guard.status({ scope, id });
      if (!status) throw new Error(`no ${scope} budget ${id}`);
      await stores.ledger.adjustSpent(status.key, nano, Date.parse(status.resetAt));
    },
    async close() {
      await guard.close();
      await stores.close();
    },
  };
}

export async function writeRecords(db: Queryable, location: LedgerLocation, records: UsageRecord[]): Promise<void> {
  await insertUsageRecords(db, records, location);
}

/** The session cookie and form token a browser gets from the sign-in page. */
export interface SignInForm {
  cookie: string;
  token: string;
}

export function cookieOf(setCookie: string[] | string | undefined, name: string): string | undefined {
  const list = Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : [];
  return list.find((line) => line.startsWith(`${name}=`));
}

export function hiddenField(html: string, name: string): string | undefined {
  return new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];
}

/** A request with a cookie header made of the `name=value` parts of Set-Cookie lines. */
export function withCookies(test: Test, ...setCookies: (string | undefined)[]): Test {
  const pairs = setCookies.filter((line): line is string => line !== undefined).map((line) => line.split(';')[0]);
  return pairs.length > 0 ? test.set('cookie', pairs.join('; ')) : test;
}

/** Listens on an ephemeral port of 127.0.0.1. */
export async function listen(app: Express): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** What a suite's dashboard reads: its ledger database and table, and the app over them. */
export interface LedgerDashboard {
  database: LedgerDatabase;
  location: LedgerLocation;
  subject: DashboardTestApp;
}

/**
 * A dashboard over a ledger of `kind` holding `records`, opened before the suite's tests and closed after
 * them. Its fields are set once `beforeAll` ran: read them inside tests and hooks.
 */
export function dashboardOverLedger(kind: LedgerKind, records: readonly UsageRecord[]): LedgerDashboard {
  const setup = {} as LedgerDashboard;
  beforeAll(async () => {
    setup.database = await openLedgerDatabase(kind);
    setup.location = await setup.database.table();
    await writeRecords(setup.database.db, setup.location, [...records]);
    setup.subject = await createDashboardApp({ ledger: setup.database.db, ledgerTable: setup.location });
  }, 60_000);
  afterAll(async () => {
    await setup.subject.close();
    await setup.database.close();
  });
  return setup;
}
