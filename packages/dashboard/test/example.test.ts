// The README's example runs as written: examples/embedded.ts serves a dashboard whose tenants' spend matches its ledger.
// TOLLGATE_SCREENSHOTS=1 also takes the README's screenshots (docs/overview.png, docs/tenant.png) from it.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chromium } from 'playwright-core';
import { generateApiKey } from '@tollgate/auth';
import { CHROMIUM } from './helpers.js';

const PACKAGE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = path.resolve(PACKAGE, '../..');
const adminKey = generateApiKey();
let child: ChildProcess;
let url: string;
let output = '';

beforeAll(async () => {
  child = spawn(
    process.execPath,
    ['--import', 'tsx', '--conditions=source', 'packages/dashboard/examples/embedded.ts'],
    {
      cwd: ROOT,
      env: { ...process.env, PORT: '0', ADMIN_KEY: adminKey },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the example did not start:\n${output}`)), 45_000);
    child.stdout!.on('data', () => {
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+\/dashboard)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the example exited with ${code}:\n${output}`));
    });
  });
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
});

describe('examples/embedded.ts', () => {
  it("serves the overview with each tenant's ledger spend equal to what its budget was charged", async () => {
    const answer = await fetch(`${url}/api/overview`, { headers: { authorization: `Bearer ${adminKey}` } });
    expect(answer.status).toBe(200);
    const overview = (await answer.json()) as {
      tenants: { id: string; ledgerSpentNanoUsd: number; budget: { spentNanoUsd: number } | null }[];
    };
    expect(overview.tenants.map((row) => row.id).sort()).toEqual(['acme', 'globex']);
    for (const row of overview.tenants) expect(row.budget!.spentNanoUsd).toBe(row.ledgerSpentNanoUsd);
    expect(output).toContain(`admin key: ${adminKey}`);
    expect((await fetch(`${url}/api/overview`)).status).toBe(401);
  });

  // The README's screenshots, drawn in Chromium on every run; TOLLGATE_SCREENSHOTS=1 writes them to docs/ for the README.
  it("draws the README's screenshots: the overview and a tenant page, charts drawn", async () => {
    const target = process.env.TOLLGATE_SCREENSHOTS
      ? path.join(PACKAGE, 'docs')
      : mkdtempSync(path.join(tmpdir(), 'tollgate-screenshots-'));
    const browser = await chromium.launch(CHROMIUM);
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
      await page.goto(`${url}/login`);
      await page.fill('#admin-key', adminKey);
      await page.click('button[type="submit"]');
      await page.locator('[data-chart="daily-spend"][data-drawn="true"] canvas').waitFor();
      await page.screenshot({ path: path.join(target, 'overview.png'), fullPage: true });
      await page.goto(`${url}/tenants/acme`);
      await page.locator('[data-chart="tenant-spend"][data-drawn="true"] canvas').waitFor();
      await page.screenshot({ path: path.join(target, 'tenant.png'), fullPage: true });
    } finally {
      await browser.close();
    }
    for (const name of ['overview.png', 'tenant.png']) {
      const png = readFileSync(path.join(target, name));
      // A PNG, and a page with something on it (a blank 1280-wide page compresses to a few KB).
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      expect(png.length).toBeGreaterThan(30_000);
    }
    if (!process.env.TOLLGATE_SCREENSHOTS) rmSync(target, { recursive: true, force: true });
  }, 60_000);
});
