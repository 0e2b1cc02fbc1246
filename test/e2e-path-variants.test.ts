// Provider routes are reachable by their exact path only: every other spelling or method is 404/405 and reaches no provider.
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TollgateStores, UsageRecord } from '@tollgate/core';
import { createMockProvider } from '@tollgate/providers/mock';
import type { MockProvider } from '@tollgate/providers/mock';
import { newApiKey, readUsageLog, redisTestStores, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

interface ProviderRoute {
  path: string;
  /** A valid body of the route's API for `model`, asking `maxTokens` of output. */
  body(model: string, maxTokens: number): Record<string, unknown>;
  /** The body field carrying the output cap. */
  capField: string;
  cheapModel: string;
  premiumModel: string;
}

const ROUTES: readonly ProviderRoute[] = [
  {
    path: '/v1/chat/completions',
    body: (model, maxTokens) => ({ model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
    capField: 'max_tokens',
    cheapModel: 'gpt-4o-mini',
    premiumModel: 'gpt-4o',
  },
  {
    path: '/v1/responses',
    body: (model, maxTokens) => ({ model, max_output_tokens: maxTokens, input: 'hi' }),
    capField: 'max_output_tokens',
    cheapModel: 'gpt-4o-mini',
    premiumModel: 'gpt-4o',
  },
  {
    path: '/v1/messages',
    body: (model, maxTokens) => ({ model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
    capField: 'max_tokens',
    cheapModel: 'claude-haiku-4-5',
    premiumModel: 'claude-opus-4-5',
  },
];

const OTHER_METHODS = ['GET', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const FREE_TIER_OUTPUT_CAP = 16;

/** Spellings of `exactPath` a router might take for it; sent verbatim, as a raw client or a proxy in front may. */
function pathVariants(exactPath: string): string[] {
  const tail = exactPath.slice('/v1/'.length);
  const lastSlash = exactPath.lastIndexOf('/');
  const encodeLastSlash = (escape: string) =>
    `${exactPath.slice(0, lastSlash)}${escape}${exactPath.slice(lastSlash + 1)}`;
  const capitalised = exactPath.replace(/\/([a-z])/g, (_match, letter: string) => `/${letter.toUpperCase()}`);
  const encodedFirstLetter = `/v1/%${tail.charCodeAt(0).toString(16)}${tail.slice(1)}`;
  return [
    ...new Set([
      `${exactPath}/`,
      `${exactPath}/?x=1`,
      `${exactPath}//`,
      exactPath.toUpperCase(),
      capitalised,
      `/V1/${tail}`,
      `/${exactPath}`,
      `/v1//${tail}`,
      encodeLastSlash('%2F'),
      encodeLastSlash('%2f'),
      `/v1%2F${tail}`,
      `/v1%2F${tail.replace('/', '%2F')}`,
      encodedFirstLetter,
      `/v1/./${tail}`,
      `/./v1/${tail}`,
      `/v1/x/../${tail}`,
      `/x/../v1/${tail}`,
      `${exactPath}/.`,
      `/v1/%2e/${tail}`,
      `/v1/x/%2e%2e/${tail}`,
    ]),
  ];
}

interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  json: { error?: { code?: string; type?: string; message?: string; param?: unknown } } | undefined;
}

/** One request with its path sent byte for byte (fetch and supertest would resolve `..` and `//`). */
function sendRaw(
  baseUrl: string,
  method: string,
  rawPath: string,
  apiKey: string | undefined,
  body?: unknown,
): Promise<RawAnswer> {
  const base = new URL(baseUrl);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  // Framed with its length: Node's client sends a GET's body without one, which the server's parser refuses (400,
  // "data after Connection: close") before or after the app answers, by timing; this test is about the routes.
  const headers: Record<string, string> =
    payload === undefined
      ? {}
      : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) };
  if (apiKey !== undefined) headers.authorization = `Bearer ${apiKey}`;
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      { host: base.hostname, port: base.port, method, path: rawPath, headers, agent: false },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => {
          const isJson = (response.headers['content-type'] ?? '').includes('json') && text.length > 0;
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            json: isJson ? (JSON.parse(text) as RawAnswer['json']) : undefined,
          });
        });
        response.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(payload);
  });
}

const keys = { matrix: newApiKey(), free: newApiKey(), broke: newApiKey(), metered: newApiKey(), admin: newApiKey() };

interface Harness {
  proxy: RunningProxy;
  mock: MockProvider;
  usageRecords(): Promise<UsageRecord[]>;
  budgetOf(tenant: string): Promise<{ spentNanoUsd: number; reservedNanoUsd: number }>;
  close(): Promise<void>;
}

