// What the hold that follows a stream keeps on every store a deployment can choose (memory, Redis, Cluster, blocks,
// leases): an upstream that ignores its cap leaves every budget scope (tenant, key, end user, model, feature, global)
// at or under its limit, alone or from two processes at once; a refused extension ends the stream with its API's own
// ending; token windows count what was streamed, once. Through the official SDKs, against a real upstream on a port.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TollgateStores } from '@tollgate/core';
import type { GatewayConfig } from '../../packages/gateway/src/config/index.js';
import { startCapIgnoringUpstream } from '../helpers/cap-ignoring-upstream.js';
import type { FakeUpstream } from '../helpers/cap-ignoring-upstream.js';
import { newApiKey, readUsageLog, sha256Hex, startProxy, waitFor } from '../helpers/proxy.js';
import type { RunningProxy } from '../helpers/proxy.js';
import { CAP_ENDINGS, NATURAL_ENDINGS, streamThroughSdk, streamUntilRefused } from '../helpers/sdk-streams.js';
import type { SdkStream, StreamApi, StreamCall } from '../helpers/sdk-streams.js';

/** One backend the gateways share, and the layers the config puts over it. */
export interface StreamHoldBackend {
  /** The stores of one more process over the backend (memory: the one process's, shared). */
  open(): TollgateStores;
  /** The config's say on the layers over the stores: `redis.blocks`, `storeOutage`. */
  layers: Pick<GatewayConfig, 'redis' | 'storeOutage'>;
  cleanup(): Promise<void>;
}

const CAP = 20;
/** A budget that takes several cap-ignoring streams, and opens blocks at their default share (5% > 2 requests). */
const LIMIT_USD = 0.01;
/** A budget with room for one reservation and part of its first extension. */
const CUT_LIMIT_USD = 0.0004;
/** The global budget: room for every other test here, then run out by the last. */
const GLOBAL_LIMIT_USD = 0.1;
const nano = (usd: number) => Math.round(usd * 1e9);

/** A model of an upstream named openai, no tokenizer: its counts are not the provider's own, so its hold follows it. */
const HOUSE = 'house-model';
const CLAUDE = 'claude-haiku-4-5';
const GEMINI = 'gemini-2.5-flash';
const MODEL_OF: Record<StreamApi, string> = { chat: HOUSE, responses: HOUSE, messages: CLAUDE, gemini: GEMINI };
const APIS: StreamApi[] = ['chat', 'responses', 'messages', 'gemini'];

/** Where each scope's budget is read (`/admin/budgets/...`), and who streams against it. */
interface ScopeCase {
  scope: 'tenant' | 'key' | 'user' | 'model' | 'feature' | 'global';
  tenant: string;
  budgetPath: string;
  apis: StreamApi[];
}

const SCOPES: ScopeCase[] = [
  { scope: 'tenant', tenant: 'tight-tenant', budgetPath: 'tenant/tight-tenant', apis: APIS },
  { scope: 'key', tenant: 'tight-key', budgetPath: 'key/tight-key-key', apis: APIS },
  { scope: 'user', tenant: 'tight-user', budgetPath: 'user/ann?tenant=tight-user', apis: APIS },
  { scope: 'model', tenant: 'tight-model', budgetPath: `model/${CLAUDE}?tenant=tight-model`, apis: ['messages'] },
  { scope: 'feature', tenant: 'tight-feature', budgetPath: 'feature/drafting', apis: APIS },
];
const GLOBAL: ScopeCase = { scope: 'global', tenant: 'roomy', budgetPath: 'global', apis: APIS };
const TENANTS = [...SCOPES.map((c) => c.tenant), 'roomy', 'shared', 'windowed', ...APIS.map((api) => `cut-${api}`)];
/** The day's token window of the `windowed` tenant, as token limits name it (`<prefix><layer>:<slot>`). */
const WINDOW = { key: 'tg:tokens:tenant-day:tenant:windowed', windowMs: 86_400_000, slot: 'tenant:windowed' };

const budget = (usd: number) => ({ usd, period: 'day' as const });

