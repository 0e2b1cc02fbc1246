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
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { dashboard } from '@tollgate/dashboard';
import type { DashboardOptions } from '../src/options.js';
import { migrateUsageLedger } from '@tollgate/metering';
import { insertUsageRecords } from '../../metering/src/postgres-ledger.js';
import type { LedgerLocation, Queryable } from '@tollgate/metering';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import type { Test } from 'supertest';

/** Debian's Chromium, as CI installs it (.ci/run), driven by playwright-core: no browser download. */
export const CHROMIUM = {
  executablePath: '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
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
  const db: Queryable & { close?(): Promise<void>; end?(): Promise<void> } =
    kind === 'PGlite' ? new PGlite() : new pg.Pool({ connectionString: POSTGRES_URL, max: 3 });
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
      for (const table of tables) {
        await db.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
        await db.query(`DROP FUNCTION IF EXISTS "${table}_add_to_rollups"`);
      }
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
    id: randomUUID(),
    requestId: `req-${sequence}`,
    timestamp: new Date().toISOString(),
    keyId: 'acme-app',
    tenantId: 'acme',
    userId: 'alice',
    feature: 'support-bot',
    route: '/v1/chat/completions',
    provider: 'openai',
    model: 'gpt-4o',
    requestedModel: 'gpt-4o',
    inputTokens: 1000,
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: 200,
    reasoningTokens: 0,
    costNanoUsd: 4_500_000,
    estimatedCostNanoUsd: 9_000_000,
    status: 200,
    stream: false,
    aborted: false,
    latencyMs: 800,
    usageSource: 'provider',
    ...overrides,
  };
}

/** What tollgate refused itself (the provider never saw them) and what the provider failed, on one model. */
export function refusalsAndProviderErrors(now: number): UsageRecord[] {
  const at = (minutes: number) => new Date(now - minutes * 60_000).toISOString();
  const failed = { costNanoUsd: 0, inputTokens: 0, outputTokens: 0, usageSource: 'counted' as const };
  const refused = { ...failed, status: 429, latencyMs: 2 };
  return [
    usageRecord({ timestamp: at(1), latencyMs: 1000 }),
    usageRecord({ timestamp: at(2), latencyMs: 1000 }),
    usageRecord({ timestamp: at(3), latencyMs: 1000 }),
    // Tollgate's own: a request limit twice, a budget, a suspension by the guard.
    usageRecord({ ...refused, timestamp: at(4), refusedBy: 'requests' }),
    usageRecord({ ...refused, timestamp: at(5), refusedBy: 'requests' }),
    usageRecord({ ...refused, timestamp: at(6), refusedBy: 'budget' }),
    usageRecord({ ...refused, timestamp: at(7), status: 403, refusedBy: 'guard' }),
    // The provider's: an upstream that failed (502 upstream_error), and its own 429 passed on.
    usageRecord({ ...failed, timestamp: at(8), status: 502, latencyMs: 3000 }),
    usageRecord({ ...failed, timestamp: at(9), status: 429, latencyMs: 500 }),
  ];
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
export async function createDashboardApp(
  options: { ledger?: Queryable; ledgerTable?: LedgerLocation; dashboard?: Partial<DashboardOptions> } = {},
): Promise<DashboardTestApp> {
  const stores = createMemoryStores({ sweepIntervalMs: 0 });
  const guard = budgetGuard({
    ledger: stores.ledger,
    tenants: {
      acme: { usd: 10, period: 'month', softLimit: 0.8 },
      globex: { usd: 100, period: 'month', softLimit: 0.8 },
    },
    features: { 'support-bot': { usd: 50, period: 'month' } },
    log: false,
  });
  const adminKey = generateApiKey();
  const apiKey = generateApiKey();
  const apiKeyRecord: ApiKeyRecord = {
    id: 'acme-app',
    sha256: hashApiKey(apiKey),
    tenantId: 'acme',
    userId: 'alice',
    scopes: ['chat'],
    createdAt: new Date(Date.now() - 86_400_000).toISOString(),
  };
  await stores.keys.put(apiKeyRecord);
  const app = express();
  app.get('/v1/whoami', apiKeyAuth({ keys: stores.keys }), (req, res) => {
    res.json({ identity: getContext(req, res).identity });
  });
  app.use(
    '/dashboard',
    dashboard({
      adminKeySha256: hashApiKey(adminKey),
      budgets: guard,
      keys: stores.keys,
      tenants: ['acme', 'globex'],
      ...(options.ledger ? { ledger: options.ledger, ledgerTable: options.ledgerTable } : {}),
      ...options.dashboard,
    }),
  );
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
export function dashboardOverLedger(
  kind: LedgerKind,
  records: readonly UsageRecord[],
  dashboardOptions?: Partial<DashboardOptions>,
): LedgerDashboard {
  const setup = {} as LedgerDashboard;
  beforeAll(async () => {
    setup.database = await openLedgerDatabase(kind);
    setup.location = await setup.database.table();
    await writeRecords(setup.database.db, setup.location, [...records]);
    const ledger = { ledger: setup.database.db, ledgerTable: setup.location };
    setup.subject = await createDashboardApp({ ...ledger, dashboard: dashboardOptions });
  }, 60_000);
  afterAll(async () => {
    await setup.subject.close();
    await setup.database.close();
  });
  return setup;
}

/** A dashboard over a ledger (see `dashboardOverLedger`), served, with a Chromium page signed in to it. */
export interface DashboardInChromium extends LedgerDashboard {
  url: string;
  page: Page;
  /** What went wrong in the page: script errors, refused resources (a CSP violation, a missing asset). */
  problems: string[];
}

/**
 * `dashboardOverLedger` served on 127.0.0.1 and opened in Debian's Chromium, signed in with the admin
 * key through the sign-in form. Its fields are set once `beforeAll` ran: read them inside tests and hooks.
 */
export function dashboardInChromium(
  kind: LedgerKind,
  records: readonly UsageRecord[],
  dashboardOptions?: Partial<DashboardOptions>,
): DashboardInChromium {
  const setup = dashboardOverLedger(kind, records, dashboardOptions) as DashboardInChromium;
  let browser: Browser | undefined;
  let server: Awaited<ReturnType<typeof listen>> | undefined;
  beforeAll(async () => {
    browser = await chromium.launch(CHROMIUM);
    server = await listen(setup.subject.app);
    setup.url = `${server.url}/dashboard`;
    setup.problems = [];
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.on('pageerror', (error) => setup.problems.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') setup.problems.push(`console: ${message.text()}`);
    });
    await page.goto(`${setup.url}/login`);
    await page.fill('#admin-key', setup.subject.adminKey);
    await page.click('button[type="submit"]');
    await page.waitForURL(`${setup.url}/`);
    setup.page = page;
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    await browser?.close();
  });
  return setup;
}
