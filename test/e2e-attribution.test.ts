// Attribution through the gateway, with the official OpenAI, Anthropic and Google SDKs, on memory and Redis stores:
// a request without the required end user is refused with 400 attribution_required before anything is counted,
// reserved or sent; two end users of one key are two userIds in the usage records; a key's own user and feature win
// over headers; tags land on the record, in the SQL ledger and in `tollgate report --by tag`; malformed headers are
// 400, and a body end user that cannot be a user id is no user (where one is required, 400 attribution_required).
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Anthropic from '@anthropic-ai/sdk';
import { ApiError as GoogleApiError, GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import pg from 'pg';
import { pino } from 'pino';
import { createMemoryStores } from '@tollgate/core';
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import { runReportCommand } from '@tollgate/cli';
import { createMockProvider } from '@tollgate/providers/mock';
import type { MockProvider } from '@tollgate/providers/mock';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { caught, newApiKey, readUsageLog, redisTestStores, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const adminKey = newApiKey();
/** One key an app serves many end users with, and one fixed to its user and feature. */
const keys = { app: newApiKey(), alice: newApiKey(), tight: newApiKey(), mobile: newApiKey() };
const messages = [{ role: 'user' as const, content: 'Say hello.' }];

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-attribution-'));
const db = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
const tables: string[] = [];
afterAll(async () => {
  for (const table of tables)
    await db.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
  await db.end();
  rmSync(dir, { recursive: true, force: true });
});

function configFor(name: string): GatewayConfig {
  const table = `tg_attribution_${name}_${randomBytes(4).toString('hex')}`;
  tables.push(table);
  return {
    usageLog: path.join(dir, `${name}.jsonl`),
    postgresUrl: POSTGRES_URL,
    postgresTable: table,
    spool: path.join(dir, `${name}-spool`),
    adminKeySha256: sha256Hex(adminKey),
    metrics: { public: true },
    tiers: {
      pro: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, models: ['*'] },
      tight: { requestsPerMinute: 2, models: ['*'] },
    },
    tenants: { acme: { tier: 'pro', budget: { usd: 100, period: 'day' } }, 'tight-co': { tier: 'tight' } },
    keys: [
      { id: 'app', sha256: sha256Hex(keys.app), tenant: 'acme' },
      { id: 'alice-key', sha256: sha256Hex(keys.alice), tenant: 'acme', user: 'alice', feature: 'support-bot' },
      { id: 'tight-key', sha256: sha256Hex(keys.tight), tenant: 'tight-co' },
      { id: 'mobile-key', sha256: sha256Hex(keys.mobile), tenant: 'acme', tags: ['mobile'] },
    ],
    attribution: { require: ['user'] },
  };
}

const storeKinds: [string, () => { stores: TollgateStores; release(): Promise<void> }][] = [
  [
    'memory',
    () => {
      const stores = createMemoryStores();
      return { stores, release: () => stores.close() };
    },
  ],
  ['redis', () => redisTestStores('attribution')],
];

/** A request with the headers exactly as given (a header named twice is sent twice), as no SDK would send it. */
function rawPost(
  url: string,
  headers: Record<string, string | string[]>,
  body: unknown,
): Promise<{ status: number; body: { error?: { code: string; param: string | null; message: string } } }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as never }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setHeader('content-type', 'application/json');
    for (const [name, value] of Object.entries(headers)) req.setHeader(name, value);
    req.end(JSON.stringify(body));
  });
}