function configOf(
  upstream: FakeUpstream,
  usageLog: string,
  adminKey: string,
  keys: Map<string, string>,
): GatewayConfig {
  const roomy = budget(100);
  return {
    usageLog,
    adminKeySha256: sha256Hex(adminKey),
    upstreams: {
      openai: { baseUrl: `${upstream.url}/v1` },
      anthropic: { baseUrl: upstream.url },
      google: { baseUrl: `${upstream.url}/v1beta` },
    },
    models: { [HOUSE]: { provider: 'openai', inputPerMTok: 1, outputPerMTok: 10, maxOutputTokens: 4096 } },
    tiers: {
      pro: { requestsPerMinute: 100_000, tokensPerMinute: 100_000_000, models: ['*'] },
      windowed: { requestsPerMinute: 100_000, tokensPerDay: 1_000_000, models: ['*'] },
    },
    tenants: {
      ...Object.fromEntries(TENANTS.map((tenant) => [tenant, { tier: 'pro', budget: roomy }])),
      'tight-tenant': { tier: 'pro', budget: budget(LIMIT_USD) },
      'tight-user': { tier: 'pro', budget: roomy, userBudget: budget(LIMIT_USD) },
      'tight-model': { tier: 'pro', budget: roomy, modelBudgets: { [CLAUDE]: budget(LIMIT_USD) } },
      shared: { tier: 'pro', budget: budget(LIMIT_USD) },
      windowed: { tier: 'windowed', budget: roomy },
      ...Object.fromEntries(APIS.map((api) => [`cut-${api}`, { tier: 'pro', budget: budget(CUT_LIMIT_USD) }])),
    },
    features: { drafting: { budget: budget(LIMIT_USD) } },
    keys: TENANTS.map((tenant) => ({
      id: `${tenant}-key`,
      sha256: sha256Hex(keys.get(tenant)!),
      tenant,
      scopes: [],
      ...(tenant === 'tight-key' ? { budget: budget(LIMIT_USD) } : {}),
      ...(tenant === 'tight-user' ? { user: 'ann' } : {}),
      ...(tenant === 'tight-feature' ? { feature: 'drafting' } : {}),
    })),
    global: { budget: budget(GLOBAL_LIMIT_USD) },
  };
}

interface BudgetView {
  spentNanoUsd: number;
  reservedNanoUsd: number;
  limitNanoUsd: number;
}

