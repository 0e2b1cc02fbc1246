// Coding agents through the gateway with the official Anthropic SDK, on memory and Redis stores: Claude Code's
// JSON metadata.user_id (about 140 characters) is served and kept on the record as clientUserId, not refused; its
// x-claude-code-session-id (Codex: session-id) lands on the record and the SQL ledger as `session`.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import pg from 'pg';
import type { UsageRecord } from '@tollgate/core';
import { createMockProvider } from '@tollgate/providers/mock';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import {
  caught,
  memoryAndRedisStores,
  newApiKey,
  readUsageLog,
  sentUntilAnswered,
  sha256Hex,
  startProxy,
  waitFor,
} from './helpers/proxy.js';
import type { OwnedStores, RunningProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const db = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
afterAll(() => db.end());
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
  let config: GatewayConfig;

  const claude = (headers: Record<string, string> = {}) =>
    new Anthropic({ apiKey: agentKey, baseURL: proxy.url, maxRetries: 0, defaultHeaders: headers });

  async function recordOf(requestId: string | null): Promise<UsageRecord | undefined> {
    await proxy.app.flushUsage();
    return readUsageLog(config.usageLog!).find((record) => record.requestId === requestId);
  }

  const table = `tg_sessions_${kind.toLowerCase()}_${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    owned = storesFor();
    config = {
      usageLog: path.join(dir, `${kind}.jsonl`),
      postgresUrl: POSTGRES_URL,
      postgresTable: table,
      spool: path.join(dir, `${kind}-spool`),
      tiers: { pro: { requestsPerMinute: 1000, models: ['*'] } },
      tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'day' } } },
      keys: [{ id: 'agent-key', sha256: sha256Hex(agentKey), tenant: 'acme' }],
    };
    proxy = await startProxy(config, { stores: owned.stores, mock: createMockProvider() });
    // Budgets answer once their spend is rebuilt from the SQL ledger at start (503 until then).
    await sentUntilAnswered(() => claude().messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages }));
  });

  afterAll(async () => {
    await proxy.close();
    await owned.release();
    await db.query(
      `DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_credits", "${table}_audit"`,
    );
    await db.query(`DROP FUNCTION IF EXISTS "${table}_audit_append_only"()`);
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

  it('records the session of x-claude-code-session-id, of session-id, else of the JSON metadata.user_id', async () => {
    const session = '5c0ffee0-0000-4000-8000-00000000000a';
    const metadata = { user_id: claudeCodeUserId('5c0ffee0-0000-4000-8000-00000000000b') };
    const create = (headers: Record<string, string>) =>
      claude(headers).messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages, metadata }).withResponse();
    const fromHeader = await create({ 'x-claude-code-session-id': session });
    const fromCodex = await create({ 'session-id': 'codex-session-1' });
    const fromMetadata = await create({});
    const sessionOf = async ({ response }: { response: Response }) =>
      (await recordOf(response.headers.get('x-request-id')))?.session;
    expect(await sessionOf(fromHeader)).toBe(session);
    expect(await sessionOf(fromCodex)).toBe('codex-session-1');
    expect(await sessionOf(fromMetadata)).toBe('5c0ffee0-0000-4000-8000-00000000000b');
    // The SQL ledger keeps it (column session).
    const id = fromHeader.response.headers.get('x-request-id');
    const row = await waitFor(async () => {
      const { rows } = await db.query<{ session: string | null }>(
        `SELECT session FROM "${table}" WHERE request_id = $1`,
        [id],
      );
      return rows[0];
    }, 'the ledger row');
    expect(row.session).toBe(session);
  });

  it('refuses a session header that is not a session id with 400 invalid_request, sending nothing upstream', async () => {
    const error = await caught(
      claude({ 'x-claude-code-session-id': 'not a session' }).messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 16,
        messages,
      }),
    );
    expect(error).toBeInstanceOf(Anthropic.BadRequestError);
    expect((error as InstanceType<typeof Anthropic.BadRequestError>).error).toMatchObject({
      error: { code: 'invalid_request', param: 'x-claude-code-session-id' },
    });
  });
});
