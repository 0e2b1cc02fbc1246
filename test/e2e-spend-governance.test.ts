// Spend governance through the official OpenAI SDK, two gateway instances on one store (memory, Redis): budget lists, end users, features, thresholds, model budgets.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { createMemoryStores, periodWindow, type TollgateStores, type UsageRecord } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import {
  deleteRedisPrefix,
  newApiKey,
  readUsageLog,
  REDIS_URL,
  sha256Hex,
  startMockUpstream,
  startProxy,
  type RunningMock,
  type RunningProxy,
} from './helpers/proxy.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

const adminKey = newApiKey();
const keyIds = [
  'daymonth',
  'alice-acme',
  'bob-acme',
  'bob-globex',
  'bot-acme',
  'bot-globex',
  'thresholds',
  'down',
  'refuse',
  'grouped',
] as const;
type KeyId = (typeof keyIds)[number];

/** Two gateway instances on one store, their usage logs, and the webhook receiver of their alert stream. */
interface Deployment {
  proxies: RunningProxy[];
  keys: Record<KeyId, string>;
  hook: WebhookReceiver;
  logs: string[];
  records(): Promise<UsageRecord[]>;
}

/**
 * Prices chosen for easy sums: `big` $10 and `small` $1 per million tokens either way, so a call of about 10 input
 * and 100 output tokens costs about $0.0011 on `big`. Each tenant's budgets fit a few such calls.
 */
function configOf(keys: Record<KeyId, string>, upstream: string, hook: string, usageLog: string): GatewayConfig {
  const key = (id: KeyId, tenant: string, extra: { user?: string; feature?: string } = {}) => ({
    id,
    sha256: sha256Hex(keys[id]),
    tenant,
    ...extra,
  });
  return {
    usageLog,
    adminKeySha256: sha256Hex(adminKey),
    upstreams: { openai: { baseUrl: `${upstream}/v1`, apiKey: 'upstream-key' } },
    models: {
      big: { provider: 'openai', inputPerMTok: 10, outputPerMTok: 10 },
      small: { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1 },
    },
    modelGroups: {
      smart: {
        strategy: 'fallback',
        targets: [
          { upstream: 'openai', model: 'big' },
          { upstream: 'openai', model: 'small' },
        ],
      },
    },
    tenants: {
      daymonth: {
        budget: [
          { usd: 0.003, period: 'day' },
          { usd: 1, period: 'month' },
        ],
      },
      acme: { userBudget: { usd: 0.0025, period: 'day' } },
      globex: { userBudget: { usd: 0.0025, period: 'day' } },
      thresholds: { budget: { usd: 0.01, period: 'day', softLimit: [0.25, 0.5, 0.75] } },
      down: { modelBudgets: { big: { usd: 0.0025, period: 'day' } }, downgrade: { big: 'small' } },
      refuse: { modelBudgets: { big: [{ usd: 0.0025, period: 'day' }] } },
      grouped: { modelBudgets: { big: { usd: 0.0025, period: 'day' } } },
    },
    features: { 'support-bot': { budget: { usd: 0.0025, period: 'day' } } },
    keys: [
      key('daymonth', 'daymonth'),
      key('alice-acme', 'acme', { user: 'alice' }),
      key('bob-acme', 'acme', { user: 'bob' }),
      key('bob-globex', 'globex', { user: 'bob' }),
      key('bot-acme', 'acme', { feature: 'support-bot' }),
      key('bot-globex', 'globex', { feature: 'support-bot' }),
      key('thresholds', 'thresholds'),
      key('down', 'down'),
      key('refuse', 'refuse'),
      key('grouped', 'grouped'),
    ],
    alerts: { webhooks: [{ url: hook }] },
  } as GatewayConfig;
}

const backends: { name: string; stores: () => { each: () => TollgateStores; release: () => Promise<void> } }[] = [
  {
    name: 'memory',
    stores: () => {
      const shared = createMemoryStores();
      return { each: () => shared, release: () => shared.close() };
    },
  },
  {
    name: 'redis',
    stores: () => {
      const prefix = `tg-test:spend-governance:${randomUUID()}:`;
      const made: TollgateStores[] = [];
      return {
        each: () => {
          const stores = createRedisStores({ url: REDIS_URL, prefix, timeoutMs: 5_000 });
          made.push(stores);
          return stores;
        },
        release: async () => {
          for (const stores of made) await stores.close();
          await deleteRedisPrefix(prefix);
        },
      };
    },
  },
];

