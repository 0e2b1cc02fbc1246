// Work that outlives its request (a Batch job): charged whole to every budget at once, corrected to its real cost
// later, from any process (docs/batch.md).
import { describe, expect, it } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import type { Identity } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';

const identity: Identity = { keyId: 'k1', tenantId: 'acme', scopes: [], authMethod: 'api_key' };
const USD = 1_000_000_000;

function guardOf() {
  const { ledger } = createMemoryStores();
  const guard = budgetGuard({
    ledger,
    tenants: { acme: { usd: 1, period: 'day' } },
    global: { usd: 5, period: 'day' },
  });
  const spent = async () => (await guard.statusFor(identity)).map((status) => status.spentNanoUsd);
  return { guard, spent };
}

describe('spendWhole and refundSpend', () => {
  it('charge every budget the whole amount at once, then give back what the work did not cost', async () => {
    const { guard, spent } = guardOf();
    const charged = await guard.spendWhole(identity, ['gpt-4o-mini'], 'batch:1', 0.4 * USD);
    expect(charged.ok).toBe(true);
    expect(await spent()).toEqual([0.4 * USD, 0.4 * USD]);
    if (!charged.ok) return;
    expect(charged.scopes).toHaveLength(2);
    // Nothing is held: the charge is spend, which no TTL gives back.
    expect((await guard.statusFor(identity)).map((status) => status.reservedNanoUsd)).toEqual([0, 0]);
    expect(await guard.refundSpend(charged.scopes, 0.3 * USD)).toBe(true);
    expect(await spent()).toEqual([0.1 * USD, 0.1 * USD]);
    // Work that cost more than its worst case is charged the rest.
    expect(await guard.refundSpend(charged.scopes, -0.05 * USD)).toBe(true);
    expect(await spent()).toEqual([0.15 * USD, 0.15 * USD]);
    await guard.close();
  });

  it('refuse, with insufficient_quota and nothing charged, an amount a budget cannot take', async () => {
    const { guard, spent } = guardOf();
    const refused = await guard.spendWhole(identity, ['gpt-4o-mini'], 'batch:2', 2 * USD);
    expect(refused.ok).toBe(false);
    if (refused.ok) return;
    expect(refused.error.code).toBe('insufficient_quota');
    expect(refused.error.status).toBe(429);
    expect(refused.error.message).toContain('tenant:acme');
    expect(await spent()).toEqual([0, 0]);
    await guard.close();
  });

  it('keep a correction from lowering spend that other calls added meanwhile', async () => {
    const { guard, spent } = guardOf();
    const charged = await guard.spendWhole(identity, ['gpt-4o-mini'], 'batch:3', 0.5 * USD);
    const other = await guard.spendWhole(identity, ['gpt-4o-mini'], 'call:1', 0.2 * USD);
    expect(charged.ok && other.ok).toBe(true);
    if (!charged.ok) return;
    await guard.refundSpend(charged.scopes, 0.5 * USD);
    expect(await spent()).toEqual([0.2 * USD, 0.2 * USD]);
    await guard.close();
  });
});
