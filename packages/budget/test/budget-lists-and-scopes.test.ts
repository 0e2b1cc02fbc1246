// Lists of budgets on one scope, end users within a tenant, features across tenants, model budgets, and threshold lists: in memory, on Redis and on a Redis Cluster, two instances sharing the ledger.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createMemoryStores, periodWindow } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetEvent, BudgetGuard, BudgetGuardOptions } from '@tollgate/budget';
import { testCluster, type TestCluster } from '../../redis/test/redis-cluster.js';
import { createApp, eventually, pricing } from './helpers.js';
import { deleteRedisPrefix } from './redis-cleanup.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
let cluster: TestCluster | undefined;
const clusterPrefixes: string[] = [];
const redisPrefixes: string[] = [];

beforeAll(async () => {
  cluster = await testCluster();
}, 60_000);

afterAll(async () => {
  for (const prefix of redisPrefixes) await deleteRedisPrefix(url, prefix);
  for (const prefix of clusterPrefixes) await cluster?.deleteKeys(prefix);
  await cluster?.stop();
});

/** Two guards on one ledger: in one process's memory, or on Redis with a connection each (two processes in all but name). */
const backends = [
  {
    name: 'memory',
    connect: () => {
      const shared = createMemoryStores();
      return () => shared;
    },
  },
  {
    name: 'redis',
    connect: () => {
      const prefix = `tg-test:budget-lists:${randomUUID()}:`;
      redisPrefixes.push(prefix);
      return () => createRedisStores({ url, prefix, timeoutMs: 5_000 }) as TollgateStores;
    },
  },
  {
    // Each budget on the shard of its slot: a tenant's end users and models on the tenant's, features and global apart.
    name: 'redis cluster',
    connect: () => {
      const prefix = `tg-test:budget-lists:${randomUUID()}:`;
      clusterPrefixes.push(prefix);
      return () => createRedisStores({ cluster: cluster!.urls, prefix, timeoutMs: 5_000 }) as TollgateStores;
    },
  },
];

/** $0.002 at test-model prices (2000 nano-USD per output token): the fake provider uses its whole cap. */
const STEP = { model: 'test-model', input_tokens: 0, max_tokens: 1000 };
const STEP_NANO = 2_000_000;

interface Answer {
  status: number;
  body: {
    model?: string;
    requestedModel?: string | null;
    outputTokens?: number;
    error?: { message: string; code: string };
  };
}

