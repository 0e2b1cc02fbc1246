// A session budget (`sessionBudget` of a tier, tenant or key) through the gateway with the official SDKs, on memory and
// Redis stores: each agent session is capped on its own, at its end the last call fits and the next is refused in the
// API's own shape while the key's other sessions and its calls without a session go on; streams, two processes on one
// Redis, and a store that lost its data (rebuilt from PostgreSQL) keep the cap, the spend equal to the ledger's.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import pg from 'pg';
import { createMemoryStores } from '@tollgate/core';
import { runReportCommand } from '@tollgate/cli';
import { createMockProvider } from '@tollgate/providers/mock';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import {
  caught,
  deleteRedisPrefix,
  memoryAndRedisStores,
  newApiKey,
  sentUntilAnswered,
  sha256Hex,
  startProxy,
  startSharingGateways,
} from './helpers/proxy.js';
import type { OwnedStores, RunningProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const db = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
afterAll(() => db.end());
const agentKey = newApiKey();
const soloKey = newApiKey();
const adminKey = newApiKey();
const messages = [{ role: 'user' as const, content: 'Say hello.' }];
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-session-budget-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Each session of acme (through its tier) may spend $0.002 a day; the key without a tenant $0.001 of its own. */
const SESSION_LIMIT_NANO = 2_000_000;
const SOLO_LIMIT_NANO = 1_000_000;
/** Calls sent to a session at most before the test gives up waiting for its refusal. */
const MAX_CALLS = 200;

function configOf(table: string, usageLog: string): GatewayConfig {
  return {
    usageLog,
    postgresUrl: POSTGRES_URL,
    postgresTable: table,
    spool: path.join(dir, `${table}-spool`),
    adminKeySha256: sha256Hex(adminKey),
    tiers: { pro: { requestsPerMinute: 10_000, models: ['*'], sessionBudget: { usd: 0.002, period: 'day' } } },
    tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'day' } } },
    keys: [
      { id: 'agent-key', sha256: sha256Hex(agentKey), tenant: 'acme' },
      { id: 'solo-key', sha256: sha256Hex(soloKey), tier: 'pro', sessionBudget: { usd: 0.001, period: 'day' } },
    ],
  };
}

interface BudgetView {
  scope: string;
  id: string | null;
  spentNanoUsd: number;
  reservedNanoUsd: number;
  limitNanoUsd: number;
}

