// The dashboard in a real browser (Debian's Chromium through playwright-core): sign in, charts drawn, a key revoked from the page, bars that turn.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chromium } from 'playwright-core';
import { hashApiKey } from '@tollgate/auth';
import type { Browser, Page } from 'playwright-core';
import { recordOutcome } from '@tollgate/metering';
import type { LedgerLocation } from '@tollgate/metering';
import {
  CHROMIUM,
  createDashboardApp,
  LEDGER_KINDS,
  listen,
  openLedgerDatabase,
  usageRecord,
  writeRecords,
} from './helpers.js';
import type { DashboardTestApp, LedgerDatabase } from './helpers.js';

const HOUR = 3_600_000;

/** Pixels of a chart's canvas in the colour of its first series: the line was drawn, not only the axes. */
async function seriesPixels(page: Page, chart: string): Promise<number> {
  const canvas = page.locator(`[data-chart="${chart}"][data-drawn="true"] canvas`);
  await canvas.waitFor();
  return canvas.evaluate((element) => {
    // Typed by hand: the tests compile without the DOM library.
    const canvas = element as unknown as {
      width: number;
      height: number;
      getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
    };
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let painted = 0;
    // #0072b2, the first colour of the palette.
    for (let i = 0; i < data.length; i += 4)
      if (
        Math.abs(data[i]! - 0) < 40 &&
        Math.abs(data[i + 1]! - 114) < 40 &&
        Math.abs(data[i + 2]! - 178) < 40 &&
        data[i + 3]! > 100
      )
        painted++;
    return painted;
  });
}

let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch(CHROMIUM);
}, 30_000);

afterAll(async () => {
  await browser?.close();
});