describe.each(backends)('spend governance on $name, two gateway instances', (backend) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-spend-'));
  let upstream: RunningMock;
  let deployment: Deployment;
  let release: () => Promise<void>;

  beforeAll(async () => {
    upstream = await startMockUpstream({ replyTokens: 100 });
    const hook = await startWebhookReceiver();
    const keys = Object.fromEntries(keyIds.map((id) => [id, newApiKey()])) as Record<KeyId, string>;
    const stores = backend.stores();
    release = stores.release;
    const logs = [0, 1].map((i) => path.join(dir, `usage-${i}.jsonl`));
    const proxies: RunningProxy[] = [];
    for (const log of logs)
      proxies.push(await startProxy(configOf(keys, upstream.url, hook.url, log), { stores: stores.each() }));
    deployment = {
      proxies,
      keys,
      hook,
      logs,
      async records() {
        for (const proxy of proxies) await proxy.app.flushUsage();
        return logs.flatMap((log) => readUsageLog(log));
      },
    };
  });

  afterAll(async () => {
    for (const proxy of deployment?.proxies ?? []) await proxy.close();
    await deployment?.hook.close();
    await upstream?.close();
    await release?.();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The SDK of key `id` through instance `at` (alternating instances shows the store is shared). */
  function client(id: KeyId, at: number): OpenAI {
    return new OpenAI({ apiKey: deployment.keys[id], baseURL: `${deployment.proxies[at % 2]!.url}/v1`, maxRetries: 0 });
  }

  /** One chat call; a refusal comes back as the SDK's error. */
  async function ask(
    id: KeyId,
    at: number,
    model = 'big',
  ): Promise<{ model: string } | InstanceType<typeof OpenAI.APIError>> {
    try {
      const answer = await client(id, at).chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'hello there' }],
        max_tokens: 100,
      });
      return { model: answer.model };
    } catch (error) {
      if (error instanceof OpenAI.APIError) return error;
      throw error;
    }
  }

  /** The models of `count` calls in turn, each settled before the next; a refusal fails the test. */
  async function servedModels(id: KeyId, count: number, model = 'big'): Promise<string[]> {
    const models: string[] = [];
    for (let i = 0; i < count; i++) {
      const answer = await ask(id, i, model);
      if (answer instanceof OpenAI.APIError) throw answer;
      models.push(answer.model);
      await settledAll();
    }
    return models;
  }

  /** Calls until the first refusal (at most `max` calls): the answers before it, and it. */
  async function untilRefused(id: KeyId, max = 10, model = 'big') {
    const served: { model: string }[] = [];
    for (let i = 0; i < max; i++) {
      const answer = await ask(id, i, model);
      if (answer instanceof OpenAI.APIError) return { served, refusal: answer };
      served.push(answer);
      await settledAll();
    }
    throw new Error(`${id}: not refused within ${max} calls`);
  }

  /** Budgets as the operator sees them (GET /admin/budgets/...). */
  async function budgets(pathname: string): Promise<{ period: string; spentNanoUsd: number; limitNanoUsd: number }[]> {
    const response = await fetch(`${deployment.proxies[1]!.url}/admin/budgets/${pathname}`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { budgets: { period: string; spentNanoUsd: number; limitNanoUsd: number }[] })
      .budgets;
  }

  /**
   * Polls `read` until it gives `expected` (about 5 s at most), then asserts it: on Redis a budget's spend reaches the
   * operator's view when the block that held it goes back (within a second in these tests).
   */
  async function expectSoon(read: () => Promise<number>, expected: () => Promise<number> | number): Promise<void> {
    let got = await read();
    let want = await expected();
    for (let i = 0; i < 100 && got !== want; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      got = await read();
      want = await expected();
    }
    expect(got).toBe(want);
  }

  const spentOf = async (pathname: string, at = 0) => (await budgets(pathname))[at]!.spentNanoUsd;
  const recordedCost = async (keep: (record: UsageRecord) => boolean) =>
    (await deployment.records()).filter(keep).reduce((sum, record) => sum + record.costNanoUsd, 0);

  /** Every request settled: the usage records are written once each settle has run. */
  async function settledAll(): Promise<void> {
    for (const proxy of deployment.proxies) await proxy.app.flushUsage();
  }

  it('refuses with the day budget of a list before the month one, naming it and its reset', async () => {
    const { served, refusal } = await untilRefused('daymonth');
    expect(served.length).toBeGreaterThanOrEqual(2);
    expect(refusal.status).toBe(429);
    expect(refusal.code).toBe('insufficient_quota');
    const dayEnd = new Date(periodWindow('day', Date.now()).end).toISOString();
    expect(refusal.message).toContain('Budget exhausted for tenant daymonth');
    expect(refusal.message).toContain('this day');
    expect(refusal.message).toContain(`it resets at ${dayEnd}`);
    const [day, month] = await budgets('tenant/daymonth');
    expect(day!.period).toBe('day');
    expect(month!.period).toBe('month');
    // Both were charged exactly what the calls cost; the month budget has nearly all of its dollar left.
    const cost = () => recordedCost((record) => record.tenantId === 'daymonth');
    await expectSoon(() => spentOf('tenant/daymonth', 0), cost);
    await expectSoon(() => spentOf('tenant/daymonth', 1), cost);
    expect(await cost()).toBeLessThan(month!.limitNanoUsd / 100);
  });

  it('gives two end users of one tenant a budget each, and the same user id in another tenant its own', async () => {
    const bob = await untilRefused('bob-acme');
    expect(bob.refusal.status).toBe(429);
    expect(bob.refusal.message).toContain('Budget exhausted for user bob of tenant acme');
    // Alice of acme and bob of globex are not held by bob of acme's spend.
    expect(await ask('alice-acme', 0)).toEqual({ model: 'big' });
    expect(await ask('bob-globex', 1)).toEqual({ model: 'big' });
    await settledAll();
    const [bobOfAcme] = await budgets('user/bob?tenant=acme');
    const [aliceOfAcme] = await budgets('user/alice?tenant=acme');
    const [bobOfGlobex] = await budgets('user/bob?tenant=globex');
    const records = await deployment.records();
    const spentBy = (keyId: string) =>
      records.filter((record) => record.keyId === keyId).reduce((sum, record) => sum + record.costNanoUsd, 0);
    expect(bobOfAcme!.spentNanoUsd).toBe(spentBy('bob-acme'));
    expect(aliceOfAcme!.spentNanoUsd).toBe(spentBy('alice-acme'));
    expect(bobOfGlobex!.spentNanoUsd).toBe(spentBy('bob-globex'));
    expect(records.filter((record) => record.keyId === 'bob-acme')[0]).toMatchObject({
      userId: 'bob',
      tenantId: 'acme',
    });
  });

  it('counts a feature budget across tenants', async () => {
    const served: string[] = [];
    let refusal: InstanceType<typeof OpenAI.APIError> | undefined;
    for (let i = 0; i < 10 && !refusal; i++) {
      const id = i % 2 === 0 ? 'bot-acme' : 'bot-globex';
      const answer = await ask(id, i);
      if (answer instanceof OpenAI.APIError) refusal = answer;
      else served.push(id);
      await settledAll();
    }
    // Both tenants spent from it before it ran out.
    expect(served).toEqual(expect.arrayContaining(['bot-acme', 'bot-globex']));
    expect(refusal?.message).toContain('Budget exhausted for feature support-bot');
    await expectSoon(
      () => spentOf('feature/support-bot'),
      () => recordedCost((record) => record.feature === 'support-bot'),
    );
  });

  it('alerts each threshold of a softLimit list once per period across instances, and budget.exhausted once', async () => {
    const { refusal } = await untilRefused('thresholds', 20);
    expect(refusal.status).toBe(429);
    // More refused calls, through both instances: no more events.
    for (let i = 0; i < 4; i++) expect(await ask('thresholds', i)).toBeInstanceOf(OpenAI.APIError);
    for (const proxy of deployment.proxies) await proxy.app.flushUsage();
    const events = () =>
      deployment.hook.deliveries
        .map(({ body }) => JSON.parse(body) as { type: string; details?: { id?: string; threshold?: number } })
        .filter((event) => event.details?.id === 'thresholds');
    const seen = () =>
      events()
        .map((event) => `${event.type}${event.details?.threshold === undefined ? '' : ` ${event.details.threshold}`}`)
        .sort();
    const expected = ['budget.exhausted', 'budget.threshold 0.25', 'budget.threshold 0.5', 'budget.threshold 0.75'];
    for (let i = 0; i < 100 && seen().length < expected.length; i++) await new Promise((r) => setTimeout(r, 50));
    expect(seen()).toEqual(expected);
  });

  it('downgrades a model whose budget is spent where the tenant has a downgrade (the record says so), and refuses naming the model budget where not', async () => {
    const answers = await servedModels('down', 5);
    expect(answers[0]).toBe('big');
    expect(answers.at(-1)).toBe('small');
    const records = (await deployment.records()).filter((record) => record.tenantId === 'down');
    expect(records.at(-1)).toMatchObject({ requestedModel: 'big', model: 'small' });
    await expectSoon(
      () => spentOf('model/big?tenant=down'),
      () => recordedCost((record) => record.tenantId === 'down' && record.model === 'big'),
    );

    const { served, refusal } = await untilRefused('refuse');
    expect(served.length).toBeGreaterThan(0);
    expect(refusal.status).toBe(429);
    expect(refusal.code).toBe('insufficient_quota');
    expect(refusal.message).toContain('Budget exhausted for model big of tenant refuse');
    // Another model of the tenant is not held by it.
    expect(await ask('refuse', 0, 'small')).toEqual({ model: 'small' });
  });

  it('skips a model group target whose model budget is spent', async () => {
    const answers = await servedModels('grouped', 5, 'smart');
    expect(answers[0]).toBe('big');
    expect(answers.at(-1)).toBe('small');
    const records = (await deployment.records()).filter((record) => record.tenantId === 'grouped');
    expect(records.map((record) => record.status)).toEqual([200, 200, 200, 200, 200]);
    await expectSoon(
      () => spentOf('model/big?tenant=grouped'),
      () => recordedCost((record) => record.tenantId === 'grouped' && record.model === 'big'),
    );
    const [model] = await budgets('model/big?tenant=grouped');
    expect(model!.spentNanoUsd).toBeLessThanOrEqual(model!.limitNanoUsd);
  });

  it('the dashboard shows the end users, the features and the model budgets beside the tenants', async () => {
    await settledAll();
    const dashboard = (pathname: string, init: RequestInit = {}) =>
      fetch(`${deployment.proxies[0]!.url}/dashboard${pathname}`, {
        ...init,
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      });
    interface Status {
      scope: string;
      id: string | null;
      tenantId: string | null;
      spentNanoUsd: number;
      remainingNanoUsd: number;
    }
    const tenantBudgets = async (tenant: string) => {
      const response = await dashboard(`/api/tenants/${tenant}`);
      expect(response.status).toBe(200);
      return ((await response.json()) as { budgets: Status[] }).budgets;
    };
    const records = await deployment.records();
    const cost = (keep: (record: UsageRecord) => boolean) =>
      records.filter(keep).reduce((sum, record) => sum + record.costNanoUsd, 0);

    // acme's page: each end user's own budget (its keys name alice and bob), spent what their calls cost.
    let acme = await tenantBudgets('acme');
    const endUser = (user: string) => acme.find((status) => status.scope === 'user' && status.id === user);
    expect(endUser('alice')).toMatchObject({ tenantId: 'acme', spentNanoUsd: cost((r) => r.keyId === 'alice-acme') });
    expect(endUser('bob')).toMatchObject({ tenantId: 'acme', spentNanoUsd: cost((r) => r.keyId === 'bob-acme') });
    // globex's bob is globex's, not acme's.
    expect(
      (await tenantBudgets('globex')).find((status) => status.scope === 'user' && status.id === 'bob'),
    ).toMatchObject({
      tenantId: 'globex',
      spentNanoUsd: cost((r) => r.keyId === 'bob-globex'),
    });
    // down's page: its model budget on `big`.
    expect((await tenantBudgets('down')).find((status) => status.scope === 'model')).toMatchObject({
      id: 'big',
      tenantId: 'down',
      spentNanoUsd: cost((r) => r.tenantId === 'down' && r.model === 'big'),
    });
    // The overview: the feature's budget beside the tenants.
    const overview = (await (await dashboard('/api/')).json()) as { features: { id: string; budget: Status | null }[] };
    expect(overview.features.find((row) => row.id === 'support-bot')?.budget).toMatchObject({
      scope: 'feature',
      spentNanoUsd: cost((r) => r.feature === 'support-bot'),
    });
    // The page names them as operators would, and an end user's budget takes a top-up under its tenant.
    const page = await (await dashboard('/tenants/acme')).text();
    expect(page).toContain('end user bob of acme');
    expect(page).toContain('action="/dashboard/budgets/user/bob/top-up?tenant=acme"');
    const topUp = await dashboard('/api/budgets/user/bob/top-up?tenant=acme', {
      method: 'POST',
      body: JSON.stringify({ usd: 1 }),
    });
    expect(topUp.status).toBe(200);
    acme = await tenantBudgets('acme');
    expect(endUser('bob')!.remainingNanoUsd).toBeGreaterThanOrEqual(1_000_000_000);
    expect(endUser('alice')!.remainingNanoUsd).toBeLessThan(1_000_000_000);
  });
});