/** A session's budget as the operator sees it, asked again while the store is being rebuilt (503). */
async function sessionBudget(url: string, session: string, owner = 'tenant=acme'): Promise<BudgetView> {
  return sentUntilAnswered(async () => {
    const response = await fetch(`${url}/admin/budgets/session/${session}?${owner}`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    if (!response.ok) throw new Error(`GET budget: ${response.status}`);
    const { budgets } = (await response.json()) as { budgets: BudgetView[] };
    return budgets[0]!;
  });
}

/** What the PostgreSQL ledger recorded for a session, once every record of it is in (the spend settled). */
async function ledgerSpend(table: string, session: string): Promise<number> {
  const { rows } = await db.query<{ spent: string }>(
    `SELECT coalesce(sum(cost_nano_usd), 0) AS spent FROM "${table}" WHERE session = $1`,
    [session],
  );
  return Number(rows[0]!.spent);
}

/** What the ledger recorded for tenant acme, every session's and every call's without a session. */
async function tenantLedgerSpend(table: string): Promise<number> {
  const { rows } = await db.query<{ spent: string }>(
    `SELECT coalesce(sum(cost_nano_usd), 0) AS spent FROM "${table}" WHERE tenant_id = 'acme'`,
  );
  return Number(rows[0]!.spent);
}

/** The tenant's budget as the operator sees it. */
async function tenantBudget(url: string): Promise<BudgetView> {
  const response = await fetch(`${url}/admin/budgets/tenant/acme`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  return ((await response.json()) as { budgets: BudgetView[] }).budgets[0]!;
}

/**
 * A budget's view once nothing is held and its spend is the ledger's: the blocks a process held go back within their
 * age, later on a busy machine (about 5 s at most, then the last view, for the test's own expectations to judge).
 */
async function settledView(view: () => Promise<BudgetView>, ledger: () => Promise<number>): Promise<BudgetView> {
  let seen = await view();
  for (let i = 0; i < 50; i++) {
    if (seen.reservedNanoUsd === 0 && seen.spentNanoUsd === (await ledger())) return seen;
    await new Promise((resolve) => setTimeout(resolve, 100));
    seen = await view();
  }
  return seen;
}

/** Blocks of a budget (Redis stores) go back within their age, a second in these tests, and a little more. */
const BLOCKS_BACK_MS = 1_300;

/**
 * Sends `call` until the session's money is spent (at most MAX_CALLS): a refusal because the rest is held in flight (a
 * process's block, `x-should-retry: true`) is waited out, the calls go on; the calls served and the final refusal.
 */
async function untilSpent(call: (n: number) => Promise<unknown>): Promise<{ served: number; refusal: unknown }> {
  let served = 0;
  for (let n = 0; n < MAX_CALLS; n++) {
    try {
      await call(n);
      served++;
    } catch (refusal) {
      const headers = (refusal as { headers?: Headers }).headers;
      if (headers?.get('x-should-retry') !== 'true') return { served, refusal };
      await new Promise((resolve) => setTimeout(resolve, BLOCKS_BACK_MS));
    }
  }
  throw new Error(`the session was never refused in ${MAX_CALLS} calls`);
}

/** Waits for blocks to go back, so that a budget's reservations are only the calls in flight (none). */
const blocksBack = () => new Promise((resolve) => setTimeout(resolve, BLOCKS_BACK_MS));

/**
 * `untilSpent` until a round serves nothing once the blocks went back: on Redis a process may refuse while what a
 * block handed out is not settled yet (its settle gives back the difference a moment later).
 */
async function spendAll(call: (n: number) => Promise<unknown>): Promise<{ served: number; refusal: unknown }> {
  let served = 0;
  for (;;) {
    const round = await untilSpent(call);
    served += round.served;
    if (round.served === 0) return { served, refusal: round.refusal };
    await blocksBack();
  }
}

/** The store's answer once its spend is rebuilt: a 503 (SpendNotRebuiltError) is asked again, anything else kept. */
async function afterRebuild<T>(send: () => Promise<T>): Promise<T | unknown> {
  return sentUntilAnswered(async () => {
    try {
      return await send();
    } catch (error) {
      if ((error as { status?: number }).status === 503) throw error;
      return error;
    }
  });
}

describe.each(memoryAndRedisStores('session-budget'))('session budgets on %s stores', (kind, storesFor) => {
  let owned: OwnedStores;
  let proxy: RunningProxy;
  const table = `tg_sessbudget_${kind.toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const config = configOf(table, path.join(dir, `${kind}.jsonl`));
  const mock = createMockProvider();
  const run = randomBytes(4).toString('hex');
  const claude = (url: string, session?: string, key = agentKey) =>
    new Anthropic({
      apiKey: key,
      baseURL: url,
      maxRetries: 0,
      defaultHeaders: session === undefined ? {} : { 'x-claude-code-session-id': session },
    });
  const openai = (url: string, session: string) =>
    new OpenAI({ apiKey: agentKey, baseURL: `${url}/v1`, maxRetries: 0, defaultHeaders: { 'session-id': session } });
  const ask = (url: string, session?: string, key?: string) =>
    claude(url, session, key).messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, messages });

  beforeAll(async () => {
    owned = storesFor();
    proxy = await startProxy(config, { stores: owned.stores, mock });
    // Budgets answer once their spend is rebuilt from the SQL ledger at start (503 until then).
    await sentUntilAnswered(() => ask(proxy.url));
  });

  afterAll(async () => {
    await proxy.close();
    await owned.release();
    await db.query(
      `DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_credits"`,
    );
  });

  it("refuses a session at its budget's end in Anthropic's shape; the key's other sessions and unsessioned calls go on", async () => {
    const spent = `spent-${run}`;
    const { served, refusal } = await spendAll(() => ask(proxy.url, spent));
    expect(served).toBeGreaterThan(2);
    expect(refusal).toBeInstanceOf(Anthropic.RateLimitError);
    const body = (refusal as InstanceType<typeof Anthropic.RateLimitError>).error as {
      type: string;
      error: { type: string; code: string; message: string };
    };
    expect(body).toMatchObject({ error: { code: 'insufficient_quota' } });
    expect(body.error.message).toContain(`session ${spent} of tenant acme`);
    expect((refusal as InstanceType<typeof Anthropic.RateLimitError>).headers.get('x-should-retry')).toBe('false');
    // Refused again: spent, not held.
    await blocksBack();
    expect(await caught(ask(proxy.url, spent))).toBeInstanceOf(Anthropic.RateLimitError);
    // The same key's other session and its calls without a session are served.
    await expect(ask(proxy.url, `other-${run}`)).resolves.toMatchObject({ type: 'message' });
    await expect(ask(proxy.url)).resolves.toMatchObject({ type: 'message' });

    await proxy.app.flushUsage();
    await blocksBack();
    const view = await settledView(
      () => sessionBudget(proxy.url, spent),
      () => ledgerSpend(table, spent),
    );
    expect(view).toMatchObject({ scope: 'session', id: spent, limitNanoUsd: SESSION_LIMIT_NANO, reservedNanoUsd: 0 });
    // The last call fit: the spend is at most the limit, and within one more call of it.
    expect(view.spentNanoUsd).toBeLessThanOrEqual(SESSION_LIMIT_NANO);
    expect(view.spentNanoUsd).toBeGreaterThan(SESSION_LIMIT_NANO - SESSION_LIMIT_NANO / served);
    // Money balances to the nano-USD: the store's spend is the ledger's for the session.
    expect(await ledgerSpend(table, spent)).toBe(view.spentNanoUsd);
  });

  it('caps a key without a tenant by its own sessionBudget, under the key', async () => {
    const session = `solo-${run}`;
    const { served, refusal } = await spendAll(() => ask(proxy.url, session, soloKey));
    expect(served).toBeGreaterThan(0);
    expect(refusal).toBeInstanceOf(Anthropic.RateLimitError);
    expect((refusal as Error).message).toContain(`session ${session} of key solo-key`);
    await proxy.app.flushUsage();
    await blocksBack();
    const spent = await ledgerSpend(table, session);
    expect(spent).toBeLessThanOrEqual(SOLO_LIMIT_NANO);
    expect(spent).toBeGreaterThan(0);
    // The operator names it by its key (?key=): the store's spend is the ledger's.
    const view = await settledView(
      () => sessionBudget(proxy.url, session, 'key=solo-key'),
      () => ledgerSpend(table, session),
    );
    expect(view).toMatchObject({
      scope: 'session',
      tenantId: null,
      limitNanoUsd: SOLO_LIMIT_NANO,
      spentNanoUsd: spent,
    });
    const unnamed = await fetch(`${proxy.url}/admin/budgets/session/${session}`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(unnamed.status).toBe(400);
  });

  it('stops streams at the session budget: the OpenAI SDK is refused in its shape, spend within the cap', async () => {
    const session = `stream-${run}`;
    const client = openai(proxy.url, session);
    const { served, refusal } = await spendAll(async () => {
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        max_tokens: 256,
        stream: true,
        messages,
      });
      for await (const chunk of stream) void chunk;
    });
    expect(served).toBeGreaterThan(0);
    expect(refusal).toBeInstanceOf(OpenAI.RateLimitError);
    expect((refusal as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('insufficient_quota');
    await proxy.app.flushUsage();
    await blocksBack();
    const view = await settledView(
      () => sessionBudget(proxy.url, session),
      () => ledgerSpend(table, session),
    );
    expect(view.spentNanoUsd).toBeLessThanOrEqual(SESSION_LIMIT_NANO);
    expect(view.reservedNanoUsd).toBe(0);
    expect(await ledgerSpend(table, session)).toBe(view.spentNanoUsd);
    // Every session's money and the calls' without one balance on the tenant to the nano-USD.
    const tenant = await settledView(
      () => tenantBudget(proxy.url),
      () => tenantLedgerSpend(table),
    );
    expect(tenant).toMatchObject({ spentNanoUsd: await tenantLedgerSpend(table), reservedNanoUsd: 0 });
  });

  it("shows each session's spend: tollgate report --by session, the dashboard's top sessions with their budgets", async () => {
    const session = `shown-${run}`;
    for (let i = 0; i < 3; i++) await ask(proxy.url, session);
    await proxy.app.flushUsage();
    const spent = await ledgerSpend(table, session);
    expect(spent).toBeGreaterThan(0);
    let stdout = '';
    const code = await runReportCommand(
      ['report', '--by', 'session', '--postgres', POSTGRES_URL, '--table', table, '--since', '1h', '--format', 'json'],
      { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: () => undefined } },
    );
    expect(code).toBe(0);
    const rows = JSON.parse(stdout) as { session: string | null; costUsd: number; requests: number }[];
    expect(rows.find((row) => row.session === session)).toMatchObject({ requests: 3, costUsd: spent / 1e9 });
    const page = await fetch(`${proxy.url}/dashboard/tenants/acme?format=json`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(page.status).toBe(200);
    const data = (await page.json()) as {
      bySession: { group: string | null; costNanoUsd: number }[];
      budgets: { scope: string; id: string | null; spentNanoUsd: number }[];
    };
    expect(data.bySession.length).toBeLessThanOrEqual(10);
    expect(data.bySession.find((row) => row.group === session)?.costNanoUsd).toBe(spent);
    expect(data.budgets.find((budget) => budget.scope === 'session' && budget.id === session)).toMatchObject({
      spentNanoUsd: spent,
    });
  });

  it("keeps a session's spend when the store loses it: rebuilt from the ledger, the session stays refused", async () => {
    const session = `kept-${run}`;
    await spendAll(() => ask(proxy.url, session));
    await proxy.app.flushUsage();
    await blocksBack();
    const before = await ledgerSpend(table, session);
    expect(before).toBeGreaterThan(0);
    if (kind === 'Redis') {
      // Redis lost its data (the test's own prefix: never the shared server's other keys).
      await deleteRedisPrefix((owned.stores as { prefix?: string }).prefix!);
    } else {
      // Memory stores start empty with their process: a restart on fresh ones.
      await proxy.close();
      await owned.stores.close();
      const stores = createMemoryStores();
      owned = { stores, release: () => stores.close() };
      proxy = await startProxy(config, { stores, mock });
    }
    // Answered once rebuilt (503 until then): the session is still spent, another session is served.
    const refused = await afterRebuild(() => ask(proxy.url, session));
    expect(refused).toBeInstanceOf(Anthropic.RateLimitError);
    expect((refused as Error).message).toContain(`session ${session} of tenant acme`);
    await expect(afterRebuild(() => ask(proxy.url, `after-${run}`))).resolves.toMatchObject({ type: 'message' });
    const view = await sessionBudget(proxy.url, session);
    expect(view.spentNanoUsd).toBe(before);
    expect(await ledgerSpend(table, session)).toBe(before);
    // The tenant's spend, rebuilt with its sessions', is the ledger's to the nano-USD.
    await proxy.app.flushUsage();
    await blocksBack();
    const tenant = await settledView(
      () => tenantBudget(proxy.url),
      () => tenantLedgerSpend(table),
    );
    expect(tenant.spentNanoUsd).toBe(await tenantLedgerSpend(table));
  });
});