describe.each(LEDGER_KINDS)('the dashboard in Chromium, ledger on %s', (kind) => {
  let database: LedgerDatabase;
  let location: LedgerLocation;
  let subject: DashboardTestApp;
  let server: Awaited<ReturnType<typeof listen>>;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    database = await openLedgerDatabase(kind);
    location = await database.table();
    const now = Date.now();
    const records = [];
    // Three days of hourly calls: a line the chart must draw.
    for (let hour = 0; hour < 72; hour++) {
      records.push(
        usageRecord({
          timestamp: new Date(now - hour * HOUR).toISOString(),
          tenantId: 'acme',
          costNanoUsd: 20_000_000 + (hour % 12) * 5_000_000,
        }),
      );
      if (hour % 3 === 0)
        records.push(
          usageRecord({
            timestamp: new Date(now - hour * HOUR).toISOString(),
            tenantId: 'globex',
            keyId: 'globex-app',
            model: 'gpt-4o-mini',
            costNanoUsd: 4_000_000,
          }),
        );
    }
    // Requests that led to outcomes: one resolved ticket (one request), one sale (a conversation of two requests).
    // The ticket's call also had cached input, billed at the cached price: a prompt-cache saving.
    records.push(
      usageRecord({
        requestId: 'ticket-1',
        tenantId: 'acme',
        feature: 'support-bot',
        costNanoUsd: 30_000_000,
        savedNanoUsd: 1_500_000_003,
      }),
    );
    records.push(
      usageRecord({
        requestId: 'sale-1',
        conversationId: 'sale-conversation',
        tenantId: 'acme',
        feature: 'sales',
        costNanoUsd: 10_000_000,
      }),
    );
    records.push(
      usageRecord({
        requestId: 'sale-2',
        conversationId: 'sale-conversation',
        tenantId: 'acme',
        feature: 'sales',
        costNanoUsd: 15_000_000,
      }),
    );
    // A response-cache hit: billed nothing, its answer's cost saved.
    records.push(
      usageRecord({
        requestId: 'cache-hit-1',
        tenantId: 'globex',
        keyId: 'globex-app',
        model: 'gpt-4o-mini',
        usageSource: 'cache',
        costNanoUsd: 0,
        savedNanoUsd: 2_345_678_901,
      }),
    );
    await writeRecords(database.db, location, records);
    await recordOutcome(database.db, { tenantId: 'acme', requestId: 'ticket-1', kind: 'resolved' }, location);
    await recordOutcome(
      database.db,
      { tenantId: 'acme', conversationId: 'sale-conversation', kind: 'converted', valueNanoUsd: 50_000_000_000 },
      location,
    );
    subject = await createDashboardApp({ ledger: database.db, ledgerTable: location });
    await subject.charge('tenant', 'acme', 8_500_000_000); // 85% of $10: past the 80% soft limit
    await subject.charge('tenant', 'globex', 20_000_000_000); // 20% of $100
    server = await listen(subject.app);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    // Any script error or refused resource (a CSP violation, a missing asset) fails the run below.
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('dialog', (dialog) => void dialog.accept());
  }, 60_000);

  afterAll(async () => {
    await page?.context().close();
    await server?.close();
    await subject?.close();
    await database?.close();
  });

  it('shows a wrong key nothing, then signs in with the right one', async () => {
    await page.goto(`${server.url}/dashboard/keys`);
    expect(new URL(page.url()).pathname).toBe('/dashboard/login');
    await page.fill('#admin-key', 'tgk_definitely-not-it');
    await page.click('button[type="submit"]');
    await expect(page.locator('#sign-in-error').textContent()).resolves.toBe('That is not the admin key.');
    const content = await page.content();
    expect(content).not.toContain('acme');
    expect(content).not.toContain('globex');
    expect((await page.context().cookies()).map((cookie) => cookie.name)).not.toContain('tg_dashboard_session');

    await page.fill('#admin-key', subject.adminKey);
    await page.click('button[type="submit"]');
    await page.waitForURL(`${server.url}/dashboard/keys`);
    const session = (await page.context().cookies()).find((cookie) => cookie.name === 'tg_dashboard_session')!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/dashboard' });
    expect(await page.evaluate('document.cookie')).toBe('');
    // The wrong key's answer was a 401, which the browser logs: expected, and the only one allowed.
    expect(problems).toEqual([
      'console: Failed to load resource: the server responded with a status of 401 (Unauthorized)',
    ]);
    problems.length = 0;
  });

  it('shows the tenant past its soft limit so, and the other within budget', async () => {
    await page.goto(`${server.url}/dashboard/`);
    const acme = page.locator('tr[data-tenant="acme"]');
    await expect(acme.getAttribute('data-state')).resolves.toBe('soft');
    await expect(acme.locator('.bar').getAttribute('aria-valuetext')).resolves.toBe(
      '$8.50 of $10.00 (85%), past its soft limit',
    );
    await expect(acme.locator('.bar-text').innerText()).resolves.toContain('soft limit');
    await expect(page.locator('tr[data-tenant="globex"]').getAttribute('data-state')).resolves.toBe('ok');
    // The two fills differ in colour: the state is seen, not only written.
    const fill = (tenant: string) =>
      page
        .locator(`tr[data-tenant="${tenant}"] .bar-fill`)
        .evaluate(
          (element) =>
            (globalThis as unknown as { getComputedStyle(node: unknown): { fill: string } }).getComputedStyle(element)
              .fill,
        );
    expect(await fill('acme')).not.toBe(await fill('globex'));
    await expect(page.locator('.alert--warning').first().innerText()).resolves.toContain(
      'acme budget is past its soft limit',
    );
  });

  it('shows cost per outcome per tenant and feature', async () => {
    await page.goto(`${server.url}/dashboard/`);
    const resolved = page.locator('tr[data-outcome-tenant="acme"][data-kind="resolved"]');
    await expect(resolved.locator('[data-cost-per-outcome]').getAttribute('data-cost-per-outcome')).resolves.toBe(
      '30000000',
    );
    await expect(resolved.innerText()).resolves.toMatch(/acme\s+resolved\s+1\s+1\s+\$0\.030\s+\$0\.030/);
    // The sale: $0.025 of requests for $50 of revenue.
    const sale = page.locator('tr[data-outcome-tenant="acme"][data-kind="converted"]');
    await expect(sale.innerText()).resolves.toMatch(/converted\s+1\s+2\s+\$0\.025\s+\$0\.025\s+\$50\.00\s+2000×/);
    await expect(
      page
        .locator('tr[data-outcome-feature="sales"][data-kind="converted"] [data-cost-per-outcome]')
        .getAttribute('data-cost-per-outcome'),
    ).resolves.toBe('25000000');
    await expect(page.locator('tr[data-outcome-feature="support-bot"][data-kind="resolved"]').count()).resolves.toBe(1);
  });

  it('shows what caching saved this month, in total and per tenant', async () => {
    await page.goto(`${server.url}/dashboard/`);
    // $1.500000003 + $2.345678901.
    await expect(page.locator('.savings strong').innerText()).resolves.toBe('$3.85');
    await expect(page.locator('.savings').innerText()).resolves.toContain('1 request answered from the response cache');
    await expect(page.locator('tr[data-tenant="globex"] [data-saved-nano-usd]').innerText()).resolves.toBe('$2.35');
    await expect(page.locator('tr[data-tenant="acme"] [data-saved-nano-usd]').innerText()).resolves.toBe('$1.50');
    await page.goto(`${server.url}/dashboard/tenants/globex?range=24h`);
    await expect(page.locator('.summary [data-saved-nano-usd]').innerText()).resolves.toBe('$2.35');
  });

  it('draws the spend charts from the ledger', async () => {
    await page.goto(`${server.url}/dashboard/`);
    expect(await seriesPixels(page, 'daily-spend')).toBeGreaterThan(50);
    await page.goto(`${server.url}/dashboard/tenants/acme?range=7d`);
    expect(await seriesPixels(page, 'tenant-spend')).toBeGreaterThan(200);
    await expect(page.locator('.budget[data-id="acme"] .bar').getAttribute('data-state')).resolves.toBe('soft');
  });

  it('revokes a key from the page, and the API refuses it at once', async () => {
    const before = await fetch(`${server.url}/v1/whoami`, { headers: { authorization: `Bearer ${subject.apiKey}` } });
    expect(before.status).toBe(200);
    await page.goto(`${server.url}/dashboard/keys`);
    await page.locator('tr[data-key="acme-app"] button', { hasText: 'Revoke' }).click();
    await page.waitForURL(`${server.url}/dashboard/keys`);
    await expect(page.locator('.notice').innerText()).resolves.toContain('Key acme-app is revoked');
    await expect(page.locator('tr[data-key="acme-app"]').getAttribute('data-key-state')).resolves.toBe('revoked');
    const after = await fetch(`${server.url}/v1/whoami`, { headers: { authorization: `Bearer ${subject.apiKey}` } });
    expect(after.status).toBe(401);
    expect((await subject.stores.keys.findById('acme-app'))!.disabled).toBe(true);
  });

  it('creates a key from the form and shows it once', async () => {
    await page.goto(`${server.url}/dashboard/keys`);
    await page.selectOption('#key-tenant', 'globex');
    await page.fill('#key-user', 'browser');
    await page.fill('#key-id', `globex-browser-${kind.toLowerCase()}`);
    await page.click('form[method="post"][action$="/keys"] button[type="submit"]');
    const key = await page.locator('#created-key').innerText();
    expect(key).toMatch(/^tgk_[0-9A-Za-z]{43}$/);
    const whoami = await fetch(`${server.url}/v1/whoami`, { headers: { authorization: `Bearer ${key}` } });
    expect(((await whoami.json()) as { identity: { tenantId: string } }).identity.tenantId).toBe('globex');
    await page.reload();
    expect(await page.locator('#created-key').count()).toBe(0);
  });

  it('pages through keys with the search box, Next and Previous', async () => {
    for (let i = 0; i < 120; i++)
      await subject.stores.keys.put({
        id: `paged-${kind.toLowerCase()}-${String(i).padStart(3, '0')}`,
        sha256: hashApiKey(`paged ${kind} ${i}`),
        tenantId: 'acme',
        scopes: [],
        createdAt: new Date().toISOString(),
      });
    await page.goto(`${server.url}/dashboard/keys`);
    await page.fill('#key-search', `paged-${kind.toLowerCase()}-`);
    await page.click('form[role="search"] button[type="submit"]');
    await page.waitForURL(/\/dashboard\/keys\?q=paged-/);
    expect(await page.locator('tr[data-key]').count()).toBe(100);
    await page.click('a[rel="next"]');
    await page.waitForURL(/after=/);
    expect(await page.locator('tr[data-key]').count()).toBe(20);
    await expect(page.locator('tr[data-key]').first().getAttribute('data-key')).resolves.toBe(
      `paged-${kind.toLowerCase()}-100`,
    );
    expect(await page.locator('a[rel="next"]').count()).toBe(0);
    await page.click('a[rel="prev"]');
    await page.waitForURL((url) => !url.search.includes('after='));
    await expect(page.locator('tr[data-key]').first().getAttribute('data-key')).resolves.toBe(
      `paged-${kind.toLowerCase()}-000`,
    );
  });

  it('works on a phone-sized screen and ran without a script error or a refused resource', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${server.url}/dashboard/`);
    // The bar is the first cell after the name, in view without scrolling the table.
    const box = await page.locator('tr[data-tenant="acme"] .bar').boundingBox();
    expect(box!.x + box!.width).toBeLessThanOrEqual(390 + 1);
    const overflow = await page.evaluate<number>(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    );
    expect(overflow).toBeLessThanOrEqual(0);
    await page.setViewportSize({ width: 1280, height: 900 });
    expect(problems).toEqual([]);
  });
});
