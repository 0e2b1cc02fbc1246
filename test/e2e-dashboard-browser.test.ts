// The dashboard behind the proxy in Chromium at 1280 and 390 px: every page fits (no table clipped, no sideways page),
// Requests are served calls with refusals apart, chart axes read true, money alike per column, times to the second;
// the quotas are the limiters' live counts on memory and Redis stores, and the README's screenshots are taken from it.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import pg from 'pg';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { createMemoryStores } from '@tollgate/core';
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import { migrateUsageLedger } from '@tollgate/metering';
import { insertUsageRecords } from '../packages/metering/src/postgres-ledger.js';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { CHROMIUM } from '../packages/dashboard/test/helpers.js';
import { fakeOnly } from './helpers/fake-clock.js';
import { newApiKey, redisTestStores, ROOT, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** The widths the issue names: a laptop, where nothing may hide behind a scroll, and a phone. */
const SCREENS = [
  { name: 'laptop', width: 1280, height: 800 },
  { name: 'phone', width: 390, height: 844 },
] as const;
const SCREEN = SCREENS[0];
const SHOTS = '/tmp/dashboard-shots';
const DOCS = path.join(ROOT, 'packages/dashboard/docs');
/** The screenshots' clock: every time on the pages, and every record, is read against it. */
const SCREENSHOT_NOW = Date.parse('2026-03-16T14:30:18.000Z');
const DAY = 86_400_000;
/** The span a month budget's forecast reads its rate over. */
const FORECAST_SPAN = 3_600_000;

// Names as long as real deployments give them: they must wrap or scroll, never push the page sideways.
const TENANT = 'northwind-traders-international-holdings-emea-production';
const OTHER = 'globex-corporation-research-and-development-division';
const KEY_ID = 'northwind-emea-production-customer-support-assistant-key-0001';
const SMALL_TENANT = 'acme';
const STORE_KEY_USER = 'customer-support-escalations-eu-west';
const REFUSALS = 7;
/** A time as the pages show it: UTC, to the second. */
const TIME_SHOWN = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/;
const MODELS = [
  'gpt-4o-mini',
  'gpt-4o',
  'gpt-4.1',
  'gpt-4.1-mini',
  'o3-mini',
  'o4-mini',
  'claude-3-5-haiku-20241022',
  'claude-sonnet-4-20250514',
  'claude-opus-4-1-20250805',
  'gemini-2.5-flash',
  'gemini-2.5-pro',
  'mistral-large-latest',
  'text-embedding-3-large',
  'llama-3.3-70b-instruct-turbo-with-a-very-long-deployment-name',
];

const keys = { support: newApiKey(), batch: newApiKey(), small: newApiKey() };
const adminKey = newApiKey();

/**
 * Monthly caps (USD) that the month's seeded spend so far puts past the soft limit (82%), well within (10%) and over
 * (114%), whatever the day of the month: the bars and alerts show each state.
 */
function capsFor(records: readonly UsageRecord[], now: number): Record<string, number> {
  const date = new Date(now);
  const monthStart = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
  const spent = (tenant: string) =>
    records
      .filter((record) => record.tenantId === tenant && Date.parse(record.timestamp) >= monthStart)
      .reduce((sum, record) => sum + record.costNanoUsd, 0) / 1e9;
  const cap = (tenant: string, used: number) => Math.max(0.01, Math.ceil((spent(tenant) / used) * 100) / 100);
  return { [TENANT]: cap(TENANT, 0.82), [OTHER]: cap(OTHER, 0.1), [SMALL_TENANT]: cap(SMALL_TENANT, 1.14) };
}

function proxyConfig(table: string, caps: Record<string, number>): GatewayConfig {
  return {
    adminKeySha256: sha256Hex(adminKey),
    postgresUrl: POSTGRES_URL,
    postgresTable: table,
    spool: false,
    global: { requestsPerMinute: 10_000 },
    tiers: {
      enterprise: {
        requestsPerMinute: 600,
        tokensPerMinute: 100_000,
        perKey: { requestsPerMinute: 120, tokensPerMinute: 40_000 },
        maxConcurrent: 8,
      },
      free: { requestsPerMinute: 20, tokensPerMinute: 10_000 },
    },
    tenants: {
      [TENANT]: { tier: 'enterprise', budget: { usd: caps[TENANT]!, period: 'month', softLimit: 0.8 } },
      [OTHER]: { tier: 'enterprise', budget: { usd: caps[OTHER]!, period: 'month', softLimit: 0.8 } },
      [SMALL_TENANT]: { budget: { usd: caps[SMALL_TENANT]!, period: 'month' } },
    },
    keys: [
      { id: KEY_ID, sha256: sha256Hex(keys.support), tenant: TENANT, user: 'support-bot-eu', feature: 'support' },
      {
        id: 'northwind-emea-production-nightly-batch-summaries-key-0002',
        sha256: sha256Hex(keys.batch),
        tenant: TENANT,
        user: 'nightly-batch',
        feature: 'summaries',
      },
      { id: 'acme-web', sha256: sha256Hex(keys.small), tenant: SMALL_TENANT, user: 'alice', feature: 'chat' },
    ],
  } as GatewayConfig;
}

function providerOf(model: string): string {
  if (model.startsWith('claude')) return 'anthropic';
  if (model.startsWith('gemini')) return 'gemini';
  if (model.startsWith('mistral')) return 'mistral';
  if (model.startsWith('llama')) return 'together-ai-us-east-dedicated-endpoint';
  return 'openai';
}

/** A month of usage by every model, the same on every run (no random numbers): the screenshots must not churn. */
function seededRecords(now: number): UsageRecord[] {
  const records: UsageRecord[] = [];
  let n = 0;
  for (let day = 0; day < 30; day++) {
    for (let m = 0; m < MODELS.length; m++) {
      for (const [tenantId, keyId, share] of [
        [TENANT, KEY_ID, 3],
        [OTHER, 'globex-rnd-experiments-notebook-key', 2],
        [SMALL_TENANT, 'acme-web', 1],
      ] as const) {
        if ((day + m) % (4 - share) !== 0) continue;
        n++;
        const inputTokens = 800 + ((n * 37) % 1_900);
        const outputTokens = 120 + ((n * 53) % 700);
        const failed = n % 23 === 0;
        records.push({
          id: `seed-${n}`,
          requestId: `seed-request-${n}`,
          timestamp: new Date(now - day * DAY - ((n * 7_919) % (20 * 3_600_000)) - 60_000).toISOString(),
          keyId,
          tenantId,
          userId: tenantId === SMALL_TENANT ? 'alice' : `analyst-${(n % 4) + 1}@${tenantId}.example.com`,
          feature: ['support', 'summaries', 'search', 'translation'][n % 4]!,
          route: '/v1/chat/completions',
          provider: providerOf(MODELS[m]!),
          model: MODELS[m]!,
          requestedModel: MODELS[m]!,
          inputTokens: failed ? 0 : inputTokens,
          cachedInputTokens: n % 5 === 0 ? 400 : 0,
          cacheWriteTokens: 0,
          outputTokens: failed ? 0 : outputTokens,
          reasoningTokens: 0,
          costNanoUsd: failed ? 0 : (inputTokens * 2_500 + outputTokens * 10_000) * share,
          estimatedCostNanoUsd: (inputTokens * 2_500 + outputTokens * 20_000) * share,
          status: failed ? 502 : 200,
          stream: n % 3 === 0,
          aborted: false,
          latencyMs: 300 + ((n * 131) % 2_400),
          usageSource: failed ? 'counted' : 'provider',
        });
      }
    }
  }
  // Requests tollgate refused itself (the tenant over its request limit): no provider saw them, they cost nothing.
  for (let i = 0; i < REFUSALS; i++)
    records.push({
      ...records[0]!,
      id: `seed-refused-${i}`,
      requestId: `seed-refused-request-${i}`,
      timestamp: new Date(now - i * 3_600_000 - 120_000).toISOString(),
      tenantId: TENANT,
      keyId: KEY_ID,
      inputTokens: 0,
      cachedInputTokens: 0,
      outputTokens: 0,
      costNanoUsd: 0,
      status: 429,
      refusedBy: 'requests',
      latencyMs: 1,
      usageSource: 'counted',
    });
  return records;
}

/** What the Overview's tenant row should count this month: the calls served, and tollgate's refusals apart. */
function monthCounts(records: readonly UsageRecord[], tenant: string, now: number) {
  const date = new Date(now);
  const monthStart = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
  const month = records.filter((record) => record.tenantId === tenant && Date.parse(record.timestamp) >= monthStart);
  const refusals = month.filter((record) => record.refusedBy !== undefined).length;
  return { served: month.length - refusals, refusals };
}

/**
 * The number of decimals of every amount in each column of each table, where a column shows more than one: money reads
 * alike from row to row (one rule, `moneyColumn` or `exactMoney` over the whole column).
 */
async function moneyDecimalsByColumn(page: Page): Promise<Record<string, number[]>> {
  const cells = await page.locator('section.table table').evaluateAll((tables) =>
    tables.map((table) => {
      // Typed by hand: the tests compile without the DOM library.
      const rows = (
        table as unknown as { querySelectorAll(s: string): { children: { textContent: string }[] }[] }
      ).querySelectorAll('tbody tr');
      return [...rows].map((row) => [...row.children].map((cell) => cell.textContent));
    }),
  );
  const columns: Record<string, number[]> = {};
  cells.forEach((rows, t) =>
    rows.forEach((row) =>
      row.forEach((text, c) => {
        for (const [, decimals] of text.matchAll(/\$\d[\d,]*\.(\d+)/g))
          (columns[`table ${t}, column ${c}`] ??= []).push(decimals!.length);
      }),
    ),
  );
  return columns;
}

/** Tables that overflow what the reader sees of them: wider than their scroll container shows, with no scroll container. */
async function layoutProblems(
  page: Page,
  boxesMayScroll: boolean,
): Promise<{ scrollWidth: number; problems: string[] }> {
  return page.evaluate((boxesMayScroll) => {
    // Typed by hand: the tests compile without the DOM library.
    interface Box {
      left: number;
      right: number;
    }
    interface Element {
      tagName: string;
      textContent: string | null;
      parentElement: Element | null;
      scrollWidth: number;
      clientWidth: number;
      getBoundingClientRect(): Box;
      querySelectorAll(selector: string): Element[];
    }
    const doc = (globalThis as unknown as { document: Element & { documentElement: Element } }).document;
    const style = (globalThis as unknown as { getComputedStyle(e: Element): { overflowX: string } }).getComputedStyle;
    const viewport = doc.documentElement.clientWidth;
    const problems: string[] = [];
    const name = (e: Element) => `${e.tagName} "${(e.textContent ?? '').trim().slice(0, 40)}"`;
    for (const table of doc.querySelectorAll('table')) {
      let box: Element | null = table.parentElement;
      while (box && !['auto', 'scroll'].includes(style(box).overflowX)) box = box.parentElement;
      const visible = box ? box.getBoundingClientRect() : { left: 0, right: viewport };
      if (visible.left < 0 || visible.right > viewport + 0.5)
        problems.push(
          `the box of the table under ${name(table)} runs past the screen: ${visible.left}-${visible.right}`,
        );
      // On a laptop nothing hides behind a scroll: names wrap, long ids break (a phone scrolls within the box).
      if (box && !boxesMayScroll && box.scrollWidth > box.clientWidth + 1)
        problems.push(`the table under ${name(table)} needs scrolling: ${box.scrollWidth} in ${box.clientWidth}`);
      // Without a scroll container, every cell must be within the screen.
      for (const cell of table.querySelectorAll('th, td')) {
        if (cell.scrollWidth > cell.clientWidth + 1) problems.push(`${name(cell)} overflows its cell`);
        if (!box && cell.getBoundingClientRect().right > viewport + 0.5) problems.push(`${name(cell)} is cut off`);
      }
    }
    return { scrollWidth: doc.documentElement.scrollWidth, problems };
  }, boxesMayScroll);
}

/**
 * Writes `png` to the README's `file` only when it differs meaningfully from the one there: another size, or more than
 * 0.2% of its pixels off by more than a little (fonts and anti-aliasing vary a little between machines and versions).
 * Compared in the browser itself: no image library.
 */
async function keepScreenshot(page: Page, file: string, png: Buffer): Promise<'kept' | 'written'> {
  if (existsSync(file)) {
    const differing = await page.evaluate(
      async ([before, after]) => {
        const g = globalThis as unknown as {
          createImageBitmap(blob: unknown): Promise<{ width: number; height: number }>;
          Blob: new (parts: unknown[], options: { type: string }) => unknown;
          OffscreenCanvas: new (
            w: number,
            h: number,
          ) => {
            getContext(kind: '2d'): {
              drawImage(image: unknown, x: number, y: number): void;
              getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
            };
          };
          atob(text: string): string;
        };
        const pixels = async (base64: string) => {
          const bytes = Uint8Array.from(g.atob(base64), (c) => c.charCodeAt(0));
          const image = await g.createImageBitmap(new g.Blob([bytes], { type: 'image/png' }));
          const context = new g.OffscreenCanvas(image.width, image.height).getContext('2d');
          context.drawImage(image, 0, 0);
          return {
            width: image.width,
            height: image.height,
            data: context.getImageData(0, 0, image.width, image.height).data,
          };
        };
        const [a, b] = [await pixels(before), await pixels(after)];
        if (a.width !== b.width || a.height !== b.height) return 1;
        let off = 0;
        for (let i = 0; i < a.data.length; i += 4) {
          const delta = Math.max(
            Math.abs(a.data[i]! - b.data[i]!),
            Math.abs(a.data[i + 1]! - b.data[i + 1]!),
            Math.abs(a.data[i + 2]! - b.data[i + 2]!),
          );
          if (delta > 48) off++;
        }
        return off / (a.data.length / 4);
      },
      [readFileSync(file).toString('base64'), png.toString('base64')] as const,
    );
    if (differing <= 0.002) return 'kept';
  }
  writeFileSync(file, png);
  return 'written';
}

/** The overview's data: every read of it is also a spend sample of the budgets it shows (their forecasts). */
async function overview(proxy: RunningProxy) {
  const answer = await fetch(`${proxy.url}/dashboard/api/overview`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  return (await answer.json()) as {
    tenants: { ledgerSpentNanoUsd: number; budget: { key: string; spentNanoUsd: number; resetAt: string } | null }[];
  };
}

/**
 * The budgets as a proxy that served the seeded month would hold them: each tenant's charged what the ledger has for it
 * this month. (On Redis the proxy rebuilt them from the ledger at start already; memory stores start empty.)
 */
async function chargeBudgetsToLedger(proxy: RunningProxy, stores: TollgateStores): Promise<void> {
  const { tenants } = await overview(proxy);
  for (const { ledgerSpentNanoUsd, budget } of tenants)
    if (budget && budget.spentNanoUsd < ledgerSpentNanoUsd)
      await stores.ledger.adjustSpent(budget.key, ledgerSpentNanoUsd - budget.spentNanoUsd, Date.parse(budget.resetAt));
}

interface Backend {
  stores: () => Promise<TollgateStores>;
  close: () => Promise<void>;
  /** Takes the README's screenshots: only where the clock is fixed (memory stores count time in this process). */
  screenshots: boolean;
}

function memoryBackend(): Backend {
  let stores: TollgateStores | undefined;
  return {
    stores: async () => (stores = createMemoryStores({ sweepIntervalMs: 0 })),
    close: async () => stores?.close(),
    screenshots: true,
  };
}

function redisBackend(): Backend {
  let redis: ReturnType<typeof redisTestStores> | undefined;
  return {
    stores: async () => (redis = redisTestStores('dashboard')).stores,
    close: async () => redis?.release(),
    screenshots: false,
  };
}

let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch(CHROMIUM);
}, 30_000);

