// Blocks when machines fail: Redis killed or frozen under load across three leased proxy processes, and a proxy killed while
// it holds a budget block; what is served stays within the lease's bound and the books balance to the nano-USD.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createPricing } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';
import type { UsageRecord } from '@tollgate/core';
import { countPromptTokens } from '@tollgate/providers/mock';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { healthDetails, newApiKey, readUsageLog, sha256Hex, spawnProxy, startMockUpstream } from './helpers/proxy.js';
import type { RunningMock, SpawnedProxy } from './helpers/proxy.js';

const PROCESSES = 3;
/** A block is 5% of a limit, held at most a second; a process may grant 10% of a budget on its own while Redis is out. */
const SHARE = 0.05;
const MAX_AGE_MS = 1_000;
const SLICE = 0.1;
/** The outages' tenants' budget: about 280 calls of "hi" answered in 10 tokens of gpt-4o-mini. */
const BUDGET_NANO = 2_000_000;
/** The crash's tenant's: its load never runs out of it. */
const CRASH_BUDGET_NANO = 10_000_000;
const BLOCK_NANO = Math.floor(SHARE * BUDGET_NANO);
const SLICE_NANO = Math.floor(SLICE * BUDGET_NANO);
/** Longer than the lease's deadline (250 ms) and the budget's (2 s), shorter than the connection's (5 s). */
const FREEZE_MS = 2_500;
/** Calls each process answers before the outage, after its first few: over half the budget in all. */
const PRE_SPEND_CALLS = 50;
/** Calls each process gets while Redis is out: more than what was left of its block and its slice could pay for. */
const OUTAGE_CALLS = 60;

const messages = [{ role: 'user' as const, content: 'hi' }];
/** What every answered call costs (the mock answers max_tokens tokens). */
const EACH_NANO = costNanoUsd(
  {
    inputTokens: countPromptTokens({ messages }),
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: 10,
    reasoningTokens: 0,
  },
  createPricing().get('gpt-4o-mini')!,
);

const tenants = ['killed-co', 'frozen-co', 'crash-co'] as const;
type Tenant = (typeof tenants)[number];
const keys = Object.fromEntries(tenants.map((tenant) => [tenant, newApiKey()])) as Record<Tenant, string>;
const adminKey = newApiKey();
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-blocks-outage-'));
const usageLogs = Array.from({ length: PROCESSES }, (_, index) => path.join(dir, `usage-${index}.jsonl`));
let redis: PrivateRedis;
let upstream: RunningMock;
let proxies: SpawnedProxy[] = [];

async function ask(proxy: SpawnedProxy, tenant: Tenant): Promise<number> {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keys[tenant]}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages, max_tokens: 10 }),
    signal: AbortSignal.timeout(15_000),
  });
  await response.arrayBuffer();
  return response.status;
}

/** `count` calls to each process, `concurrency` at a time per process: the statuses, by process. */
async function burst(tenant: Tenant, count: number, concurrency: number, to = proxies): Promise<number[][]> {
  return Promise.all(
    to.map(async (proxy) => {
      const statuses: number[] = [];
      let sent = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (sent < count) {
            sent++;
            statuses.push(await ask(proxy, tenant));
          }
        }),
      );
      return statuses;
    }),
  );
}

interface Call {
  /** When the client sent it. */
  at: number;
  status: number;
}

/** Clients calling `proxy` one call after another until stopped, and the calls they made. */
function keepCalling(proxy: SpawnedProxy, tenant: Tenant, clients: number): { calls: Call[]; stop(): Promise<void> } {
  let running = true;
  const calls: Call[] = [];
  const all = Array.from({ length: clients }, async () => {
    while (running) {
      const at = Date.now();
      calls.push({ at, status: await ask(proxy, tenant).catch(() => 0) });
    }
  });
  return {
    calls,
    async stop() {
      running = false;
      await Promise.all(all);
    },
  };
}

interface Budget {
  spentNanoUsd: number;
  reservedNanoUsd: number;
}