/** The proxy with the in-process mock, a usage log and a budget per tenant, on the given stores (memory when none). */
async function startHarness(stores?: TollgateStores): Promise<Harness> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-path-variants-'));
  const usageLog = path.join(dir, 'usage.jsonl');
  const mock = createMockProvider();
  const proxy = await startProxy(
    {
      usageLog,
      adminKeySha256: sha256Hex(keys.admin),
      tiers: {
        free: {
          requestsPerMinute: 1000,
          models: ['gpt-4o-mini', 'claude-haiku-4-5'],
          maxOutputTokens: FREE_TIER_OUTPUT_CAP,
        },
        pro: { requestsPerMinute: 1000, models: ['*'] },
      },
      tenants: {
        'matrix-co': { tier: 'pro', budget: { usd: 10, period: 'day' } },
        'free-co': { tier: 'free', budget: { usd: 10, period: 'day' } },
        // gpt-4o output costs $10 per 1M tokens: $0.0002 buys 20 tokens, spent by one call.
        'broke-co': { tier: 'pro', budget: { usd: 0.0002, period: 'day' } },
        'metered-co': { tier: 'pro', budget: { usd: 10, period: 'day' } },
      },
      keys: [
        { id: 'matrix-key', sha256: sha256Hex(keys.matrix), tenant: 'matrix-co', scopes: ['chat'] },
        { id: 'free-key', sha256: sha256Hex(keys.free), tenant: 'free-co', scopes: ['chat'] },
        { id: 'broke-key', sha256: sha256Hex(keys.broke), tenant: 'broke-co', scopes: ['chat'] },
        { id: 'metered-key', sha256: sha256Hex(keys.metered), tenant: 'metered-co', scopes: ['chat'] },
      ],
    },
    { mock, ...(stores ? { stores } : {}) },
  );
  return {
    proxy,
    mock,
    async usageRecords() {
      await proxy.app.flushUsage();
      return readUsageLog(usageLog);
    },
    async budgetOf(tenant) {
      const answer = await sendRaw(proxy.url, 'GET', `/admin/budgets/tenant/${tenant}`, keys.admin);
      return (answer.json as unknown as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] }).budgets[0]!;
    },
    async close() {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What a refused variant answered, when it was not a clean 404/405 that left the provider alone. */
interface Leak {
  method: string;
  path: string;
  status: number;
  location?: string;
  providerCalls: number;
}

/** Sends each request and lists those not refused with one of `allowedStatuses`, or that reached the provider. */
async function findLeaks(
  harness: Harness,
  requests: { method: string; path: string; body: unknown }[],
  allowedStatuses: number[],
): Promise<Leak[]> {
  const leaks: Leak[] = [];
  for (const request of requests) {
    const callsBefore = harness.mock.requests.length;
    const answer = await sendRaw(
      harness.proxy.url,
      request.method,
      request.path,
      keys.matrix,
      request.method === 'HEAD' ? undefined : request.body,
    );
    const providerCalls = harness.mock.requests.length - callsBefore;
    const location = answer.headers.location;
    if (!allowedStatuses.includes(answer.status) || location !== undefined || providerCalls !== 0) {
      leaks.push({
        method: request.method,
        path: request.path,
        status: answer.status,
        ...(location !== undefined ? { location } : {}),
        providerCalls,
      });
    }
  }
  return leaks;
}

describe('path variants of the provider routes (memory stores)', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness();
  });

  afterAll(async () => {
    await harness.close();
  });

  describe.each(ROUTES)('$path', (route) => {
    const body = route.body(route.cheapModel, 5);

    it('every other spelling of the path, POSTed, is 404: no redirect, no provider call', async () => {
      const requests = pathVariants(route.path).map((variant) => ({ method: 'POST', path: variant, body }));
      expect(await findLeaks(harness, requests, [404])).toEqual([]);
    });

    it('other methods on the path (query string or not) are 405 method_not_allowed with Allow: POST', async () => {
      for (const target of [route.path, `${route.path}?x=1`]) {
        for (const method of OTHER_METHODS) {
          const callsBefore = harness.mock.requests.length;
          const answer = await sendRaw(
            harness.proxy.url,
            method,
            target,
            keys.matrix,
            method === 'HEAD' ? undefined : body,
          );
          expect({ method, target, status: answer.status, allow: answer.headers.allow }).toEqual({
            method,
            target,
            status: 405,
            allow: 'POST',
          });
          expect(harness.mock.requests.length).toBe(callsBefore);
          if (method !== 'HEAD') {
            expect(answer.json).toEqual({
              error: {
                message: expect.any(String),
                type: 'invalid_request_error',
                code: 'method_not_allowed',
                param: null,
              },
            });
          }
        }
      }
    });

    it('other methods on the other spellings are 404 or 405: no redirect, no provider call', async () => {
      const requests = pathVariants(route.path).flatMap((variant) =>
        OTHER_METHODS.map((method) => ({ method, path: variant, body })),
      );
      expect(await findLeaks(harness, requests, [404, 405])).toEqual([]);
    });
  });

  it('nothing the variants sent was recorded: no usage record, no budget spent or reserved', async () => {
    const records = await harness.usageRecords();
    expect(records.filter((record) => record.keyId === 'matrix-key')).toEqual([]);
    expect(await harness.budgetOf('matrix-co')).toMatchObject({ spentNanoUsd: 0, reservedNanoUsd: 0 });
  });
});