afterAll(async () => {
  await browser?.close();
});

describe.each([
  ['memory', memoryBackend],
  ['Redis', redisBackend],
])('the dashboard behind the proxy, %s stores, in Chromium', (_name, makeBackend) => {
  const backend = makeBackend();
  const table = `tg_e2e_dash_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  let proxy: RunningProxy;
  let page: Page;
  const problems: string[] = [];
  /** Tokens the three requests of the support key used, as the provider reported them. */
  let tokensUsed = 0;
  /** When the first request was sent: token windows slide, so their count is whole only within its minute. */
  let firstRequestAt = 0;
  /** Every record in the ledger, the live requests' included, and the pages' now. */
  let ledger: UsageRecord[] = [];
  let pagesNow = 0;

  beforeAll(async () => {
    // The screenshots' pages read one fixed instant; only Date is faked, so timers and I/O run as usual.
    // The requests below are made a few seconds before it: a page reads up to its now, and a frozen clock would
    // leave records made at that very instant out.
    // With the clock fixed, the proxy starts an hour and a quarter before it, so that the budgets' forecasts have an
    // hour of spend samples to read a rate from: charged to the ledger, then sampled an hour before the pages (more
    // than a sample's gap, 10 minutes, after the first read).
    if (backend.screenshots) fakeOnly(['Date'], SCREENSHOT_NOW - FORECAST_SPAN - 15 * 60_000);
    const now = backend.screenshots ? SCREENSHOT_NOW : Date.now();
    await migrateUsageLedger(pool, { table });
    const records = seededRecords(now);
    await insertUsageRecords(pool, records, { table });
    const stores = await backend.stores();
    proxy = await startProxy(proxyConfig(table, capsFor(records, now)), { stores });
    await proxy.app.spendReady();
    await chargeBudgetsToLedger(proxy, stores);
    if (backend.screenshots) {
      jest.setSystemTime(SCREENSHOT_NOW - FORECAST_SPAN);
      await overview(proxy);
      jest.setSystemTime(SCREENSHOT_NOW - 5_000);
      await chargeBudgetsToLedger(proxy, stores);
    }
    firstRequestAt = Date.now();
    for (let i = 0; i < 3; i++) {
      const answer = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${keys.support}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Where is my parcel?' }] }),
      });
      expect(answer.status).toBe(200);
      const { usage } = (await answer.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
      tokensUsed += usage.prompt_tokens + usage.completion_tokens;
    }
    // acme is over its budget: tollgate refuses this one itself, and the ledger notes the refusal.
    const refused = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.small}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello?' }] }),
    });
    expect(refused.status).toBe(429);
    await proxy.app.flushUsage();
    if (backend.screenshots) jest.setSystemTime(SCREENSHOT_NOW);
    pagesNow = Date.now();
    const { rows } = await pool.query<{ tenant_id: string; ts: Date; refused_by: string | null }>(
      `SELECT tenant_id, ts, refused_by FROM "${table}"`,
    );
    ledger = rows.map(
      (row) =>
        ({
          tenantId: row.tenant_id,
          timestamp: row.ts.toISOString(),
          ...(row.refused_by ? { refusedBy: row.refused_by } : {}),
        }) as UsageRecord,
    );
    const context = await browser.newContext({ viewport: SCREEN, colorScheme: 'light' });
    page = await context.newPage();
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    await page.goto(`${proxy.url}/dashboard/login`);
    await page.fill('#admin-key', adminKey);
    await page.click('button[type="submit"]');
    await page.waitForURL(`${proxy.url}/dashboard/`);
    // A key made on the page, in the key store: its row has the Revoke and Rotate forms (config keys have none).
    await page.goto(`${proxy.url}/dashboard/keys`);
    await page.selectOption('#key-tenant', TENANT);
    await page.fill('#key-user', STORE_KEY_USER);
    // Its id named, not made with a random suffix: the README's screenshots must not churn.
    await page.fill('#key-id', `${TENANT}-${STORE_KEY_USER}`);
    await page.click('form.grid-form button[type="submit"]');
    await page.locator('#created-key').waitFor();
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await backend.close();
    await pool.query(
      `DROP TABLE IF EXISTS "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_audit", "${table}"`,
    );
    await pool.query(`DROP FUNCTION IF EXISTS "${table}_audit_append_only"()`);
    await pool.end();
    jest.useRealTimers();
  });

  const tenantPath = `/dashboard/tenants/${encodeURIComponent(TENANT)}?range=30d`;
  const pages = [
    ['overview', '/dashboard/', 'daily-spend'],
    ['tenants', '/dashboard/tenants', undefined],
    ['tenant', tenantPath, 'tenant-spend'],
    ['keys', '/dashboard/keys', undefined],
    ['requests', '/dashboard/requests', undefined],
    ['providers', '/dashboard/providers?range=30d', undefined],
    ['audit', '/dashboard/audit', undefined],
  ] as const;
  it.each(
    SCREENS.flatMap((screen) =>
      pages.map(([name, where, chart]) => [name, screen.width, screen, where, chart] as const),
    ),
  )(
    'the %s page fits a screen %i px wide: no sideways page, no table cut off',
    async (name, _width, screen, where, chart) => {
      await page.setViewportSize(screen);
      await page.goto(`${proxy.url}${where}`);
      if (chart) await page.locator(`[data-chart="${chart}"][data-drawn="true"] canvas`).waitFor();
      // Looked at by whoever changes the layout (TG_SHOTS=1): the whole page at each width.
      if (process.env.TG_SHOTS) await page.screenshot({ path: `${SHOTS}/${name}-${screen.width}.png`, fullPage: true });
      const layout = await layoutProblems(page, screen.name === 'phone');
      expect(layout.problems).toEqual([]);
      expect(layout.scrollWidth).toBeLessThanOrEqual(screen.width);
      expect(problems).toEqual([]);
    },
  );

  it("counts the Overview's Requests as calls served, and tollgate's own refusals apart, labelled", async () => {
    await page.goto(`${proxy.url}/dashboard/`);
    for (const tenant of [TENANT, SMALL_TENANT, OTHER]) {
      const { served, refusals } = monthCounts(ledger, tenant, pagesNow);
      const cell = page.locator(`tr[data-tenant="${tenant}"] td[data-requests]`);
      expect(Number(await cell.getAttribute('data-requests'))).toBe(served);
      const shown = (await cell.innerText()).replace(/\s+/g, ' ');
      expect(shown).toBe(refusals > 0 ? `${served.toLocaleString('en-US')} ${refusals} refused` : `${served}`);
    }
    // The seeded refusals, and the live one: both were counted apart.
    expect(monthCounts(ledger, TENANT, pagesNow).refusals).toBeGreaterThan(0);
    expect(monthCounts(ledger, SMALL_TENANT, pagesNow).refusals).toBeGreaterThanOrEqual(1);
    const { tenants } = (await (
      await fetch(`${proxy.url}/dashboard/api/overview`, { headers: { authorization: `Bearer ${adminKey}` } })
    ).json()) as { tenants: { id: string; requests: number; refusals: number }[] };
    // The tenant's page says the same of its range: the seeded refusals are hours old.
    await page.goto(`${proxy.url}${tenantPath}`);
    const summary = await page.locator('p.summary', { hasText: 'requests served' }).innerText();
    expect(summary).toContain(`requests served (${REFUSALS} refused by tollgate)`);
    const small = tenants.find((row) => row.id === SMALL_TENANT)!;
    expect({ requests: small.requests, refusals: small.refusals }).toEqual(
      (({ served, refusals }) => ({ requests: served, refusals }))(monthCounts(ledger, SMALL_TENANT, pagesNow)),
    );
  });

  const charts = [
    ['/dashboard/', 'daily-spend'],
    [tenantPath, 'tenant-spend'],
    [`/dashboard/tenants/${SMALL_TENANT}?range=30d`, 'tenant-spend'],
    [`/dashboard/tenants/${SMALL_TENANT}?range=24h`, 'tenant-spend'],
  ] as const;
  it.each(SCREENS.flatMap((screen) => charts.map(([where, chart]) => [where, screen.width, screen, chart] as const)))(
    "charts %s at %i px: the money axis's labels all differ, the time axis covers the whole range",
    async (where, _width, screen, chart) => {
      await page.setViewportSize(screen);
      await page.goto(`${proxy.url}${where}`);
      const box = page.locator(`[data-chart="${chart}"][data-drawn="true"]`);
      await box.locator('canvas').waitFor();
      const ticks = (await box.getAttribute('data-y-ticks'))!.split(' ');
      expect(ticks.length).toBeGreaterThan(2);
      expect(new Set(ticks).size).toBe(ticks.length);
      for (const tick of ticks) expect(tick).toMatch(/^\$\d+\.\d{2,}$/);
      // acme's hours cost a few tenths of a cent: in cents alone their labels would repeat ($0.01, $0.01).
      if (where.endsWith('24h')) {
        const cents = ticks.map((tick) => Number(tick.slice(1)).toFixed(2));
        expect(new Set(cents).size).toBeLessThan(cents.length);
      }
      const data = JSON.parse((await page.locator(`script#${chart}`).textContent())!) as { x: number[]; end: number };
      const bucket = data.x[1]! - data.x[0]!;
      // From the first bucket's start to the last one's end: the last day (or hour) is on the axis, now within it.
      expect(data.end).toBe(data.x[data.x.length - 1]! + bucket);
      expect(data.end * 1000).toBeGreaterThan(pagesNow);
      expect((await box.getAttribute('data-x-range'))!.split(' ').map(Number)).toEqual([data.x[0], data.end]);
      expect(problems).toEqual([]);
    },
  );

  // Keys and the audit trail show no money column.
  it.each(pages.filter(([name]) => name !== 'keys' && name !== 'audit').map(([name, where]) => [name, where]))(
    'reads money alike from row to row on the %s page: one number of decimals per column',
    async (_name, where) => {
      await page.goto(`${proxy.url}${where}`);
      const columns = await moneyDecimalsByColumn(page);
      expect(Object.keys(columns).length).toBeGreaterThan(0);
      for (const [column, decimals] of Object.entries(columns))
        expect({ column, decimals: [...new Set(decimals)] }).toEqual({ column, decimals: [decimals[0]] });
    },
  );

  it.each(SCREENS.map((screen) => [screen.width, screen] as const))(
    'fits the keys table in its box at %i px, its Rotate buttons shown and clickable, times to the second',
    async (_width, screen) => {
      await page.setViewportSize(screen);
      await page.goto(`${proxy.url}/dashboard/keys`);
      const rotate = page.getByRole('button', { name: /^Rotate / });
      expect(await rotate.count()).toBeGreaterThan(0);
      const box = page.locator('section.table .scroll').first();
      const fit = await box.evaluate((element) => {
        const e = element as unknown as { scrollWidth: number; clientWidth: number };
        return { scrollWidth: e.scrollWidth, clientWidth: e.clientWidth };
      });
      // A laptop shows the whole table; a phone scrolls it within its box, never the page.
      if (screen.name === 'laptop') expect(fit.scrollWidth).toBeLessThanOrEqual(fit.clientWidth);
      for (const button of await rotate.all()) {
        await button.scrollIntoViewIfNeeded();
        await expect(button.isVisible()).resolves.toBe(true);
        const [inner, outer] = [(await button.boundingBox())!, (await box.boundingBox())!];
        expect(inner.x).toBeGreaterThanOrEqual(outer.x);
        expect(inner.x + inner.width).toBeLessThanOrEqual(outer.x + outer.width);
        // Actionable: visible, stable, enabled and the one element a click there reaches (nothing clicked).
        await button.click({ trial: true });
      }
      const created = await page.locator('tr[data-key-state="active"] td time').first().innerText();
      expect(created).toMatch(TIME_SHOWN);
    },
  );

  it('lists the key made on the Keys page in the audit trail, filters it, and exports it', async () => {
    await page.setViewportSize(SCREEN);
    await page.goto(`${proxy.url}/dashboard/audit`);
    const row = page.locator('tr[data-action="key.create"]');
    expect(await row.count()).toBe(1);
    expect(await row.getAttribute('data-target')).toBe(`key:${TENANT}-${STORE_KEY_USER}`);
    expect(await row.getAttribute('data-outcome')).toBe('done');
    expect(await row.locator('td').nth(1).innerText()).toMatch(/^admin key\s+admin · dashboard-session$/);
    expect(await row.locator('time').innerText()).toMatch(TIME_SHOWN);
    if (process.env.TG_SHOTS) await page.screenshot({ path: `${SHOTS}/audit-entries-1280.png`, fullPage: true });
    // The filter form narrows the list; a family with nothing in it shows the empty note.
    await page.fill('input[name="action"]', 'budget');
    await page.click('form.filters button[type="submit"]');
    await page.waitForURL(/action=budget/);
    expect(await page.locator('tr[data-action]').count()).toBe(0);
    expect(await page.locator('section.table .empty').innerText()).toBe('No admin write matches.');
    // The export links carry the filters; the CSV is the session's to download.
    await page.fill('input[name="action"]', 'key');
    await page.click('form.filters button[type="submit"]');
    await page.waitForURL(/action=key/);
    const csvHref = await page.locator('.exports a', { hasText: 'CSV' }).getAttribute('href');
    expect(csvHref).toContain('action=key');
    const csv = await page.evaluate(async (href) => (await fetch(href!)).text(), csvHref);
    const lines = csv.trimEnd().split('\n');
    expect(lines[0]!.startsWith('at,actor,role,via,address,action,target')).toBe(true);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain(`,key.create,key:${TENANT}-${STORE_KEY_USER},done,`);
  });

  it("shows the tenant's live quotas and its key's: used of the limit after three requests", async () => {
    await page.goto(`${proxy.url}${tenantPath}`);
    const used = (quota: string, unit: string) =>
      page.locator(`tr[data-quota="${quota}"][data-unit="${unit}"] td[data-used]`).innerText();
    expect(await used(`tenant ${TENANT}`, 'requests')).toBe('3 / 600');
    expect(await used(`key ${KEY_ID}`, 'requests')).toBe('3 / 120');
    // Each token window starts on its key's own phase: the row's reset time ends the window now.
    for (const [quota, limit] of [
      [`tenant ${TENANT}`, '100,000'],
      [`key ${KEY_ID}`, '40,000'],
    ] as const) {
      const row = page.locator(`tr[data-quota="${quota}"][data-unit="tokens"]`);
      const text = await row.locator('td[data-used]').innerText();
      const windowStart = Date.parse((await row.locator('time').getAttribute('datetime'))!) - 60_000;
      expect(windowStart).toBeLessThanOrEqual(Date.now());
      if (windowStart <= firstRequestAt) expect(text).toBe(`${tokensUsed.toLocaleString('en-US')} / ${limit}`);
      // The window turned after the requests (real time, on Redis): they count in part, as the limiter weighs them.
      else expect(Number(text.split(' / ')[0]!.replace(/,/g, ''))).toBeLessThanOrEqual(tokensUsed);
    }
    expect(await used(`key ${KEY_ID}`, 'concurrency')).toBe('0 / 8');
    // The other key of the tenant made none; its window has not opened.
    const batch = 'key northwind-emea-production-nightly-batch-summaries-key-0002';
    expect(await used(batch, 'requests')).toBe('0 / 120');
    expect(await page.locator(`tr[data-quota="${batch}"][data-unit="requests"] td`).last().innerText()).toBe(
      'no window open',
    );
    const resets = page.locator(`tr[data-quota="tenant ${TENANT}"][data-unit="requests"] time`);
    expect(await resets.innerText()).toMatch(/^in (\d+ s|1 min)$/);
    // The overview: every tenant's, at its tier (acme has none of its own: the default tier, free), and the global.
    await page.goto(`${proxy.url}/dashboard/`);
    expect(await used(`tenant ${TENANT}`, 'requests')).toBe('3 / 600');
    expect(await used(`tenant ${SMALL_TENANT}`, 'requests')).toBe('0 / 20');
    expect(await used('global', 'requests')).toBe('3 / 10,000');
  });

  // Where the clock is fixed only: the samples of the last hour are the test's own.
  if (backend.screenshots)
    it("shows each budget's forecast beside it, flagged when it passes the cap plus credit", async () => {
      await page.setViewportSize(SCREEN);
      await page.goto(`${proxy.url}${tenantPath}`);
      const card = page.locator(`article.budget[data-scope="tenant"][data-id="${TENANT}"]`);
      const forecast = card.locator('[data-figure="forecast"]');
      expect(await forecast.textContent()).toMatch(/^on course for \$[\d,.]+ by 2026-04-01 00:00:00 UTC/);
      const nano = async (figure: string) =>
        Number(await card.locator(`[data-figure="${figure}"] [data-nano-usd]`).getAttribute('data-nano-usd'));
      const projected = Number(await forecast.getAttribute('data-nano-usd'));
      // The last hour's spend (the three requests among it) kept up to the month's end: more than is spent now.
      expect(projected).toBeGreaterThan((await nano('spent')) + (await nano('held')));
      const over = projected > (await nano('cap')) + (await nano('credit'));
      expect(await forecast.getAttribute('data-over')).toBe(String(over));
      expect((await forecast.textContent())!.endsWith('(over the cap)')).toBe(over);
      // The overview's tables show it under each budget's figures too.
      await page.goto(`${proxy.url}/dashboard/`);
      expect(await page.locator('td [data-figure="forecast"]').count()).toBeGreaterThan(0);
      if (process.env.TG_SHOTS) await page.screenshot({ path: `${SHOTS}/forecast-tenant.png`, fullPage: true });
      expect(problems).toEqual([]);
    });

  // Where the clock is fixed only: the same pixels on every run.
  if (backend.screenshots)
    it("takes the README's screenshots from these pages, and rewrites them only when they look different", async () => {
      const shots: [string, string, string][] = [
        ['overview.png', '/dashboard/', 'daily-spend'],
        ['tenant.png', tenantPath, 'tenant-spend'],
      ];
      await page.setViewportSize(SCREEN);
      for (const [file, where, chart] of shots) {
        await page.goto(`${proxy.url}${where}`);
        await page.locator(`[data-chart="${chart}"][data-drawn="true"] canvas`).waitFor();
        const png = await page.screenshot({ fullPage: true });
        expect(png.subarray(1, 4).toString()).toBe('PNG');
        await keepScreenshot(page, path.join(DOCS, file), png);
        // Whatever was kept is this page as drawn now, give or take a few pixels.
        expect(await keepScreenshot(page, path.join(DOCS, file), png)).toBe('kept');
      }
    }, 60_000);
});