async function budgetOf(tenant: Tenant, proxy = proxies[0]!): Promise<Budget> {
  const headers = { authorization: `Bearer ${adminKey}` };
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/${tenant}`, { headers });
  const { spentNanoUsd, reservedNanoUsd } = ((await response.json()) as { budgets: Budget[] }).budgets[0]!;
  return { spentNanoUsd, reservedNanoUsd };
}

async function ledgerBlocksHeld(proxy: SpawnedProxy): Promise<number> {
  const health = await healthDetails<{ blocks: { ledger: number } }>(proxy.url, adminKey);
  return health.blocks.ledger;
}

const recordsOf = (tenant: Tenant, index: number): UsageRecord[] =>
  readUsageLog(usageLogs[index]!).filter((record) => record.tenantId === tenant);
const costOf = (records: readonly UsageRecord[]): number =>
  records.reduce((total, record) => total + record.costNanoUsd, 0);
const answered = (statuses: readonly number[]): number => statuses.filter((status) => status === 200).length;
const recoveries = (proxy: SpawnedProxy): number => proxy.output().split('Redis answers again').length - 1;

/** `what` names what was awaited; as a function, it also tells what was last seen. */
async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string | (() => string),
  ms = 20_000,
): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(50);
  }
}

beforeAll(async () => {
  // Persistent, so a Redis the test kills comes back with what it had: the leases' charges are then the only difference.
  redis = new PrivateRedis(await freePort(), ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
  await redis.start();
  // A provider a few ms away, so calls are in flight when something dies.
  upstream = await startMockUpstream({ latencyMs: 25 });
  const prefix = `tg-test:blocks-outage:${randomUUID()}:`;
  proxies = await Promise.all(
    usageLogs.map((usageLog, index) => {
      const configPath = path.join(dir, `config-${index}.json`);
      writeFileSync(
        configPath,
        JSON.stringify({
          usageLog,
          redisPrefix: prefix,
          // Blocks of share x limit (not sized by demand): the bounds below are written in blocks of that size.
          redis: { blocks: { share: SHARE, size: 'share', maxAge: MAX_AGE_MS } },
          storeOutage: { policy: 'lease', slice: SLICE },
          upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: 'sk-upstream' } },
          adminKeySha256: sha256Hex(adminKey),
          tiers: { roomy: { requestsPerMinute: 100_000, tokensPerMinute: 10_000_000 } },
          tenants: Object.fromEntries(
            tenants.map((tenant) => {
              const usd = (tenant === 'crash-co' ? CRASH_BUDGET_NANO : BUDGET_NANO) / 1e9;
              return [tenant, { tier: 'roomy', budget: { usd, period: 'day' } }];
            }),
          ),
          keys: tenants.map((tenant) => ({
            id: `${tenant}-key`,
            sha256: sha256Hex(keys[tenant]),
            tenant,
            scopes: ['chat'],
          })),
        }),
      );
      return spawnProxy({ TOLLGATE_CONFIG: configPath, REDIS_URL: redis.url });
    }),
  );
}, 40_000);

afterAll(async () => {
  redis?.signal('SIGCONT');
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  await upstream?.close();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('blocks on three leased processes when Redis fails', () => {
  it.each(['killed', 'frozen'] as const)(
    'Redis %s under load: served within blocks and slices, spend exact once back',
    async (outage) => {
      const tenant: Tenant = outage === 'killed' ? 'killed-co' : 'frozen-co';
      // Redis answers each process for the budget (a lease grants slices only for that), and each takes a block of it (a block
      // opened by a process's first, slow calls may be a second old, and given back, when asked).
      const warm: number[][] = proxies.map(() => []);
      await waitUntil(
        async () => {
          (await burst(tenant, 3, 3)).forEach((statuses, index) => warm[index]!.push(...statuses));
          return (await Promise.all(proxies.map(ledgerBlocksHeld))).every((held) => held >= 1);
        },
        'every process to hold a block of the budget',
        10_000,
      );
      expect(warm.flat().every((status) => status === 200)).toBe(true);
      // Over half the budget spent: the outage's slices may then grant past what Redis has left.
      expect((await burst(tenant, PRE_SPEND_CALLS, 5)).flat().every((status) => status === 200)).toBe(true);
      const recovered = proxies.map(recoveries);

      const loads = proxies.map((proxy) => keepCalling(proxy, tenant, 4));
      await sleep(150);
      const outageAt = Date.now();
      if (outage === 'killed') await redis.stop();
      else redis.signal('SIGSTOP');
      // More calls than any process could serve on its own: what was left of its block and its slice.
      const duringOutage = (load: (typeof loads)[number]) => load.calls.filter((call) => call.at >= outageAt);
      await waitUntil(
        () => loads.every((load) => duringOutage(load).length >= OUTAGE_CALLS),
        'the load during the outage',
        15_000,
      );
      await Promise.all(loads.map((load) => load.stop()));
      if (outage === 'killed') {
        await redis.start();
      } else {
        await sleep(outageAt + FREEZE_MS - Date.now());
        redis.signal('SIGCONT');
      }

      // Each process served while Redis was out, and refused past its block and slice (503, retryable; or the budget's 429).
      for (const load of loads) {
        const during = duringOutage(load).map((call) => call.status);
        expect(during.filter((status) => status !== 200 && status !== 429 && status !== 503)).toEqual([]);
        expect(answered(during)).toBeGreaterThan(0);
        expect(answered(during)).toBeLessThan(during.length);
      }
      await waitUntil(
        () => proxies.every((proxy, index) => recoveries(proxy) > recovered[index]!),
        'Redis found again',
      );
      const answeredBy = (index: number) =>
        warm[index]!.length + PRE_SPEND_CALLS + answered(loads[index]!.calls.map((call) => call.status));
      const servedBy = (index: number) => recordsOf(tenant, index).filter((record) => record.status === 200);
      await waitUntil(
        () => proxies.every((_, index) => servedBy(index).length === answeredBy(index)),
        'the usage records',
      );
      // What calls sent in the outage got from a process: what was left of the one block it held (counted in Redis), and its slice.
      for (const index of proxies.keys()) {
        const served = servedBy(index).filter((record) => Date.parse(record.timestamp) >= outageAt);
        expect(costOf(served)).toBeLessThanOrEqual(BLOCK_NANO + SLICE_NANO);
      }

      // Blocks retired and settled, the slices' grants charged: Redis holds every record's cost, once.
      const logged = costOf(proxies.flatMap((_, index) => recordsOf(tenant, index)));
      let last: Budget | undefined;
      await waitUntil(
        async () => {
          last = await budgetOf(tenant);
          return last.reservedNanoUsd === 0 && last.spentNanoUsd === logged;
        },
        () => `spend to balance: the records cost ${logged} nano-USD, Redis last held ${JSON.stringify(last)}`,
      );
      for (const proxy of proxies)
        expect(await budgetOf(tenant, proxy)).toEqual({ spentNanoUsd: logged, reservedNanoUsd: 0 });
      // Past the budget by at most what the processes' slices granted on their own.
      expect(logged).toBeLessThanOrEqual(BUDGET_NANO + PROCESSES * SLICE_NANO);
    },
    40_000,
  );
});

describe('a proxy killed while it holds a budget block', () => {
  it('leaves only that block reserved: spend at least what was answered and at most that plus the block', async () => {
    const tenant: Tenant = 'crash-co';
    const block = Math.floor(SHARE * CRASH_BUDGET_NANO);
    // Under load everywhere: blocks open, run out and settle on every process.
    const warm = await burst(tenant, 40, 4);
    expect(warm.flat().every((status) => status === 200)).toBe(true);
    const [victim, ...survivors] = [proxies[2]!, proxies[0]!, proxies[1]!];
    const loads = survivors.map((proxy) => keepCalling(proxy, tenant, 2));

    // The victim holds a fresh block, with calls answered from it and more in flight, when it dies.
    await waitUntil(async () => (await ledgerBlocksHeld(victim)) === 0, 'the victim to give its blocks back', 5_000);
    await sleep(100);
    const beforeDeath = await burst(tenant, 3, 3, [victim]);
    expect(await ledgerBlocksHeld(victim)).toBe(1);
    const dying = Array.from({ length: 4 }, () => ask(victim, tenant).catch(() => 0));
    await sleep(15);
    const exited = once(victim.child, 'exit');
    victim.child.kill('SIGKILL');
    await exited;
    const lastCalls = await Promise.all(dying);

    // The others serve on.
    const servedBefore = loads.map((load) => load.calls.length);
    await waitUntil(
      () => loads.every((load, index) => load.calls.length > servedBefore[index]! + 5),
      'the others to serve',
      10_000,
    );
    await Promise.all(loads.map((load) => load.stop()));
    const survivorStatuses = loads.flatMap((load) => load.calls.map((call) => call.status));
    expect(survivorStatuses.every((status) => status === 200)).toBe(true);

    // The survivors' blocks settle; the victim's stays reserved until its ttl, when Redis charges it in full.
    const answeredCalls =
      answered(warm.flat()) + answered(beforeDeath.flat()) + answered(lastCalls) + answered(survivorStatuses);
    const answeredNano = EACH_NANO * answeredCalls;
    await waitUntil(
      async () => (await budgetOf(tenant)).reservedNanoUsd === block,
      "only the victim's block reserved",
      10_000,
    );
    await sleep(MAX_AGE_MS);
    const { spentNanoUsd, reservedNanoUsd } = await budgetOf(tenant);
    expect(reservedNanoUsd).toBe(block);
    expect(spentNanoUsd + reservedNanoUsd).toBeGreaterThanOrEqual(answeredNano);
    expect(spentNanoUsd + reservedNanoUsd).toBeLessThanOrEqual(answeredNano + block);
    // The survivors' records are all in Redis's spend, at the cost the bound assumed.
    const survivorRecords = [0, 1]
      .flatMap((index) => recordsOf(tenant, index))
      .filter((record) => record.status === 200);
    expect(survivorRecords.every((record) => record.costNanoUsd === EACH_NANO)).toBe(true);
    expect(spentNanoUsd).toBeGreaterThanOrEqual(costOf(survivorRecords));
  }, 40_000);
});
