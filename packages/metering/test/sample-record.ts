// A complete UsageRecord for sink tests, with overrides.
import type { UsageRecord } from '@tollgate/core';

export function sampleRecord(overrides: Partial<UsageRecord> = {}): UsageRecord {
  return {
    // One id per record, as the meter makes them; tests that insert several name their request ids.
    id: overrides.requestId === undefined ? 'rec-1' : `rec-${overrides.requestId}`,
    requestId: 'req-1',
    timestamp: '2026-11-20T10:00:00.000Z',
    keyId: 'key-1',
    tenantId: 'acme',
    userId: 'alice',
    feature: 'support-bot',
    route: '/v1/chat/completions',
    provider: 'openai',
    model: 'gpt-4o',
    requestedModel: 'gpt-4o',
    inputTokens: 1000,
    cachedInputTokens: 400,
    cacheWriteTokens: 0,
    outputTokens: 200,
    reasoningTokens: 50,
    costNanoUsd: 3_500_000,
    estimatedCostNanoUsd: 9_000_000,
    status: 200,
    stream: true,
    aborted: false,
    latencyMs: 1234,
    usageSource: 'provider',
    ...overrides,
  };
}
