// The figures as Chromium renders them: provider errors without tollgate's refusals, a topped-up budget that adds up,
// no 1970 for a key without a creation date, and no page saying something is not built.
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { hashApiKey, keyRecordsFromConfig } from '@tollgate/auth';
import { dashboardInChromium, LEDGER_KINDS, refusalsAndProviderErrors } from './helpers.js';

/** Set to a folder to keep what the pages looked like (the tests read the same pages either way). */
const SCREENSHOTS = process.env.TOLLGATE_FIGURES_SCREENSHOTS;

/** `$12.50`, `-$0.000001`: nano-USD, exactly. */
function nanoOf(text: string): number {
  const match = /^(-?)\$(\d+)\.(\d{2,9})$/.exec(text.trim());
  if (!match) throw new Error(`not an amount: ${JSON.stringify(text)}`);
  return (match[1] ? -1 : 1) * (Number(match[2]) * 1e9 + Number(match[3]!.padEnd(9, '0')));
}

// A config entry without createdAt, as an operator writes one by hand.
const configKeys = keyRecordsFromConfig([{ id: 'hand-written', sha256: hashApiKey('by-hand'), scopes: ['chat'] }]);

describe.each(LEDGER_KINDS)('true figures in Chromium, ledger on %s', (kind) => {
  const setup = dashboardInChromium(kind, refusalsAndProviderErrors(Date.now()), { configKeys: () => configKeys });
  const open = async (where: string) => {
    await setup.page.goto(`${setup.url}${where}`);
    return setup.page;
  };
  const shoot = async (name: string) => {
    if (SCREENSHOTS) {
      await setup.page.screenshot({ path: path.join(SCREENSHOTS, `${kind}-${name}.png`), fullPage: true });
    }
  };

  it("counts as provider errors only the upstream's failures, not tollgate's own 429s and 403", async () => {
    const page = await open('/providers');
    const row = page.locator('tr[data-provider="openai"][data-model="gpt-4o"]');
    await expect(row.locator('[data-figure="refusals"]').innerText()).resolves.toBe('4');
    // Two of the five requests sent failed: the 502 and the provider's own 429.
    await expect(row.locator('[data-figure="provider-errors"]').innerText()).resolves.toBe('2 (40.0%)');
    await expect(page.locator('thead').innerText()).resolves.toMatch(/Refused by tollgate\s+Provider errors/);
    await shoot('providers');
  });

  it("shows a topped-up budget's spent, credit, held, remaining and cap, and they add up", async () => {
    // acme: a cap of $10; $3 spent, then $5 credited from the page.
    await setup.subject.charge('tenant', 'acme', 3_000_000_000);
    const page = await open('/tenants/acme');
    const card = page.locator('.budget[data-scope="tenant"][data-id="acme"]');
    await card.locator('input[name="usd"]').fill('5');
    await card.locator('button', { hasText: 'Top up' }).click();
    await page.waitForURL(`${setup.url}/tenants/acme`);
    await expect(page.locator('.notice').innerText()).resolves.toContain('Credited $5.00');
    const figure = async (name: string) => nanoOf(await card.locator(`[data-figure="${name}"] dd`).innerText());
    const names = ['spent', 'credit', 'held', 'remaining', 'cap'];
    const [spent, credit, held, remaining, cap] = await Promise.all(names.map(figure));
    // Spent stays the $3 spent: the top-up is credit, not spend taken back.
    expect([spent, credit, held, remaining, cap]).toEqual([3e9, 5e9, 0, 12e9, 10e9]);
    expect(spent! - credit! + held! + remaining!).toBe(cap);
    const sum = '$3.00 spent − $5.00 credit + $0.00 held + $12.00 remaining = $10.00 cap';
    await expect(card.locator('[data-figure="sum"] dd').innerText()).resolves.toBe(sum);
    const note = await page.locator('.budget-sum-note').innerText();
    expect(note).toContain('spent − credit + held + remaining = cap');
    // The sum sits inside its card: nothing spills over the edge.
    const cardBox = (await card.boundingBox())!;
    const sumBox = (await card.locator('[data-figure="sum"] dd').boundingBox())!;
    expect(sumBox.x + sumBox.width).toBeLessThanOrEqual(cardBox.x + cardBox.width);
    await shoot('tenant');

    // The overview: the bar's spent, cap and credit, and remaining, credit and held beside it.
    await open('/');
    const row = page.locator('tr[data-tenant="acme"]');
    const barText = (await row.locator('.bar').getAttribute('aria-valuetext'))!;
    const bar = /^(\$[\d.]+) of (\$[\d.]+) \+ (\$[\d.]+) credit/.exec(barText)!;
    const cell = async (name: string) => nanoOf(await row.locator(`[data-figure="${name}"]`).innerText());
    const [rowCredit, rowHeld, rowRemaining] = await Promise.all(['credit', 'held', 'remaining'].map(cell));
    expect(nanoOf(bar[1]!) - rowCredit! + rowHeld! + rowRemaining!).toBe(nanoOf(bar[2]!));
    expect([nanoOf(bar[1]!), rowCredit, nanoOf(bar[3]!)]).toEqual([3e9, 5e9, 5e9]);
    // The table still fits the page: the reset time, its last column, is in view.
    const resets = (await row.locator('td').last().boundingBox())!;
    expect(resets.x + resets.width).toBeLessThanOrEqual(1280);
    await shoot('overview');
  });

  it('never shows 1970 for a key without a creation date', async () => {
    const page = await open('/keys');
    // The seventh cell after the id: Created.
    await expect(page.locator('tr[data-key="hand-written"] td:nth-of-type(7)').innerText()).resolves.toBe('unknown');
    expect(await page.locator('body').innerText()).not.toContain('1970');
    expect(await page.content()).not.toContain('1970');
    await shoot('keys');
  });

  it('has no page that says something is not built yet, and ran without a script error', async () => {
    for (const where of ['/', '/tenants/acme', '/keys', '/requests', '/providers']) {
      const page = await open(where);
      expect(await page.locator('body').innerText()).not.toMatch(/not built yet/i);
    }
    await open('/keys');
    await expect(setup.page.locator('main').innerText()).resolves.toContain('403 key_suspended');
    expect(setup.problems).toEqual([]);
  });
});
