// Coding agents through the gateway with the official Anthropic SDK, on memory and Redis stores: Claude Code's
// JSON metadata.user_id (about 140 characters) is served and kept on the record as clientUserId, not refused.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import type { UsageRecord } from '@tollgate/core';
import { createMockProvider } from '@tollgate/providers/mock';
import type { ProxyConfig } from '../packages/gateway/src/config/index.js';
import { memoryAndRedisStores, newApiKey, readUsageLog, sha256Hex, startProxy } from './helpers/proxy.js';
import type { OwnedStores, RunningProxy } from './helpers/proxy.js';

const agentKey = newApiKey();
const messages = [{ role: 'user' as const, content: 'Say hello.' }];
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-sessions-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Claude Code's metadata.user_id: a JSON object of device, account and session, as a string of about 140 characters. */
function claudeCodeUserId(sessionId: string): string {
  return JSON.stringify({ device_id: 'd'.repeat(64), account_uuid: '', session_id: sessionId });
}

describe.each(memoryAndRedisStores('sessions'))('coding agents through the gateway on %s stores', (kind, storesFor) => {
  let owned: OwnedStores;
  let proxy: RunningProxy;
  let config: ProxyConfig;

  const claude = () => new Anthropic({ apiKey: agentKey, baseURL: proxy.url, maxRetries: 0 });

  async function recordOf(requestId: string | null): Promise<UsageRecord | undefined> {
    await proxy.app.flushUsage();
    return readUsageLog(config.usageLog!).find((record) => record.requestId === requestId);
  }

  beforeAll(async () => {
    owned = storesFor();
    config = {
      usageLog: path.join(dir, `${kind}.jsonl`),
      spool: path.join(dir, `${kind}-spool`),
      tiers: { pro: { requestsPerMinute: 1000, models: ['*'] } },
      tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'day' } } },
      keys: [{ id: 'agent-key', sha256: sha256Hex(agentKey), tenant: 'acme' }],
    };
    proxy = await startProxy(config, { stores: owned.stores, mock: createMockProvider() });
  });

  afterAll(async () => {
    await proxy.close();
    await owned.release();
  });

  it("serves Claude Code's 140-character metadata.user_id and keeps it as clientUserId, not as the user", async () => {
    const userId = claudeCodeUserId('5c0ffee0-0000-4000-8000-000000000001');
    expect(userId.length).toBeGreaterThan(128);
    const { data, response } = await claude()
      .messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages, metadata: { user_id: userId } })
      .withResponse();
    expect(data.content.length).toBeGreaterThan(0);
    expect(await recordOf(response.headers.get('x-request-id'))).toMatchObject({
      keyId: 'agent-key',
      userId: null,
      clientUserId: userId,
      status: 200,
    });
  });
});
