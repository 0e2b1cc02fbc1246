// Usage records that the ledger's tests and the report command's tests (packages/cli) both read: spend over tenants,
// features, tags and models, and what caching saved.
import type { UsageRecord } from '@tollgate/core';
import { sampleRecord } from './sample-record.js';

/** Five requests in the last 30 hours over two tenants (and none), features, tags and models; one 10 days before. */
export function spendRecords(now: number): UsageRecord[] {
  const hoursAgo = (hours: number) => new Date(now - hours * 3_600_000).toISOString();
  return [
    sampleRecord({
      requestId: 'r1',
      timestamp: hoursAgo(1),
      tenantId: 'acme',
      feature: 'support-bot',
      tags: ['eu', 'beta'],
      model: 'gpt-4o',
      costNanoUsd: 3_000_000,
      inputTokens: 1000,
      outputTokens: 100,
    }),
    sampleRecord({
      requestId: 'r2',
      timestamp: hoursAgo(2),
      tenantId: 'acme',
      feature: 'search',
      model: 'gpt-4o-mini',
      costNanoUsd: 1_000_000,
      inputTokens: 500,
      outputTokens: 50,
    }),
    sampleRecord({
      requestId: 'r3',
      timestamp: hoursAgo(30),
      tenantId: 'globex',
      feature: 'support-bot',
      tags: ['eu'],
      model: 'gpt-4o',
      costNanoUsd: 7_500_000,
      inputTokens: 2000,
      outputTokens: 300,
      cachedInputTokens: 0,
      reasoningTokens: 0,
    }),
    sampleRecord({ requestId: 'r4', timestamp: hoursAgo(24 * 10), tenantId: 'acme', costNanoUsd: 99_000_000 }),
    sampleRecord({
      requestId: 'r5',
      timestamp: hoursAgo(3),
      tenantId: null,
      feature: null,
      model: 'claude-haiku-4-5',
      costNanoUsd: 250_000,
      inputTokens: 10,
      outputTokens: 5,
      cachedInputTokens: 0,
      reasoningTokens: 0,
    }),
  ];
}

/** Cache hits and cached-input discounts for three tenants in the last 6 hours; one hit 10 days before. */
function cacheRecords(now: number): UsageRecord[] {
  const hoursAgo = (hours: number) => new Date(now - hours * 3_600_000).toISOString();
  return [
    sampleRecord({
      requestId: 'a1',
      timestamp: hoursAgo(1),
      tenantId: 'acme',
      costNanoUsd: 3_000_000,
      savedNanoUsd: 1_250_000,
    }),
    sampleRecord({
      requestId: 'a2',
      timestamp: hoursAgo(2),
      tenantId: 'acme',
      costNanoUsd: 0,
      savedNanoUsd: 4_500_000,
      usageSource: 'cache',
    }),
    sampleRecord({
      requestId: 'a3',
      timestamp: hoursAgo(3),
      tenantId: 'acme',
      costNanoUsd: 450_000,
      savedNanoUsd: 4_050_000,
      usageSource: 'cache',
    }),
    // Past 2^32 nano-USD: the sums are bigint in the database and exact integers here.
    sampleRecord({
      requestId: 'g1',
      timestamp: hoursAgo(4),
      tenantId: 'globex',
      costNanoUsd: 0,
      savedNanoUsd: 2_500_000_000_000,
      usageSource: 'cache',
    }),
    sampleRecord({
      requestId: 'g2',
      timestamp: hoursAgo(5),
      tenantId: 'globex',
      costNanoUsd: 7_000_000,
      savedNanoUsd: 1_234_567_891,
    }),
    // No caching at all: no savedNanoUsd on the record.
    sampleRecord({ requestId: 'i1', timestamp: hoursAgo(6), tenantId: 'initech', costNanoUsd: 1_000_000 }),
    // Before the report's range.
    sampleRecord({
      requestId: 'old',
      timestamp: hoursAgo(24 * 10),
      tenantId: 'acme',
      costNanoUsd: 0,
      savedNanoUsd: 99_000_000,
      usageSource: 'cache',
    }),
  ];
}

/** The cache records, the week a report reads of them, and what it should find per tenant: hits and nano-USD saved. */
export function cacheSavings(now: number) {
  const cached = cacheRecords(now);
  const since = new Date(now - 7 * 86_400_000);
  const inRange = cached.filter((record) => Date.parse(record.timestamp) >= since.getTime());
  const expected = (tenant: string) => {
    const own = inRange.filter((record) => record.tenantId === tenant);
    return {
      cacheHits: own.filter((record) => record.usageSource === 'cache').length,
      savedNanoUsd: own.reduce((sum, record) => sum + (record.savedNanoUsd ?? 0), 0),
    };
  };
  return { cached, since, inRange, expected };
}

/** Requests of two conversations and two features of one tenant, in the last hour, and one of another tenant. */
export const outcomeRecords: readonly UsageRecord[] = [
  sampleRecord({
    id: 'u1',
    requestId: 'r1',
    conversationId: 'c1',
    tenantId: 'acme',
    feature: 'support',
    costNanoUsd: 1_000_000,
  }),
  sampleRecord({
    id: 'u2',
    requestId: 'r2',
    conversationId: 'c1',
    tenantId: 'acme',
    feature: 'support',
    costNanoUsd: 3_000_000,
  }),
  sampleRecord({
    id: 'u3',
    requestId: 'r3',
    conversationId: 'c2',
    tenantId: 'acme',
    feature: 'search',
    costNanoUsd: 500_000,
  }),
  sampleRecord({ id: 'u4', requestId: 'r4', tenantId: 'acme', feature: 'support', costNanoUsd: 2_000_000 }),
  // The conversation c2 goes on in another feature.
  sampleRecord({
    id: 'u5',
    requestId: 'r5',
    conversationId: 'c2',
    tenantId: 'acme',
    feature: 'support',
    costNanoUsd: 250_000,
  }),
  // Another tenant with the same conversation id and a request id of its own.
  sampleRecord({
    id: 'g1',
    requestId: 'g1',
    conversationId: 'c1',
    tenantId: 'globex',
    feature: 'support',
    costNanoUsd: 100,
  }),
];
