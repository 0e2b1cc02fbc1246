// Shadow mode through the official SDKs, on memory and on Redis stores (two gateways sharing them): what a limit or a
// budget would have refused is served and recorded (the usage record's shadowRefusal, the metric), and a budget
// charges what the traffic really spent, past its limit, to the nano-USD.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import type { UsageRecord } from '@tollgate/core';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { createMockProvider } from '@tollgate/providers/mock';
import {
  memoryAndRedisStores,
  newApiKey,
  readUsageLog,
  sha256Hex,
  startSharingGateways,
  waitFor,
  type OwnedStores,
  type RunningProxy,
} from './helpers/proxy.js';
import { sdkTurns } from './helpers/sdk-turns.js';

const adminKey = newApiKey();
const keys = { trial: newApiKey(), spent: newApiKey(), enforced: newApiKey() };

/**
 * A budget of 10,000 nano-USD: one answer of 100 output tokens of gpt-4o-mini costs about six times that, and the
 * least answer the budget would clamp a call to costs more than it holds, so every call would be refused.
 */
const SPENT_BUDGET_USD = 0.00001;

function configFor(usageLog: string): GatewayConfig {
  return {
    usageLog,
    adminKeySha256: sha256Hex(adminKey),
    tiers: {
      trial: { requestsPerMinute: 1, tokensPerMinute: 1_000_000, models: ['*'], shadow: true },
      pro: { requestsPerMinute: 1000, models: ['*'] },
      strict: { requestsPerMinute: 1, models: ['*'] },
    },
    tenants: {
      'trial-co': { tier: 'trial' },
      'spent-co': { tier: 'pro', shadow: true, budget: { usd: SPENT_BUDGET_USD, period: 'day' } },
      'strict-co': { tier: 'strict' },
    },
    keys: [
      { id: 'trial', sha256: sha256Hex(keys.trial), tenant: 'trial-co' },
      { id: 'spent', sha256: sha256Hex(keys.spent), tenant: 'spent-co' },
      { id: 'enforced', sha256: sha256Hex(keys.enforced), tenant: 'strict-co' },
    ],
  };
}

/** The value of one series of the gateways' metrics, summed over them. */
async function metricOf(gateways: RunningProxy[], series: string): Promise<number> {
  let total = 0;
  for (const gateway of gateways) {
    const response = await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } });
    const line = (await response.text()).split('\n').find((text) => text.startsWith(`${series} `));
    total += line === undefined ? 0 : Number(line.split(' ')[1]);
  }
  return total;
}

describe.each(memoryAndRedisStores('shadow'))('shadow mode on %s stores', (kind, storesFor) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-shadow-'));
  let shared: OwnedStores;
  let running: Awaited<ReturnType<typeof startSharingGateways>>;
  const gateways: RunningProxy[] = [];
  const logs: string[] = [];
  const { gateway, chat, message } = sdkTurns(gateways);
  /** Every record the gateways wrote for `keyId`, oldest first. */
  async function recordsOf(keyId: string): Promise<UsageRecord[]> {
    for (const each of gateways) await each.app.flushUsage();
    return logs
      .flatMap((log) => readUsageLog(log))
      .filter((record) => record.keyId === keyId)
      .sort((a, b) => a.timestamp.localeCompare(b.timestamp));
  }

  beforeAll(async () => {
    shared = storesFor();
    const logOf = (index: number) => (logs[index] = path.join(dir, `usage-${index}.jsonl`));
    running = await startSharingGateways(
      kind,
      shared,
      (index) => configFor(logOf(index)),
      () => ({ mock: createMockProvider({ replyTokens: 100 }) }),
    );
    gateways.push(...running.gateways);
  });

  afterAll(async () => {
    await running.close();
    await shared.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves a shadow tier past its request limit, recording each would-be refusal and counting it', async () => {
    const metric = 'tollgate_shadow_refusals_total{reason="rate_limit_exceeded",tenant="trial-co"}';
    const before = await metricOf(gateways, metric);
    // One request a minute: the second and third would be refused.
    for (let n = 0; n < 3; n++) expect((await chat(keys.trial, n)).choices[0]?.message.content).toBeTruthy();
    const records = await recordsOf('trial');
    expect(records.map((record) => [record.status, record.shadowRefusal])).toEqual([
      [200, undefined],
      [200, 'rate_limit_exceeded'],
      [200, 'rate_limit_exceeded'],
    ]);
    // Served, so billed as any answer.
    for (const record of records) expect(record.costNanoUsd).toBeGreaterThan(0);
    expect((await metricOf(gateways, metric)) - before).toBe(2);
  });

  it('still refuses a tier without shadow', async () => {
    expect((await chat(keys.enforced, 0)).choices).toHaveLength(1);
    const error = await chat(keys.enforced, 1).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect((await recordsOf('enforced')).map((record) => record.shadowRefusal)).toEqual([undefined, undefined]);
  });

  it('serves a shadow tenant whose budget is spent, and charges its real spend to the nano-USD', async () => {
    const metric = 'tollgate_shadow_refusals_total{reason="insufficient_quota",tenant="spent-co"}';
    const before = await metricOf(gateways, metric);
    // Both SDKs, both gateways: the budget cannot pay for the least answer of any of them.
    expect((await chat(keys.spent, 0)).choices).toHaveLength(1);
    expect((await message(keys.spent, 1)).type).toBe('message');
    expect((await chat(keys.spent, 2)).choices).toHaveLength(1);
    expect((await message(keys.spent, 3)).type).toBe('message');
    const records = await recordsOf('spent');
    expect(records).toHaveLength(4);
    expect(records.every((record) => record.status === 200)).toBe(true);
    expect(records.map((record) => record.shadowRefusal)).toEqual(Array(4).fill('insufficient_quota'));
    const billed = records.reduce((sum, record) => sum + record.costNanoUsd, 0);
    expect(billed).toBeGreaterThan(SPENT_BUDGET_USD * 1e9 * 3);
    // Each settle lands after its answer: the ledger holds what the records bill once all four settled.
    const budget = await waitFor(async () => {
      const response = await fetch(`${gateway(0).url}/admin/budgets/tenant/spent-co`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      const [status] = ((await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] })
        .budgets;
      return status && status.spentNanoUsd === billed ? status : undefined;
    }, 'the ledger to hold what the records bill');
    // Nothing held for them (nothing refused them), and the budget shows the spend past its limit.
    expect(budget.reservedNanoUsd).toBe(0);
    expect(budget.spentNanoUsd).toBeGreaterThan(SPENT_BUDGET_USD * 1e9);
    expect((await metricOf(gateways, metric)) - before).toBe(4);
  });
});
