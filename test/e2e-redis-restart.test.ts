// A proxy whose Redis restarts without persistence: budget spend is rebuilt from the PostgreSQL ledger within the proxy's check interval, and the budget still refuses at its limit.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import pg from 'pg';
import { usdDecimal } from '../packages/core/src/money.js';
import { createRedisStores } from '@tollgate/redis';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { MOCK_UPSTREAMS, newApiKey, ROOT, sha256Hex, spawnProxy, waitFor } from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const table = `tg_restart_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-redis-restart-'));
const adminKey = newApiKey();
const key = newApiKey();
let redis: PrivateRedis;
let proxy: SpawnedProxy;
let configPath: string;

beforeAll(async () => {
  redis = new PrivateRedis(await freePort());
  await redis.start();
  configPath = path.join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      upstreams: MOCK_UPSTREAMS,
      postgresUrl: POSTGRES_URL,
      postgresTable: table,
      spool: path.join(dir, 'spool'),
      adminKeySha256: sha256Hex(adminKey),
      tenants: { acme: { budget: { usd: 0.002, period: 'day' } } },
      keys: [{ id: 'acme-key', sha256: sha256Hex(key), tenant: 'acme', scopes: [] }],
    }),
  );
  proxy = await spawnProxy({ TOLLGATE_CONFIG: configPath, REDIS_URL: redis.url });
}, 30_000);

afterAll(async () => {
  await proxy?.stop();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
  await client.end();
});

async function budget(): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
  const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  return ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] }).budgets[0]!;
}

describe('Redis restarted without persistence', () => {
  it('gets its budget spend back from the ledger, and the budget keeps refusing past its limit', async () => {
    const openai = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const ask = () =>
      openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 40 });
    for (let i = 0; i < 3; i++) await ask();
    const before = await waitFor(async () => {
      const view = await budget();
      return view.reservedNanoUsd === 0 && view.spentNanoUsd > 0 ? view : undefined;
    }, 'the calls settled');
    const ledger = new pg.Client({ connectionString: POSTGRES_URL });
    await ledger.connect();
    try {
      // The sink creates its table with its first batch.
      const recorded = async () =>
        Number(
          (
            await ledger
              .query(`SELECT coalesce(sum(cost_nano_usd), 0) AS spent FROM "${table}"`)
              .catch(() => ({ rows: [{ spent: -1 }] }))
          ).rows[0].spent,
        );
      await waitFor(
        async () => ((await recorded()) === before.spentNanoUsd ? true : undefined),
        'the ledger to hold every call',
      );

      await redis.stop();
      await redis.start();
      // Within the proxy's check interval (10 s) and the wait for blocks older than the loss (their age, 10 s, and 3 s
      // for their records), the spend is back from the ledger; until then the budget is refused (503), never free.
      let after: { spentNanoUsd: number } | undefined;
      for (let i = 0; i < 200 && after?.spentNanoUsd !== before.spentNanoUsd; i++) {
        after = await budget().catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(after?.spentNanoUsd).toBe(before.spentNanoUsd);
      expect(after?.spentNanoUsd).toBe(await recorded());
    } finally {
      await ledger.end();
    }
    expect(proxy.output()).toMatch(/Redis had lost budget spend; rebuilt \d+ of \d+ budget scope/);
    // The budget counts on from the rebuilt spend: it runs out where it would have without the restart.
    let refused: OpenAIApiError | undefined;
    for (let i = 0; i < 40 && !refused; i++) {
      try {
        await ask();
      } catch (error) {
        refused = error as OpenAIApiError;
      }
    }
    expect(refused?.code).toBe('insufficient_quota');
    const final = await budget();
    expect(final.spentNanoUsd).toBeLessThanOrEqual(2_000_000);
  }, 90_000);

  it('pnpm tollgate reconcile raises the budgets of a wiped Redis to the ledger, by hand', async () => {
    const before = await budget();
    expect(before.spentNanoUsd).toBeGreaterThan(0);
    await proxy.stop();
    await redis.stop();
    await redis.start();
    const run = promisify(execFile);
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', '--conditions=source', 'packages/cli/src/tollgate.ts', 'reconcile'],
      {
        cwd: ROOT,
        env: { ...process.env, TOLLGATE_CONFIG: configPath, REDIS_URL: redis.url },
      },
    );
    // A table of the scopes raised, in USD (never nano-USD).
    expect(stdout).toMatch(
      new RegExp(`^budget:tenant:acme:day:\\S+\\s+${usdDecimal(before.spentNanoUsd).replace('.', '\\.')}$`, 'm'),
    );
    expect(stdout).not.toMatch(/nano/);
    const stores = createRedisStores({ url: redis.url });
    try {
      const key = `budget:tenant:acme:day:${new Date().toISOString().slice(0, 10)}`;
      expect(await stores.ledger.usage([key])).toEqual([{ key, spent: before.spentNanoUsd, reserved: 0, credit: 0 }]);
      // Run again: nothing is below the ledger any more.
      const again = await run(
        process.execPath,
        ['--import', 'tsx', '--conditions=source', 'packages/cli/src/tollgate.ts', 'reconcile'],
        {
          cwd: ROOT,
          env: { ...process.env, TOLLGATE_CONFIG: configPath, REDIS_URL: redis.url },
        },
      );
      expect(again.stdout).toMatch(/^0 of \d+ budget scope\(s\) raised to the ledger/m);
    } finally {
      await stores.close();
    }
  }, 60_000);
});