/** A query string leaves the route as it is: every gate applies. */
function describeGatedQueryString(
  storeKind: string,
  createStores: () => Promise<{ stores?: TollgateStores; release(): Promise<void> }>,
): void {
  describe(`a query string on the exact path is fully gated (${storeKind} stores)`, () => {
    let harness: Harness;
    let release: () => Promise<void>;

    beforeAll(async () => {
      const created = await createStores();
      release = created.release;
      harness = await startHarness(created.stores);
    });

    afterAll(async () => {
      await harness.close();
      await release();
    });

    /** POSTs `${path}?x=1` on every route and expects the same refusal from each, with no provider call. */
    async function expectRefusedOnEveryRoute(
      apiKey: string | undefined,
      model: 'cheapModel' | 'premiumModel',
      status: number,
      code: string,
    ): Promise<void> {
      const callsBefore = harness.mock.requests.length;
      for (const route of ROUTES) {
        const answer = await sendRaw(
          harness.proxy.url,
          'POST',
          `${route.path}?x=1`,
          apiKey,
          route.body(route[model], 900),
        );
        expect({ route: route.path, status: answer.status, code: answer.json?.error?.code }).toEqual({
          route: route.path,
          status,
          code,
        });
      }
      expect(harness.mock.requests.length).toBe(callsBefore);
    }

    it('no key is 401 invalid_api_key', async () => {
      await expectRefusedOnEveryRoute(undefined, 'cheapModel', 401, 'invalid_api_key');
    });

    it('a free key asking a model outside its tier is 403 model_not_allowed', async () => {
      await expectRefusedOnEveryRoute(keys.free, 'premiumModel', 403, 'model_not_allowed');
    });

    it("the tier's output cap reaches the provider", async () => {
      for (const route of ROUTES) {
        const answer = await sendRaw(
          harness.proxy.url,
          'POST',
          `${route.path}?x=1`,
          keys.free,
          route.body(route.cheapModel, 5000),
        );
        expect(answer.status).toBe(200);
        const forwarded = harness.mock.requests.at(-1)!.body as Record<string, unknown>;
        expect({ route: route.path, cap: forwarded[route.capField] }).toEqual({
          route: route.path,
          cap: FREE_TIER_OUTPUT_CAP,
        });
      }
    });

    it('a tenant whose budget is spent gets 429 insufficient_quota', async () => {
      const [chat] = ROUTES;
      const spending = await sendRaw(
        harness.proxy.url,
        'POST',
        `${chat!.path}?x=1`,
        keys.broke,
        chat!.body(chat!.premiumModel, 900),
      );
      expect(spending.status).toBe(200);
      await expectRefusedOnEveryRoute(keys.broke, 'premiumModel', 429, 'insufficient_quota');
    });

    it('a normal call is metered: a usage record per route and the budget spent', async () => {
      for (const route of ROUTES) {
        const answer = await sendRaw(
          harness.proxy.url,
          'POST',
          `${route.path}?x=1`,
          keys.metered,
          route.body(route.cheapModel, 5),
        );
        expect(answer.status).toBe(200);
      }
      const records = (await harness.usageRecords()).filter((record) => record.keyId === 'metered-key');
      expect(records.map((record) => record.route).sort()).toEqual(ROUTES.map((route) => route.path).sort());
      for (const record of records)
        expect(record).toMatchObject({ tenantId: 'metered-co', status: 200, usageSource: 'provider' });
      for (const record of records) expect(record.costNanoUsd).toBeGreaterThan(0);
      // On Redis the proxy takes the budget in blocks (redis.blocks): a block settles what its requests spent within its
      // maxAge (1 s) and the ledger's next settle batch, so the spend shows once nothing is reserved any more.
      let budget = await harness.budgetOf('metered-co');
      for (const until = Date.now() + 5_000; budget.reservedNanoUsd > 0 && Date.now() < until;) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        budget = await harness.budgetOf('metered-co');
      }
      expect(budget.spentNanoUsd).toBe(records.reduce((sum, record) => sum + record.costNanoUsd, 0));
      expect(budget.reservedNanoUsd).toBe(0);
    });
  });
}

describeGatedQueryString('memory', async () => ({ release: async () => undefined }));

describeGatedQueryString('redis', async () => redisTestStores('path-variants'));