describe.each(backends)('on $name', ({ connect }) => {
  const closers: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const close of closers.reverse()) await close();
  });

  /** Two instances of the app, each with its own guard (and store connection) over one ledger. */
  async function instances(options: BudgetGuardOptions): Promise<{ urls: string[]; guards: BudgetGuard[] }> {
    const storesOf = connect();
    const urls: string[] = [];
    const guards: BudgetGuard[] = [];
    const made = new Set<TollgateStores>();
    for (let i = 0; i < 2; i++) {
      const stores = storesOf();
      if (!made.has(stores)) {
        made.add(stores);
        closers.push(() => stores.close());
      }
      const guard = budgetGuard({ ledger: stores.ledger, pricing, log: false, timeoutMs: 5_000, ...options });
      closers.push(() => guard.close());
      guards.push(guard);
      const server: Server = createApp(guard).listen(0, '127.0.0.1');
      closers.push(() => new Promise((resolve) => server.close(resolve)));
      await new Promise((resolve) => server.once('listening', resolve));
      urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    }
    return { urls, guards };
  }

  async function post(base: string, who: Record<string, string>, body: object = STEP): Promise<Answer> {
    const response = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...who },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Answer['body'] };
  }

  /** Waits until nothing is reserved on the budgets `guard` shows for these scopes (settles land after the answer). */
  async function settled(guard: BudgetGuard, selectors: Parameters<BudgetGuard['status']>[0][]): Promise<void> {
    await eventually(async () => {
      for (const selector of selectors)
        if ((await guard.status(selector)).some((s) => s.reservedNanoUsd !== 0)) return false;
      return true;
    });
  }

  it('holds every budget of a list at once: the day budget refuses before the month one, naming itself and its reset', async () => {
    const tenant = `acme-${randomUUID()}`;
    const { urls, guards } = await instances({
      tenants: {
        [tenant]: [
          { usd: 0.004, period: 'day' },
          { usd: 0.01, period: 'month' },
        ],
      },
    });
    const who = { 'x-test-tenant': tenant };
    expect((await post(urls[0]!, who)).status).toBe(200);
    expect((await post(urls[1]!, who)).status).toBe(200);
    await settled(guards[0]!, [{ scope: 'tenant', id: tenant }]);
    const refused = await post(urls[0]!, who);
    expect(refused.status).toBe(429);
    expect(refused.body.error?.code).toBe('insufficient_quota');
    const dayEnd = new Date(periodWindow('day', Date.now()).end).toISOString();
    expect(refused.body.error?.message).toContain(`Budget exhausted for tenant ${tenant}`);
    expect(refused.body.error?.message).toContain('this day');
    expect(refused.body.error?.message).toContain(`it resets at ${dayEnd}`);
    const [day, month] = await guards[1]!.status({ scope: 'tenant', id: tenant });
    expect(day).toMatchObject({ period: 'day', spentNanoUsd: 2 * STEP_NANO, remainingNanoUsd: 0 });
    expect(month).toMatchObject({ period: 'month', spentNanoUsd: 2 * STEP_NANO, remainingNanoUsd: 6_000_000 });
  });

  it('gives each end user of a tenant a budget of their own, apart from the same user id in another tenant', async () => {
    const acme = `acme-${randomUUID()}`;
    const globex = `globex-${randomUUID()}`;
    const { urls, guards } = await instances({
      tenantUsers: { [acme]: { usd: 0.004, period: 'day' }, '*': { usd: 0.002, period: 'day' } },
    });
    const bobOfAcme = { 'x-test-tenant': acme, 'x-test-user': 'bob' };
    expect((await post(urls[0]!, bobOfAcme)).status).toBe(200);
    expect((await post(urls[1]!, bobOfAcme)).status).toBe(200);
    await settled(guards[0]!, [{ scope: 'user', id: 'bob', tenant: acme }]);
    const refused = await post(urls[0]!, bobOfAcme);
    expect(refused.status).toBe(429);
    expect(refused.body.error?.message).toContain(`Budget exhausted for user bob of tenant ${acme}`);
    // Alice of acme, and bob of globex (the wildcard's $0.002), have their own.
    expect((await post(urls[1]!, { 'x-test-tenant': acme, 'x-test-user': 'alice' })).status).toBe(200);
    const bobOfGlobex = { 'x-test-tenant': globex, 'x-test-user': 'bob' };
    expect((await post(urls[1]!, bobOfGlobex)).status).toBe(200);
    await settled(guards[1]!, [{ scope: 'user', id: 'bob', tenant: globex }]);
    expect((await post(urls[0]!, bobOfGlobex)).status).toBe(429);
    const [bob] = await guards[1]!.status({ scope: 'user', id: 'bob', tenant: acme });
    expect(bob).toMatchObject({ scope: 'user', id: 'bob', tenantId: acme, spentNanoUsd: 2 * STEP_NANO });
    const [alice] = await guards[0]!.status({ scope: 'user', id: 'alice', tenant: acme });
    expect(alice).toMatchObject({ spentNanoUsd: STEP_NANO });
  });

  it('keeps ids that spell each other apart: user c of tenant a:b is not user b:c of tenant a', async () => {
    const run = randomUUID();
    const { urls, guards } = await instances({ tenantUsers: { '*': { usd: 0.002, period: 'day' } } });
    const first = { 'x-test-tenant': `${run}:a:b`, 'x-test-user': 'c' };
    const second = { 'x-test-tenant': `${run}:a`, 'x-test-user': 'b:c' };
    expect((await post(urls[0]!, first)).status).toBe(200);
    await settled(guards[0]!, [{ scope: 'user', id: 'c', tenant: `${run}:a:b` }]);
    expect((await post(urls[1]!, first)).status).toBe(429);
    expect((await post(urls[1]!, second)).status).toBe(200);
    const [one] = await guards[0]!.status({ scope: 'user', id: 'c', tenant: `${run}:a:b` });
    const [other] = await guards[0]!.status({ scope: 'user', id: 'b:c', tenant: `${run}:a` });
    expect(one!.key).not.toBe(other!.key);
  });

  it("caps each session on its own, in the same reservation as the tenant's budget; calls without one are not", async () => {
    const acme = `acme-${randomUUID()}`;
    const { urls, guards } = await instances({
      tenants: { [acme]: { usd: 0.008, period: 'day' } },
      sessionBudgets: {
        tenants: { '*': { usd: 0.004, period: 'day' } },
        keys: { 'big-key': { usd: 0.006, period: 'day' } },
      },
    });
    const first = { 'x-test-tenant': acme, 'x-test-session': 's-1' };
    expect((await post(urls[0]!, first)).status).toBe(200);
    // The last call that fits, from the other instance.
    expect((await post(urls[1]!, first)).status).toBe(200);
    await settled(guards[0]!, [{ scope: 'session', id: 's-1', tenant: acme }]);
    const refused = await post(urls[0]!, first);
    expect(refused.status).toBe(429);
    expect(refused.body.error?.message).toContain(`Budget exhausted for session s-1 of tenant ${acme}`);
    // Another session of the tenant, and a call without a session, go on: the tenant's budget holds both.
    expect((await post(urls[1]!, { 'x-test-tenant': acme, 'x-test-session': 's-2' })).status).toBe(200);
    expect((await post(urls[1]!, { 'x-test-tenant': acme })).status).toBe(200);
    await settled(guards[1]!, [{ scope: 'tenant', id: acme }]);
    const [session] = await guards[1]!.status({ scope: 'session', id: 's-1', tenant: acme });
    expect(session).toMatchObject({
      scope: 'session',
      tenantId: acme,
      spentNanoUsd: 2 * STEP_NANO,
      remainingNanoUsd: 0,
    });
    const [tenant] = await guards[0]!.status({ scope: 'tenant', id: acme });
    expect(tenant).toMatchObject({ spentNanoUsd: 4 * STEP_NANO });
    // One reservation: a session refused by the tenant's budget charges neither.
    expect((await post(urls[0]!, { 'x-test-tenant': acme, 'x-test-session': 's-3' })).status).toBe(429);
    const [third] = await guards[0]!.status({ scope: 'session', id: 's-3', tenant: acme });
    expect(third).toMatchObject({ spentNanoUsd: 0, reservedNanoUsd: 0 });
    // A key's own session budget wins over its tenant's; a key without a tenant owns its sessions.
    const solo = `solo-${randomUUID()}`;
    const big = { 'x-test-key': 'big-key', 'x-test-tenant': `other-${acme}`, 'x-test-session': 's-1' };
    for (let i = 0; i < 3; i++) expect((await post(urls[i % 2]!, big)).status).toBe(200);
    await settled(guards[0]!, [{ scope: 'session', id: 's-1', tenant: `other-${acme}` }]);
    expect((await post(urls[0]!, big)).status).toBe(429);
    const alone = { 'x-test-key': solo, 'x-test-session': 's-1' };
    expect((await post(urls[0]!, alone)).status).toBe(200);
    expect((await post(urls[1]!, alone)).status).toBe(200);
    await eventually(async () => (await post(urls[0]!, alone)).status === 429);
    expect((await post(urls[0]!, alone)).body.error?.message).toContain(`session s-1 of key ${solo}`);
  });

  it('counts a feature budget across tenants', async () => {
    const feature = `support-${randomUUID()}`;
    const { urls, guards } = await instances({ features: { [feature]: { usd: 0.004, period: 'day' } } });
    expect((await post(urls[0]!, { 'x-test-tenant': 'acme', 'x-test-feature': feature })).status).toBe(200);
    expect((await post(urls[1]!, { 'x-test-tenant': 'globex', 'x-test-feature': feature })).status).toBe(200);
    await settled(guards[0]!, [{ scope: 'feature', id: feature }]);
    const refused = await post(urls[0]!, { 'x-test-tenant': 'initech', 'x-test-feature': feature });
    expect(refused.status).toBe(429);
    expect(refused.body.error?.message).toContain(`Budget exhausted for feature ${feature}`);
    // Another feature is not held by it.
    expect((await post(urls[1]!, { 'x-test-tenant': 'acme', 'x-test-feature': 'other' })).status).toBe(200);
  });

  it('alerts each threshold of a softLimit list once per period, and budget.exhausted once, across instances', async () => {
    const tenant = `acme-${randomUUID()}`;
    const events: BudgetEvent[] = [];
    const { urls, guards } = await instances({
      tenants: { [tenant]: { usd: 0.01, period: 'day', softLimit: [0.25, 0.5, 0.75] } },
      onEvent: (event) => void events.push(event),
    });
    const who = { 'x-test-tenant': tenant };
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      statuses.push((await post(urls[i % 2]!, who)).status);
      await settled(guards[0]!, [{ scope: 'tenant', id: tenant }]);
      for (const guard of guards) await guard.flush();
    }
    // Five steps fit in $0.01; the rest are refused.
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(events.map((event) => [event.type, event.type === 'budget.threshold' ? event.threshold : null])).toEqual([
      ['budget.threshold', 0.25],
      ['budget.threshold', 0.5],
      ['budget.threshold', 0.75],
      ['budget.exhausted', null],
    ]);
    expect(events[0]).toMatchObject({ scope: 'tenant', id: tenant, period: 'day', spentNanoUsd: 2 * STEP_NANO });
    expect(events[3]).toMatchObject({ scope: 'tenant', id: tenant, limitNanoUsd: 10_000_000 });
  });

  it('downgrades a model whose budget is spent where the tenant has a downgrade, refuses naming the model budget where not', async () => {
    const acme = `acme-${randomUUID()}`;
    const globex = `globex-${randomUUID()}`;
    const events: BudgetEvent[] = [];
    const { urls, guards } = await instances({
      tenants: { '*': { usd: 1, period: 'month' } },
      modelBudgets: { [acme]: { 'test-model': { usd: 0.004, period: 'day' } }, '*': { 'test-model': { usd: 0.002 } } },
      modelDowngrades: { [acme]: { 'test-model': 'test-mini' } },
      onEvent: (event) => void events.push(event),
    });
    const answers: Answer[] = [];
    for (let i = 0; i < 4; i++) {
      answers.push(await post(urls[i % 2]!, { 'x-test-tenant': acme }));
      await settled(guards[0]!, [{ scope: 'tenant', id: acme }]);
    }
    expect(answers.map((a) => [a.status, a.body.model, a.body.requestedModel])).toEqual([
      [200, 'test-model', 'test-model'],
      [200, 'test-model', 'test-model'],
      [200, 'test-mini', 'test-model'],
      [200, 'test-mini', 'test-model'],
    ]);
    // Money exact: the tenant's spend is the sum of what each answer cost at its model's price.
    const cost = (a: Answer) => a.body.outputTokens! * (a.body.model === 'test-mini' ? 200 : 2000);
    const [tenant] = await guards[1]!.status({ scope: 'tenant', id: acme });
    expect(tenant!.spentNanoUsd).toBe(answers.reduce((sum, a) => sum + cost(a), 0));
    const [model] = await guards[1]!.status({ scope: 'model', id: 'test-model', tenant: acme });
    expect(model).toMatchObject({ scope: 'model', tenantId: acme, spentNanoUsd: 2 * STEP_NANO });

    expect((await post(urls[0]!, { 'x-test-tenant': globex })).status).toBe(200);
    await settled(guards[0]!, [{ scope: 'tenant', id: globex }]);
    const refused = await post(urls[1]!, { 'x-test-tenant': globex });
    expect(refused.status).toBe(429);
    expect(refused.body.error?.message).toContain(`Budget exhausted for model test-model of tenant ${globex}`);
    // Another model of the same tenant is not held by it.
    expect((await post(urls[0]!, { 'x-test-tenant': globex }, { ...STEP, model: 'test-mini' })).status).toBe(200);
    for (const guard of guards) await guard.flush();
    await eventually(() => events.filter((e) => e.type === 'budget.exhausted').length === 2);
    expect(events.filter((e) => e.type === 'budget.exhausted').map((e) => [e.scope, e.id, e.tenantId])).toEqual(
      expect.arrayContaining([
        ['model', 'test-model', acme],
        ['model', 'test-model', globex],
      ]),
    );
  });

  it('lets onModelBudgetSpent move a request whose model budget is spent to another model', async () => {
    const tenant = `acme-${randomUUID()}`;
    const told: string[] = [];
    const { urls, guards } = await instances({
      modelBudgets: { [tenant]: { 'test-model': { usd: 0.002, period: 'day' } } },
      onModelBudgetSpent: (req, _res, model) => {
        told.push(model);
        req.tollgate.switchModel('test-mini', pricing.get('test-mini'));
        return true;
      },
    });
    expect((await post(urls[0]!, { 'x-test-tenant': tenant })).body.model).toBe('test-model');
    await settled(guards[0]!, [{ scope: 'model', id: 'test-model', tenant }]);
    const moved = await post(urls[1]!, { 'x-test-tenant': tenant });
    expect(moved).toMatchObject({ status: 200, body: { model: 'test-mini', requestedModel: 'test-model' } });
    expect(told).toEqual(['test-model']);
  });
});