describe('a session budget shared by two processes on one Redis', () => {
  const [, storesFor] = memoryAndRedisStores('session-budget-shared')[1]!;
  const table = `tg_sessbudget_shared_${randomBytes(4).toString('hex')}`;
  const config = configOf(table, path.join(dir, 'shared.jsonl'));
  let owned: OwnedStores;
  let shared: Awaited<ReturnType<typeof startSharingGateways>>;

  beforeAll(async () => {
    owned = storesFor();
    const mock = createMockProvider();
    shared = await startSharingGateways(
      'Redis',
      owned,
      () => config,
      () => ({ mock }),
    );
    for (const gateway of shared.gateways)
      await sentUntilAnswered(() =>
        new Anthropic({ apiKey: agentKey, baseURL: gateway.url, maxRetries: 0 }).messages.create({
          model: 'claude-haiku-4-5',
          max_tokens: 16,
          messages,
        }),
      );
  });

  afterAll(async () => {
    await shared.close();
    await owned.release();
    await db.query(
      `DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_credits"`,
    );
  });

  it('caps the session across both: calls alternate between them until both refuse it', async () => {
    const session = `shared-${randomBytes(4).toString('hex')}`;
    const [first, second] = shared.gateways as [RunningProxy, RunningProxy];
    const clientOf = (gateway: RunningProxy) =>
      new Anthropic({
        apiKey: agentKey,
        baseURL: gateway.url,
        maxRetries: 0,
        defaultHeaders: { 'x-claude-code-session-id': session },
      });
    const ask = (gateway: RunningProxy) =>
      clientOf(gateway).messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, messages });
    const { served, refusal } = await spendAll((n) => ask(n % 2 === 0 ? first : second));
    expect(served).toBeGreaterThan(2);
    expect(refusal).toBeInstanceOf(Anthropic.RateLimitError);
    // Spent, not held: once the blocks went back, both refuse it, the spend within the cap; another session passes.
    await blocksBack();
    for (const gateway of [first, second]) {
      const again = await caught(ask(gateway));
      expect(again).toBeInstanceOf(Anthropic.RateLimitError);
      expect((again as InstanceType<typeof Anthropic.RateLimitError>).headers.get('x-should-retry')).toBe('false');
    }
    await expect(
      new Anthropic({ apiKey: agentKey, baseURL: second.url, maxRetries: 0 }).messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 16,
        messages,
        metadata: { user_id: JSON.stringify({ session_id: `${session}-next` }) },
      }),
    ).resolves.toMatchObject({ type: 'message' });
    for (const gateway of [first, second]) await gateway.app.flushUsage();
    const view = await settledView(
      () => sessionBudget(first.url, session),
      () => ledgerSpend(table, session),
    );
    expect(view.spentNanoUsd).toBeLessThanOrEqual(SESSION_LIMIT_NANO);
    expect(await ledgerSpend(table, session)).toBe(view.spentNanoUsd);
  });
});
