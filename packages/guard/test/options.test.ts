// Bad options fail at construction with a stable code, and a typo gets a "did you mean".
import { describe, expect, it } from '@jest/globals';
import { TollgateError } from '@tollgate/core';
import { bodyAfterAuth, createGuard, guardAdminRouter } from '@tollgate/guard';

const codeOf = (build: () => unknown): string | undefined => {
  try {
    build();
  } catch (error) {
    return error instanceof TollgateError ? error.code : `not a TollgateError: ${String(error)}`;
  }
  return undefined;
};

describe('createGuard options', () => {
  it("takes the proxy config's guard section as it is", async () => {
    const guard = createGuard({
      spendAnomaly: {
        bucketSeconds: 60,
        zScore: 4,
        minBuckets: 10,
        minSpendUsd: 0.05,
        action: 'suspend',
        cooldown: '15m',
      },
      repeatedRequests: { max: 20, windowSeconds: 60 },
      authFailures: { max: 20, windowSeconds: 60, block: '5m' },
      alerts: { log: false },
    });
    await guard.close();
  });

  it.each([
    [{ spendAnomaly: { bucketSecs: 60 } }, 'ERR_TG_GUARD_UNKNOWN_OPTION'],
    [{ repeatedRequest: {} }, 'ERR_TG_GUARD_UNKNOWN_OPTION'],
    [{ spendAnomaly: { action: 'ban' } }, 'ERR_TG_GUARD_INVALID_OPTION'],
    [{ spendAnomaly: { zScore: 0 } }, 'ERR_TG_GUARD_INVALID_OPTION'],
    [{ spendAnomaly: { bucketSeconds: 0.0001 } }, 'ERR_TG_GUARD_INVALID_OPTION'],
    [{ spendAnomaly: { cooldown: 'soon' } }, 'ERR_TG_GUARD_INVALID_OPTION'],
    [{ spendAnomaly: { minSpendUsd: -1 } }, 'ERR_TG_GUARD_INVALID_OPTION'],
    [{ spendAnomaly: { throttleScale: 1 } }, 'ERR_TG_GUARD_INVALID_OPTION'],
    [{ repeatedRequests: { max: 0 } }, 'ERR_TG_GUARD_INVALID_OPTION'],
    [{ authFailures: { block: 0 } }, 'ERR_TG_GUARD_INVALID_OPTION'],
    [{ authFailures: { windowSeconds: 1.5 } }, 'ERR_TG_GUARD_INVALID_OPTION'],
    [{ alerts: { webhooks: [{ url: 'not a url' }] } }, 'ERR_TG_GUARD_INVALID_WEBHOOK'],
    [{ subscriber: {} }, 'ERR_TG_GUARD_INVALID_OPTION'],
  ])('refuses %j with %s', (options, code) => {
    expect(codeOf(() => createGuard(options as never))).toBe(code);
  });

  it('suggests the option meant', () => {
    expect(() => createGuard({ spendAnomaly: { zscore: 4 } } as never)).toThrow(/did you mean "zScore"/);
  });

  it('checks bodyAfterAuth and guardAdminRouter options too', () => {
    expect(codeOf(() => bodyAfterAuth((() => undefined) as never, { timeout: 'never' }))).toBe(
      'ERR_TG_GUARD_INVALID_OPTION',
    );
    expect(codeOf(() => bodyAfterAuth('json' as never))).toBe('ERR_TG_GUARD_INVALID_OPTION');
    expect(codeOf(() => guardAdminRouter({} as never, { render: 1 } as never))).toBe('ERR_TG_GUARD_UNKNOWN_OPTION');
  });
});