describe.each(storeKinds)('attribution through the gateway on %s stores', (kind, storesFor) => {
  let shared: ReturnType<typeof storesFor>;
  let mock: MockProvider;
  let proxy: RunningProxy;
  let config: GatewayConfig;
  /** The proxy's access and error log, line by line. */
  const logLines: Record<string, unknown>[] = [];

  const openaiOf = (key: string, headers: Record<string, string> = {}) =>
    new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0, defaultHeaders: headers });
  const anthropicOf = (key: string, headers: Record<string, string> = {}) =>
    new Anthropic({ apiKey: key, baseURL: proxy.url, maxRetries: 0, defaultHeaders: headers });
  const googleOf = (key: string, headers: Record<string, string> = {}) =>
    new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: proxy.url, apiVersion: 'v1beta', headers } });

  /** The records written so far (the usage log), once the sinks flushed. */
  async function records(): Promise<UsageRecord[]> {
    await proxy.app.flushUsage();
    return readUsageLog(config.usageLog!);
  }

  async function tenantBudget(): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }> {
    const response = await fetch(`${proxy.url}/admin/budgets/tenant/acme`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    const { budgets } = (await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] };
    return { spentNanoUsd: budgets[0]!.spentNanoUsd, reservedNanoUsd: budgets[0]!.reservedNanoUsd };
  }

  beforeAll(async () => {
    shared = storesFor();
    mock = createMockProvider();
    config = configFor(kind);
    const logger = pino({ level: 'info' }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
    proxy = await startProxy(config, { stores: shared.stores, mock, logger });
  });

  afterAll(async () => {
    await proxy.close();
    await shared.release();
  });

  it('refuses a request naming no end user with 400 attribution_required on every provider route, before anything is counted, reserved or sent', async () => {
    const before = mock.requests.length;
    const openai = openaiOf(keys.app);
    const refusals = [
      await caught(openai.chat.completions.create({ model: 'gpt-4o-mini', messages })),
      await caught(openai.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true })),
      await caught(openai.responses.create({ model: 'gpt-4o-mini', input: 'hi' })),
      await caught(openai.embeddings.create({ model: 'text-embedding-3-small', input: 'hi' })),
    ];
    for (const error of refusals) {
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      expect((error as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({
        code: 'attribution_required',
        param: 'user',
        message: "This request must name its end user: send the x-tollgate-user header or the body's user.",
      });
    }
    const anthropicError = await caught(
      anthropicOf(keys.app).messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages }),
    );
    expect(anthropicError).toBeInstanceOf(Anthropic.BadRequestError);
    const anthropicBody = JSON.stringify((anthropicError as InstanceType<typeof Anthropic.BadRequestError>).error);
    expect(anthropicBody).toContain('attribution_required');
    // Each API's message names its own body field, and Gemini's only the header (its API has none).
    expect(anthropicBody).toContain("send the x-tollgate-user header or the body's metadata.user_id.");
    const googleError = await caught(
      googleOf(keys.app).models.generateContent({ model: 'gemini-2.5-flash', contents: 'hi' }),
    );
    expect(googleError).toBeInstanceOf(GoogleApiError);
    expect((googleError as GoogleApiError).status).toBe(400);
    expect((googleError as GoogleApiError).message).toContain(
      'must name its end user: send the x-tollgate-user header.',
    );

    // The upstream received nothing, nothing was reserved or spent, and nothing was recorded.
    expect(mock.requests.length).toBe(before);
    expect(await tenantBudget()).toEqual({ spentNanoUsd: 0, reservedNanoUsd: 0 });
    expect(await records()).toEqual([]);
    // Counted as refusals of the attribution layer, once each.
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    expect(metrics).toMatch(
      /^tollgate_refusals_total\{layer="attribution",reason="attribution_required",tenant="acme"\} 6$/m,
    );
  });

  it('asks the same of the free token counts (Anthropic count_tokens, Gemini countTokens)', async () => {
    const refused = await caught(anthropicOf(keys.app).messages.countTokens({ model: 'claude-haiku-4-5', messages }));
    expect(refused).toBeInstanceOf(Anthropic.BadRequestError);
    const counted = await anthropicOf(keys.app, { 'x-tollgate-user': 'u-count' }).messages.countTokens({
      model: 'claude-haiku-4-5',
      messages,
    });
    expect(counted.input_tokens).toBeGreaterThan(0);
    const gemini = await caught(googleOf(keys.app).models.countTokens({ model: 'gemini-2.5-flash', contents: 'hi' }));
    expect((gemini as GoogleApiError).status).toBe(400);
    const geminiCount = await googleOf(keys.app, { 'x-tollgate-user': 'u-count' }).models.countTokens({
      model: 'gemini-2.5-flash',
      contents: 'hi',
    });
    expect(geminiCount.totalTokens).toBeGreaterThan(0);
  });

  it('counts no request limit for a refused request: 3 refusals, then the 2 requests of a 2-a-minute tier pass', async () => {
    const openai = openaiOf(keys.tight);
    for (let i = 0; i < 3; i++)
      expect(await caught(openai.chat.completions.create({ model: 'gpt-4o-mini', messages }))).toBeInstanceOf(
        OpenAI.BadRequestError,
      );
    const named = openaiOf(keys.tight, { 'x-tollgate-user': 'u-tight' });
    for (let i = 0; i < 2; i++) await named.chat.completions.create({ model: 'gpt-4o-mini', messages });
    const third = await caught(named.chat.completions.create({ model: 'gpt-4o-mini', messages }));
    expect(third).toBeInstanceOf(OpenAI.RateLimitError);
  });

  it('records two end users of one key as two userIds: defaultHeaders, a per-request header, the body `user`', async () => {
    const first = openaiOf(keys.app, { 'x-tollgate-user': 'end-user-1' });
    const a = await first.chat.completions.create({ model: 'gpt-4o-mini', messages }).withResponse();
    const b = await openaiOf(keys.app)
      .chat.completions.create({ model: 'gpt-4o-mini', messages }, { headers: { 'x-tollgate-user': 'end-user-2' } })
      .withResponse();
    const c = await openaiOf(keys.app)
      .responses.create({ model: 'gpt-4o-mini', input: 'hi', user: 'end-user-3' })
      .withResponse();
    const d = await openaiOf(keys.app)
      .embeddings.create({ model: 'text-embedding-3-small', input: 'hi', user: 'end-user-2' })
      .withResponse();
    const ids = [a, b, c, d].map(({ response }) => response.headers.get('x-request-id'));
    const byRequest = new Map((await records()).map((record) => [record.requestId, record]));
    expect(ids.map((id) => [byRequest.get(id!)?.keyId, byRequest.get(id!)?.userId])).toEqual([
      ['app', 'end-user-1'],
      ['app', 'end-user-2'],
      ['app', 'end-user-3'],
      ['app', 'end-user-2'],
    ]);
    expect(mock.requests.length).toBeGreaterThanOrEqual(4);
  });

  it("keeps the key's own user and feature over the headers and the body; such a key needs no header", async () => {
    const openai = openaiOf(keys.alice, { 'x-tollgate-user': 'mallory', 'x-tollgate-feature': 'billing' });
    const { response } = await openai.chat.completions
      .create({ model: 'gpt-4o-mini', messages, user: 'eve' })
      .withResponse();
    const plain = await anthropicOf(keys.alice)
      .messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages })
      .withResponse();
    const mine = (await records()).filter((record) =>
      [response.headers.get('x-request-id'), plain.response.headers.get('x-request-id')].includes(record.requestId),
    );
    expect(mine.map((record) => [record.keyId, record.userId, record.feature])).toEqual([
      ['alice-key', 'alice', 'support-bot'],
      ['alice-key', 'alice', 'support-bot'],
    ]);
  });

  it('records the feature and tags of the headers, from each SDK, and the Anthropic metadata.user_id', async () => {
    const tagged = { 'x-tollgate-feature': 'search', 'x-tollgate-tags': 'eu, beta,eu' };
    const chat = await openaiOf(keys.app, { ...tagged, 'x-tollgate-user': 'u-openai' })
      .chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true })
      .withResponse();
    for await (const _chunk of chat.data);
    const claude = await anthropicOf(keys.app, tagged)
      .messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages, metadata: { user_id: 'u-anthropic' } })
      .withResponse();
    const gemini = await googleOf(keys.app, { ...tagged, 'x-tollgate-user': 'u-gemini' }).models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'hi',
    });
    expect(gemini.text).toBeTruthy();
    const all = await records();
    const find = (id: string | null) => all.find((record) => record.requestId === id);
    expect(find(chat.response.headers.get('x-request-id'))).toMatchObject({
      userId: 'u-openai',
      feature: 'search',
      tags: ['eu', 'beta'],
      stream: true,
    });
    expect(find(claude.response.headers.get('x-request-id'))).toMatchObject({
      userId: 'u-anthropic',
      feature: 'search',
      tags: ['eu', 'beta'],
    });
    expect(all.find((record) => record.userId === 'u-gemini')).toMatchObject({
      route: '/v1beta/models/gemini-2.5-flash:generateContent',
      feature: 'search',
      tags: ['eu', 'beta'],
    });
    // The access line names them too.
    const id = claude.response.headers.get('x-request-id');
    const line = await waitFor(() => logLines.find((entry) => entry.requestId === id), 'the access line');
    expect(line).toMatchObject({ user: 'u-anthropic', feature: 'search', tags: ['eu', 'beta'], status: 200 });
    // An untagged record has no tags at all.
    expect(all.find((record) => record.userId === 'end-user-1')).not.toHaveProperty('tags');
  });

  it('stores tags in the SQL ledger and reports them: tollgate report --by tag (JSON and CSV)', async () => {
    await proxy.app.flushUsage();
    const out = { stdout: '', stderr: '' };
    const io = {
      stdout: { write: (text: string) => (out.stdout += text) },
      stderr: { write: (text: string) => (out.stderr += text) },
    };
    const flags = ['--since', '1h', '--postgres', POSTGRES_URL, '--table', config.postgresTable!];
    expect(await runReportCommand(['report', '--by', 'tag', '--json', ...flags], io)).toBe(0);
    expect(out.stderr).toBe('');
    const rows = JSON.parse(out.stdout) as { tag: string | null; requests: number }[];
    expect(rows.filter((row) => row.tag !== null).map((row) => [row.tag, row.requests])).toEqual(
      expect.arrayContaining([
        ['eu', 3],
        ['beta', 3],
      ]),
    );
    out.stdout = '';
    expect(await runReportCommand(['report', '--by', 'user', '--format', 'csv', ...flags], io)).toBe(0);
    expect(out.stdout).toMatch(/^end-user-2,2,/m);
    expect(out.stdout).toMatch(/^alice,2,/m);
  });

  it("records a key's own tags on each of its requests, with the header's added", async () => {
    const { response } = await openaiOf(keys.mobile, { 'x-tollgate-tags': 'eu' })
      .chat.completions.create({ model: 'gpt-4o-mini', messages, user: 'u-mobile' })
      .withResponse();
    const record = (await records()).find((entry) => entry.requestId === response.headers.get('x-request-id'));
    expect(record).toMatchObject({ keyId: 'mobile-key', userId: 'u-mobile', tags: ['mobile', 'eu'] });
  });

  it('answers malformed attribution with 400 naming the header or field, sending nothing upstream', async () => {
    const before = mock.requests.length;
    const url = `${proxy.url}/v1/chat/completions`;
    const auth = { authorization: `Bearer ${keys.app}` };
    const body = { model: 'gpt-4o-mini', messages };
    const cases: [Record<string, string | string[]>, unknown, string][] = [
      [{ 'x-tollgate-user': 'u'.repeat(129) }, body, 'x-tollgate-user'],
      [{ 'x-tollgate-user': ['a', 'b'] }, body, 'x-tollgate-user'],
      [{ 'x-tollgate-user': 'u', 'x-tollgate-feature': 'tab\there' }, body, 'x-tollgate-feature'],
      [
        { 'x-tollgate-user': 'u', 'x-tollgate-tags': Array.from({ length: 40 }, (_, i) => `t${i}`).join(',') },
        body,
        'x-tollgate-tags',
      ],
      [{ 'x-tollgate-user': 'u', 'x-tollgate-tags': ['a,b', 'x'.repeat(6000)] }, body, 'x-tollgate-tags'],
      [{}, { ...body, user: 42 }, 'user'],
    ];
    for (const [headers, sent, param] of cases) {
      const answer = await rawPost(url, { ...auth, ...headers }, sent);
      expect([answer.status, answer.body.error?.code, answer.body.error?.param]).toEqual([
        400,
        'invalid_request',
        param,
      ]);
    }
    // A body end user that cannot be a user id is no user (kept as clientUserId): where one is required, it is missing.
    const bell = await rawPost(url, auth, { ...body, user: 'bell\u0007' });
    expect([bell.status, bell.body.error?.code, bell.body.error?.param]).toEqual([400, 'attribution_required', 'user']);
    const anthropic = await rawPost(
      `${proxy.url}/v1/messages`,
      { 'x-api-key': keys.app },
      { model: 'claude-haiku-4-5', max_tokens: 16, messages, metadata: { user_id: 'x'.repeat(200) } },
    );
    expect([anthropic.status, anthropic.body.error?.code]).toEqual([400, 'attribution_required']);
    expect(JSON.stringify(anthropic.body)).toContain('metadata.user_id');
    expect(mock.requests.length).toBe(before);
  });
});