export function describeStreamHold(name: string, makeBackend: () => Promise<StreamHoldBackend>): void {
  describe(`the hold follows the stream: ${name}`, () => {
    let backend: StreamHoldBackend;
    let upstream: FakeUpstream;
    let gateways: RunningProxy[] = [];
    let dir: string;
    let usageLog: string;
    const adminKey = newApiKey();
    const keys = new Map(TENANTS.map((tenant) => [tenant, newApiKey()]));
    const stores: TollgateStores[] = [];

    beforeAll(async () => {
      backend = await makeBackend();
      dir = mkdtempSync(path.join(tmpdir(), 'tollgate-hold-conformance-'));
      usageLog = path.join(dir, 'usage.jsonl');
      // Every answer runs to 10x its cap, whatever the body asks.
      upstream = await startCapIgnoringUpstream({ honourCap: false, outputTokens: CAP * 10 });
      const config = { ...configOf(upstream, usageLog, adminKey, keys), ...backend.layers };
      // Two gateways over one backend, as two processes: each its own stores (and blocks, leases) over it.
      for (let i = 0; i < 2; i++) {
        stores.push(backend.open());
        gateways.push(await startProxy(config, { stores: stores[i]! }));
      }
    }, 120_000);

    afterAll(async () => {
      for (const gateway of gateways) await gateway?.close();
      gateways = [];
      await upstream?.close();
      await backend?.cleanup();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const callOf = (tenant: string, api: StreamApi, gateway = 0): StreamCall => ({
      url: gateways[gateway]!.url,
      key: keys.get(tenant)!,
      api,
      model: MODEL_OF[api],
      maxTokens: CAP,
    });

    /** The budget at `budgetPath` once nothing holds any of it (blocks went back, streams settled). */
    async function settledBudget(budgetPath: string): Promise<BudgetView> {
      await upstream.settled();
      return waitFor(async () => {
        const response = await fetch(`${gateways[0]!.url}/admin/budgets/${budgetPath}`, {
          headers: { authorization: `Bearer ${adminKey}` },
        });
        const view = ((await response.json()) as { budgets: BudgetView[] }).budgets[0]!;
        return view.reservedNanoUsd === 0 ? view : undefined;
      }, `the budget ${budgetPath} to settle`);
    }

    /**
     * Streams of `apis` in turn until the budget refuses: each ran to the upstream's end on extensions, or was cut
     * with its API's own ending where the budget had no more room.
     */
    async function runDown(tenant: string, apis: StreamApi[], gateway = 0): Promise<SdkStream[]> {
      const streams = await streamUntilRefused((n) => callOf(tenant, apis[n % apis.length]!, gateway));
      streams.forEach((stream, n) => {
        const api = apis[n % apis.length]!;
        expect({ n, ending: stream.ending }).toEqual({
          n,
          ending: expect.stringMatching(`^(${NATURAL_ENDINGS[api]}|${CAP_ENDINGS[api]})$`),
        });
      });
      return streams;
    }

    async function recordsOf(tenant: string) {
      for (const gateway of gateways) await gateway.app.flushUsage();
      return readUsageLog(usageLog).filter((record) => record.tenantId === tenant && record.status === 200);
    }

    it.each(SCOPES)(
      'a $scope budget ends at or under its limit: cap-ignoring streams run until it refuses',
      async ({ tenant, budgetPath, apis }) => {
        const streams = await runDown(tenant, apis);
        const view = await settledBudget(budgetPath);
        expect(view.limitNanoUsd).toBe(nano(LIMIT_USD));
        expect({ spent: view.spentNanoUsd, within: view.spentNanoUsd <= nano(LIMIT_USD) }).toEqual({
          spent: view.spentNanoUsd,
          within: true,
        });
        // The budget was reached, not merely approached: several streams, most of it spent.
        expect(streams.length).toBeGreaterThan(2);
        expect(view.spentNanoUsd).toBeGreaterThan(nano(LIMIT_USD) / 2);
        // Every stream ran past its cap (the upstream ignores it), on extensions of its hold.
        const records = await recordsOf(tenant);
        expect(records).toHaveLength(streams.length);
        for (const record of records) expect(record.outputTokens).toBeGreaterThan(CAP);
      },
      120_000,
    );

    it.each(APIS)(
      "a refused extension ends a %s stream with the API's own ending, aborts the upstream, bills within the budget",
      async (api) => {
        const tenant = `cut-${api}`;
        const outcome = await streamThroughSdk(callOf(tenant, api));
        expect(outcome).toMatchObject({ ending: CAP_ENDINGS[api] });
        // The stream ran past its grant on extensions until the budget had no more room: the client got less than
        // the upstream sent (it may have sent it all while the refusal came: what it is told is the abort).
        const [record] = await recordsOf(tenant);
        expect(record).toMatchObject({ outputOverCap: true, usageSource: 'counted' });
        expect(record!.outputTokens).toBeGreaterThan(CAP);
        expect(record!.outputTokens).toBeLessThan(CAP * 10);
        const view = await settledBudget(`tenant/${tenant}`);
        expect(view.spentNanoUsd).toBeLessThanOrEqual(nano(CUT_LIMIT_USD));
        expect(view.spentNanoUsd).toBe(Math.ceil(record!.costNanoUsd));
        // Spent: the next call is refused.
        expect(await streamThroughSdk(callOf(tenant, api))).toBe('exhausted');
      },
      60_000,
    );

    it('two processes sharing one budget, streams in flight on both at once, end at or under its limit', async () => {
      const workers = gateways.flatMap((_, gateway) =>
        APIS.map((api) => streamUntilRefused(() => callOf('shared', api, gateway))),
      );
      const answered = (await Promise.all(workers)).flat();
      const view = await settledBudget('tenant/shared');
      expect(view.spentNanoUsd).toBeLessThanOrEqual(nano(LIMIT_USD));
      expect(view.spentNanoUsd).toBeGreaterThan(nano(LIMIT_USD) / 2);
      const records = await recordsOf('shared');
      expect(records).toHaveLength(answered.length);
      expect(view.spentNanoUsd).toBe(records.reduce((sum, record) => sum + Math.ceil(record.costNanoUsd), 0));
    }, 120_000);

    it('token windows count what the streams ran to, once: the extensions and the settle agree', async () => {
      // A roomy budget grants every extension: each stream runs to its upstream's end, ten times its cap.
      for (const api of APIS) expect(await streamThroughSdk(callOf('windowed', api))).toMatchObject({ text: /cat/ });
      const records = await recordsOf('windowed');
      expect(records).toHaveLength(APIS.length);
      for (const record of records) expect(record.outputTokens).toBeGreaterThan(CAP);
      const used = records.reduce((sum, record) => sum + record.inputTokens + record.outputTokens, 0);
      // Read from the backend once what blocks took for the window went back.
      const counted = await waitFor(async () => {
        const now = await stores[0]!.counter.peek(WINDOW.key, WINDOW);
        return now === used ? now : undefined;
      }, `the window to count ${used} tokens`).catch(() => stores[0]!.counter.peek(WINDOW.key, WINDOW));
      expect(counted).toBe(used);
    }, 60_000);

    it('the global budget ends at or under its limit, streams of every API running it down', async () => {
      const streams = await runDown(GLOBAL.tenant, GLOBAL.apis);
      const view = await settledBudget(GLOBAL.budgetPath);
      expect(view.limitNanoUsd).toBe(nano(GLOBAL_LIMIT_USD));
      expect(view.spentNanoUsd).toBeLessThanOrEqual(nano(GLOBAL_LIMIT_USD));
      expect(streams.length).toBeGreaterThan(2);
      expect(view.spentNanoUsd).toBeGreaterThan(nano(GLOBAL_LIMIT_USD) * 0.8);
    }, 120_000);
  });
}
