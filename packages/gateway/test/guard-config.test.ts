// The proxy config's `guard`, `guardrails`, `trustProxy` and `alerts`: valid sections pass as written, each mistake is named by its field.
import { describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { createGatewayApp } from '../src/app.js';
import { validateConfig } from '../src/config/index.js';
import { rejection } from './helpers/config-rejection.js';

const contract = {
  ...WITH_MOCK,
  tiers: { free: { requestsPerMinute: 5 }, pro: { requestsPerMinute: 600 } },
  guard: {
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
    shedding: {
      priorities: { free: 0, pro: 10 },
      maxConcurrency: 500,
      maxEventLoopDelay: '100ms',
      maxUpstreamErrorRate: 0.5,
    },
    bodyTimeout: '10s',
  },
  trustProxy: 'loopback',
  alerts: { webhooks: [{ url: 'https://hooks.example/x', secretEnv: 'HOOK_SECRET', format: 'slack' }] },
};

describe('proxy config: guard, trustProxy, alerts', () => {
  it('accepts the contract names as written', () => {
    const config = validateConfig(contract);
    expect(config.guard).toEqual(contract.guard);
    expect(config.trustProxy).toBe('loopback');
    expect(config.alerts).toEqual(contract.alerts);
    expect(validateConfig({ ...WITH_MOCK, trustProxy: ['10.0.0.0/8', '127.0.0.1'] }).trustProxy).toEqual([
      '10.0.0.0/8',
      '127.0.0.1',
    ]);
    expect(validateConfig({ ...WITH_MOCK, trustProxy: 2 }).trustProxy).toBe(2);
    expect(validateConfig({ ...WITH_MOCK, guard: { authFailures: {} } }).guard).toEqual({ authFailures: {} });
  });

  it('names the faulty guard field, with the guard package judging the values', () => {
    expect(rejection({ guard: { spendAnomaly: { bucketSeconds: 0 } } })).toMatch(
      /guard\.spendAnomaly\.bucketSeconds must be a positive number/,
    );
    expect(rejection({ guard: { spendAnomaly: { action: 'ban' } } })).toMatch(
      /guard\.spendAnomaly\.action must be one of alert, throttle, suspend/,
    );
    expect(rejection({ guard: { spendAnomaly: { cooldown: 'soon' } } })).toMatch(
      /guard\.spendAnomaly\.cooldown must be a positive number of ms or a string like/,
    );
    expect(rejection({ guard: { spendAnomaly: { bucketSecond: 60 } } })).toMatch(
      /guard\.spendAnomaly has no field "bucketSecond"; did you mean "bucketSeconds"\?/,
    );
    expect(rejection({ guard: { repeatedRequests: { max: 2.5 } } })).toMatch(
      /guard\.repeatedRequests\.max must be a positive integer/,
    );
    expect(rejection({ guard: { authFailures: { block: -1 } } })).toMatch(
      /guard\.authFailures\.block must be a positive number of ms/,
    );
    expect(rejection({ guard: { authFailures: 'on' } })).toMatch(/guard\.authFailures must be an object/);
    expect(rejection({ guard: { loops: {} } })).toMatch(/guard has no field "loops"/);
    expect(rejection({ guard: { bodyTimeout: 0 } })).toMatch(/guard\.bodyTimeout must be a positive number of ms/);
  });

  it('names the faulty shedding field, and priorities must name tiers', () => {
    const tiers = { free: {}, pro: {} };
    expect(rejection({ tiers, guard: { shedding: { priorities: { free: 'low' } } } })).toMatch(
      /guard\.shedding\.priorities\.free must be a number/,
    );
    expect(rejection({ tiers, guard: { shedding: { priorities: { prp: 1 } } } })).toMatch(
      /guard\.shedding\.priorities names an unknown tier "prp"; did you mean "pro"\?/,
    );
    expect(rejection({ tiers, guard: { shedding: { maxConcurrency: 0 } } })).toMatch(
      /guard\.shedding\.maxConcurrency must be a positive integer/,
    );
    expect(rejection({ tiers, guard: { shedding: { maxUpstreamErrorRate: 2 } } })).toMatch(
      /guard\.shedding\.maxUpstreamErrorRate must be a fraction/,
    );
  });

  it('checks trustProxy as Express would', () => {
    expect(rejection({ trustProxy: 'not-an-address' })).toMatch(
      /^Invalid proxy config: trustProxy: invalid IP address: not-an-address/,
    );
    expect(rejection({ trustProxy: '' })).toMatch(/trustProxy must be true, false, a number of hops/);
    expect(rejection({ trustProxy: -1 })).toMatch(/trustProxy must be true, false, a number of hops/);
    expect(rejection({ trustProxy: { loopback: true } })).toMatch(/trustProxy must be true, false, a number of hops/);
  });

  it('names the faulty webhook field', () => {
    expect(rejection({ alerts: { webhooks: {} } })).toMatch(/alerts\.webhooks must be an array/);
    expect(rejection({ alerts: { webhooks: [{ url: 'ftp://x' }] } })).toMatch(
      /alerts\.webhooks\[0\]\.url must use http: or https:/,
    );
    expect(rejection({ alerts: { webhooks: [{ url: 'https://x', format: 'teams' }] } })).toMatch(
      /alerts\.webhooks\[0\]\.format must be "json" or "slack"/,
    );
    expect(rejection({ alerts: { webhooks: [{ url: 'https://x', secretEnv: 'not a name' }] } })).toMatch(
      /alerts\.webhooks\[0\]\.secretEnv must be an environment variable name/,
    );
    expect(rejection({ alerts: { webhooks: [{ url: 'https://x', secret: 'inline' }] } })).toMatch(
      /alerts\.webhooks\[0\] has no field "secret"/,
    );
  });

  it('refuses to build a proxy whose webhook secret is not in the environment', () => {
    const config = validateConfig({
      ...WITH_MOCK,
      alerts: { webhooks: [{ url: 'https://hooks.example/x', secretEnv: 'TG_TEST_UNSET_HOOK_SECRET' }] },
    });
    expect(() => createGatewayApp(config, { env: {}, metrics: false, log: () => undefined })).toThrow(
      /alerts\.webhooks\[0\]\.secretEnv names TG_TEST_UNSET_HOOK_SECRET, which is not set/,
    );
  });
});

describe('proxy config: guardrails', () => {
  it('accepts the design example as written', () => {
    const guardrails = { maxPromptChars: 200000, deny: ['(?i)ignore (all|previous) instructions'], pii: 'mask' };
    expect(validateConfig({ ...WITH_MOCK, guardrails }).guardrails).toEqual(guardrails);
    expect(validateConfig({ ...WITH_MOCK, guardrails: {} }).guardrails).toEqual({});
  });

  it('names the faulty field, with the guard package compiling the patterns', () => {
    expect(rejection({ guardrails: { deny: ['fine', '(unclosed'] } })).toMatch(
      /^Invalid proxy config: guardrails\.deny\[1\] is not a valid regular expression: /,
    );
    expect(rejection({ guardrails: { deny: ['say (?i)hello'] } })).toMatch(
      /guardrails\.deny\[0\] is not a valid regular expression: .*inline flags only at the start/,
    );
    expect(rejection({ guardrails: { deny: [''] } })).toMatch(/guardrails\.deny\[0\] must be a non-empty string/);
    expect(rejection({ guardrails: { deny: '(?i)x' } })).toMatch(/guardrails\.deny must be an array of patterns/);
    expect(rejection({ guardrails: { pii: 'redact' } })).toMatch(/guardrails\.pii must be "off", "mask" or "block"/);
    expect(rejection({ guardrails: { maxPromptChars: 0 } })).toMatch(
      /guardrails\.maxPromptChars must be a positive integer/,
    );
    expect(rejection({ guardrails: { pi: 'mask' } })).toMatch(/guardrails has no field "pi"; did you mean "pii"\?/);
  });
});
