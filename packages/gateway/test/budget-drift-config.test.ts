// `budgetDrift`: the sampler's interval turned off by "0s" (as its description says), each mistake named by its field.
import { describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { gatewayOptions, validateConfig } from '../src/config/index.js';
import { rejection } from './helpers/config-rejection.js';

const intervalOf = (interval: unknown) =>
  gatewayOptions(validateConfig({ ...WITH_MOCK, budgetDrift: { interval } }), {}).spend?.drift?.intervalMs;

describe('budgetDrift', () => {
  it('reads "0s" and 0 as no sampler, a duration as its interval, and 30 s when not set', () => {
    expect([intervalOf('0s'), intervalOf(0), intervalOf('0'), intervalOf('2m'), intervalOf(1500)]).toEqual([
      0, 0, 0, 120_000, 1500,
    ]);
    expect(gatewayOptions(validateConfig({ ...WITH_MOCK }), {}).spend?.drift?.intervalMs).toBe(30_000);
  });

  it('refuses a negative or unreadable interval by its field', () => {
    for (const interval of ['-1s', 'soon', -5, '0x'])
      expect(rejection({ budgetDrift: { interval } })).toMatch(
        /budgetDrift\.interval must be a positive number of ms or a string like "10s", "5m", or 0 \("0s"\) for off/,
      );
  });
});
