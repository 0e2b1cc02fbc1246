// A tenant past its budget's soft limit gets its downgrade map: the usage record bills the cheaper model and keeps the one asked for.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import type { UsageRecord } from '@tollgate/core';
import { newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-downgrade-'));
const usageLog = path.join(dir, 'usage.jsonl');
const key = newApiKey();
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startProxy(
    {
      usageLog,
      tenants: {
        acme: { budget: { usd: 1, period: 'month', softLimit: 0.0001 }, downgrade: { 'gpt-4o': 'gpt-4o-mini' } },
      },
      keys: [{ id: 'acme-key', sha256: sha256Hex(key), tenant: 'acme', scopes: ['chat'] }],
    },
    { log: () => undefined },
  );
});

afterAll(async () => {
  await proxy.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('downgrade past the soft limit', () => {
  it('serves gpt-4o until the tenant passes $0.0001, then gpt-4o-mini', async () => {
    const openai = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const ask = () =>
      openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 });
    // 20 gpt-4o output tokens cost $0.0002: the first request alone passes the soft limit.
    expect((await ask()).model).toBe('gpt-4o');
    let downgraded: string | undefined;
    for (let i = 0; i < 20 && downgraded === undefined; i++) {
      const model = (await ask()).model;
      if (model !== 'gpt-4o') downgraded = model;
    }
    expect(downgraded).toBe('gpt-4o-mini');
    await proxy.app.flushUsage();
    const records = readFileSync(usageLog, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as UsageRecord);
    expect(records.at(-1)).toMatchObject({ requestedModel: 'gpt-4o', model: 'gpt-4o-mini', tenantId: 'acme' });
    expect(records[0]).toMatchObject({ requestedModel: 'gpt-4o', model: 'gpt-4o' });
  });
});
