// Alerts: one stream to a log, a callback and webhooks (JSON or Slack), signed, retried with backoff, once per id and period.
import { createHmac } from 'node:crypto';
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { TollgateError } from '@tollgate/core';
import { budgetAlerts, createAlerts, MemoryGuardStore, softLimitAlerts, type GuardEvent } from '@tollgate/guard';
import { signBody } from '../src/webhook-sender.js';
import { webhookReceiver } from './helpers.js';

const receivers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((receiver) => receiver.close()));
  delete process.env.TEST_HOOK_SECRET;
});

async function receiver() {
  const made = await webhookReceiver();
  receivers.push(made);
  return made;
}

const anomaly = (id = 'anomaly:key:k1:1') => ({
  type: 'anomaly' as const,
  id,
  keyId: 'k1',
  tenantId: 'acme',
  message: 'Key k1 spent $4.00 in 60s, where about $0.05 is usual.',
});

describe('alerts', () => {
  it('POST each event as JSON signed with x-tollgate-signature: sha256=<hex HMAC of the body>, the secret read from secretEnv', async () => {
    process.env.TEST_HOOK_SECRET = 's3cret';
    const hook = await receiver();
    const alerts = createAlerts({ webhooks: [{ url: hook.url, secretEnv: 'TEST_HOOK_SECRET' }] });
    alerts.emit(anomaly());
    await alerts.close();
    expect(hook.received).toHaveLength(1);
    const [delivery] = hook.received;
    const expected = `sha256=${createHmac('sha256', 's3cret').update(delivery!.body).digest('hex')}`;
    expect(delivery!.headers['x-tollgate-signature']).toBe(expected);
    expect(signBody('s3cret', delivery!.body)).toBe(expected);
    expect(delivery!.headers['x-tollgate-event']).toBe('anomaly');
    const event = JSON.parse(delivery!.body) as GuardEvent;
    expect(event).toMatchObject({ type: 'anomaly', id: 'anomaly:key:k1:1', keyId: 'k1', tenantId: 'acme' });
    expect(Date.parse(event.at)).toBeGreaterThan(0);
  });

  it('speaks Slack incoming-webhook JSON when asked', async () => {
    const hook = await receiver();
    const alerts = createAlerts({ webhooks: [{ url: hook.url, format: 'slack' }] });
    alerts.emit(anomaly());
    await alerts.close();
    const message = JSON.parse(hook.received[0]!.body) as { text: string; blocks: unknown[] };
    expect(message.text).toBe('tollgate anomaly: Key k1 spent $4.00 in 60s, where about $0.05 is usual.');
    expect(message.blocks).toHaveLength(2);
  });

  it('retries a failed delivery with backoff until it lands, and tells onFailure when every attempt failed', async () => {
    const hook = await receiver();
    hook.fail(2);
    const failures: unknown[] = [];
    const alerts = createAlerts({
      webhooks: [{ url: hook.url, initialDelay: 20, attempts: 3 }],
      onFailure: (error) => failures.push(error),
    });
    alerts.emit(anomaly());
    await alerts.flush();
    expect(hook.attempts).toBe(3);
    expect(hook.received).toHaveLength(1);
    hook.fail(5);
    alerts.emit(anomaly('anomaly:key:k1:2'));
    await alerts.close();
    expect(failures).toHaveLength(1);
    expect(String(failures[0])).toContain('HTTP 500');
  });

  it('delivers an event id once per period across instances that share claims (a store)', async () => {
    const hook = await receiver();
    const claims = new MemoryGuardStore();
    const instances = [1, 2, 3].map(() => createAlerts({ webhooks: [{ url: hook.url }], claims }));
    for (const alerts of instances) {
      alerts.emit(anomaly());
      alerts.emit(anomaly());
    }
    await Promise.all(instances.map((alerts) => alerts.close()));
    expect(hook.received).toHaveLength(1);
  });

  it('calls onEvent and a log function; their failures never reach the caller', async () => {
    const seen: string[] = [];
    const alerts = createAlerts({
      onEvent: async (event) => {
        seen.push(`event ${event.type}`);
        throw new Error('receiver down');
      },
      log: (event) => seen.push(`log ${event.id}`),
    });
    const warnings = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    expect(() => alerts.emit(anomaly())).not.toThrow();
    await alerts.close();
    expect(seen).toEqual(['log anomaly:key:k1:1', 'event anomaly']);
    expect(String(warnings.mock.calls[0]?.[0])).toContain('receiver down');
    warnings.mockRestore();
  });

  it('turn budget events into budget.threshold and budget.exhausted events, one per budget, threshold and period', async () => {
    const events: GuardEvent[] = [];
    const alerts = createAlerts({ onEvent: (event) => void events.push(event) });
    const tenant = {
      scope: 'tenant',
      id: 'acme',
      period: 'month',
      key: 'budget:tenant:acme:month:2026-11',
      limitUsd: 100,
      resetAt: '2026-12-01T00:00:00.000Z',
    };
    const alert = budgetAlerts(alerts);
    alert({ ...tenant, type: 'budget.threshold', threshold: 0.8, spentUsd: 81.2 });
    alert({ ...tenant, type: 'budget.threshold', threshold: 0.8, spentUsd: 82 });
    alert({ ...tenant, type: 'budget.threshold', threshold: 0.95, spentUsd: 96 });
    alert({ ...tenant, type: 'budget.exhausted', spentUsd: 99.99 });
    alert({
      type: 'budget.exhausted',
      scope: 'user',
      id: 'bob',
      tenantId: 'globex',
      period: 'day',
      key: 'budget:tenant:globex:user:bob:day:2026-11-24',
      limitUsd: 1,
      spentUsd: 1,
      resetAt: '2026-11-25T00:00:00.000Z',
    });
    // The old name still works.
    expect(softLimitAlerts).toBe(budgetAlerts);
    await alerts.close();
    expect(events.map((e) => [e.type, e.tenantId, e.details?.threshold])).toEqual([
      ['budget.threshold', 'acme', 0.8],
      ['budget.threshold', 'acme', 0.95],
      ['budget.exhausted', 'acme', undefined],
      ['budget.exhausted', 'globex', undefined],
    ]);
    expect(events[0]!.message).toBe(
      'The budget of tenant acme passed 80% of $100 this month ($81.20 spent); it resets at 2026-12-01T00:00:00.000Z.',
    );
    expect(events[3]!.message).toContain('The budget of user bob of tenant globex ran out');
  });

  it('turn a budget.forecast event into one alert per budget and period, saying where spend is heading', async () => {
    const events: GuardEvent[] = [];
    const alerts = createAlerts({ onEvent: (event) => void events.push(event) });
    const notice = {
      type: 'budget.forecast' as const,
      scope: 'tenant',
      id: 'acme',
      period: 'month',
      key: 'budget:tenant:acme:month:2026-11',
      limitUsd: 100,
      spentUsd: 40,
      forecastUsd: 131.5,
      resetAt: '2026-12-01T00:00:00.000Z',
    };
    budgetAlerts(alerts)(notice);
    budgetAlerts(alerts)({ ...notice, spentUsd: 41, forecastUsd: 133 });
    await alerts.close();
    expect(events.map((e) => [e.type, e.id, e.tenantId, e.details?.forecastUsd])).toEqual([
      ['budget.forecast', 'budget.forecast:budget:tenant:acme:month:2026-11', 'acme', 131.5],
    ]);
    expect(events[0]!.message).toBe(
      'The budget of tenant acme is on course for $131.50 by 2026-12-01T00:00:00.000Z, over $100 this month ($40.00 spent so far).',
    );
  });

  it('turn each budget.drift event into an alert of its own, the drift to the nano-USD', async () => {
    const events: GuardEvent[] = [];
    const alerts = createAlerts({ onEvent: (event) => void events.push(event) });
    const notice = {
      type: 'budget.drift' as const,
      scope: 'key',
      id: 'k1',
      period: 'day',
      key: 'budget:key:k1:day:2026-11-27',
      limitUsd: 5,
      spentUsd: 4.500000007,
      driftNanoUsd: 500_000_007,
      ledgerNanoUsd: 4_000_000_000,
      boundNanoUsd: 100_000_000,
      resetAt: '2026-11-28T00:00:00.000Z',
      timestamp: '2026-11-27T04:00:00.000Z',
    };
    budgetAlerts(alerts)(notice);
    // Repaired, then off again: a new alert, here below the ledger.
    budgetAlerts(alerts)({ ...notice, driftNanoUsd: -2_000_000_000, timestamp: '2026-11-27T05:00:00.000Z' });
    await alerts.close();
    expect(events.map((e) => [e.type, e.keyId, e.details?.driftNanoUsd])).toEqual([
      ['budget.drift', 'k1', 500_000_007],
      ['budget.drift', 'k1', -2_000_000_000],
    ]);
    expect(events[0]!.message).toBe(
      'The budget of key k1: its counter is +$0.500000007 off the usage ledger ($4.000000000 recorded there, day; bound $0.100000000); POST /admin/budgets/.../repair sets it to the ledger.',
    );
    expect(events[1]!.message).toContain('its counter is -$2.000000000 off the usage ledger');
  });

  it('refuse a webhook whose secretEnv is not set, a bad URL and an unknown event type', () => {
    expect(() =>
      createAlerts({ webhooks: [{ url: 'https://hooks.example/x', secretEnv: 'NOT_SET_ANYWHERE' }] }),
    ).toThrow(TollgateError);
    expect(() =>
      createAlerts({ webhooks: [{ url: 'https://hooks.example/x', secretEnv: 'NOT_SET_ANYWHERE' }] }),
    ).toThrow(/ERR_TG_GUARD_MISSING_SECRET/);
    expect(() => createAlerts({ webhooks: [{ url: 'ftp://x' }] })).toThrow(/ERR_TG_GUARD_INVALID_WEBHOOK/);
    expect(() => createAlerts({ webhooks: [{ url: 'https://x', formats: 'slack' } as never] })).toThrow(
      /ERR_TG_GUARD_UNKNOWN_OPTION/,
    );
    expect(() => createAlerts({ log: false }).emit({ type: 'nope' as never, id: 'x', message: 'x' })).toThrow(
      TypeError,
    );
  });
});
