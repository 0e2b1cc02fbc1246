// Through the proxy: the access log names every refusal's layer, failures come at error level, the metrics tell a
// rate-limit 429 from a budget 429, the GenAI spans carry their attributes, and no key or token reaches either.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { pino } from 'pino';
import type { JWK } from 'jose';
import { createMemoryStores } from '@tollgate/core';
import { createGatewayLog } from '../packages/metering/src/observe/access-log.js';
import type { GatewayLog } from '../packages/metering/src/observe/access-log.js';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import { newApiKey, sha256Hex, startMockUpstream, startProxy } from './helpers/proxy.js';
import type { RunningMock, RunningProxy } from './helpers/proxy.js';

const keys = { pro: newApiKey(), noScope: newApiKey(), limited: newApiKey(), broke: newApiKey(), single: newApiKey() };
const adminKey = newApiKey();
const upstreamKey = 'sk-upstream-secret-that-never-leaves-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'tollgate-observability-'));
const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

let upstream: RunningMock;
let proxy: RunningProxy;
let proxyLog: GatewayLog;
let jwt: string;
const logFile = join(dir, 'proxy.log');

interface AccessLine {
  level: number;
  msg: string;
  request?: { method: string; path: string };
  requestId?: string;
  status?: number;
  latencyMs?: number;
  tenant?: string | null;
  keyId?: string | null;
  model?: string | null;
  provider?: string;
  refusal?: { layer: string; code: string; message: string };
  upstreamStatus?: number;
  err?: { message: string };
  layer?: string;
}

async function logLines(): Promise<AccessLine[]> {
  await proxyLog.flush();
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as AccessLine);
}

/** The access line of the response that carried `requestId`. */
async function lineOf(requestId: string): Promise<AccessLine> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const line = (await logLines()).find((candidate) => candidate.requestId === requestId);
    if (line) return line;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no access line for ${requestId}`);
}

async function chat(
  key: string | undefined,
  body: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<{ status: number; requestId: string }> {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'Say hello.' }],
      ...body,
    }),
  });
  await response.arrayBuffer();
  return { status: response.status, requestId: response.headers.get('x-request-id')! };
}

async function metrics(): Promise<string> {
  const response = await fetch(`${proxy.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } });
  expect(response.status).toBe(200);
  return response.text();
}

function sampleOf(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  jwt = await new SignJWT({ org_id: 'acme', scope: 'chat' })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setSubject('user-42')
    .setIssuer('https://idp.example')
    .setAudience('tollgate')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(pair.privateKey);
  upstream = await startMockUpstream();
  const config: GatewayConfig = {
    adminKeySha256: sha256Hex(adminKey),
    requiredScope: 'chat',
    upstreams: { openai: { baseUrl: `${upstream.url}/v1`, apiKey: upstreamKey } },
    jwt: {
      issuer: 'https://idp.example',
      audience: 'tollgate',
      jwks: { keys: [jwk as Record<string, unknown>] },
      tenantClaim: 'org_id',
      scopeClaim: 'scope',
    },
    tiers: {
      pro: { requestsPerMinute: 1000, models: ['*'] },
      limited: { requestsPerMinute: 1, models: ['*'] },
      single: { requestsPerMinute: 1000, maxConcurrent: 1, models: ['*'] },
    },
    tenants: {
      acme: { tier: 'pro', budget: { usd: 10, period: 'day' } },
      slow: { tier: 'limited' },
      broke: { tier: 'pro', budget: { usd: 0.000001, period: 'day' } },
      solo: { tier: 'single' },
    },
    defaultTier: 'pro',
    keys: [
      { id: 'pro-key', sha256: sha256Hex(keys.pro), tenant: 'acme', feature: 'support-bot', scopes: ['chat'] },
      { id: 'no-scope-key', sha256: sha256Hex(keys.noScope), tenant: 'acme', scopes: ['embeddings'] },
      { id: 'limited-key', sha256: sha256Hex(keys.limited), tenant: 'slow', scopes: ['chat'] },
      { id: 'broke-key', sha256: sha256Hex(keys.broke), tenant: 'broke', scopes: ['chat'] },
      { id: 'single-key', sha256: sha256Hex(keys.single), tenant: 'solo', scopes: ['chat'] },
    ],
  };
  // The proxy's own log, as `"log": { "level": "debug", "destination": <file> }` makes it, read back from the file.
  proxyLog = createGatewayLog({ level: 'debug', destination: logFile });
  // Memory stores are not timed by default (too cheap to be worth it): these tests ask for their timings.
  proxy = await startProxy(config, {
    logger: proxyLog.logger,
    tracer: tracerProvider.getTracer('e2e'),
    timeStoreCalls: true,
  });
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  await proxyLog?.close();
  await tracerProvider.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

describe('the access log', () => {
  it('writes one line per request: ids, route, model, status, latency and the upstream status', async () => {
    const { status, requestId } = await chat(keys.pro);
    expect(status).toBe(200);
    const line = await lineOf(requestId);
    expect(line).toMatchObject({
      level: 30,
      msg: 'request completed',
      request: { method: 'POST', path: '/v1/chat/completions' },
      status: 200,
      tenant: 'acme',
      keyId: 'pro-key',
      model: 'gpt-4o-mini',
      provider: 'openai',
      upstreamStatus: 200,
    });
    expect(line.latencyMs).toBeGreaterThanOrEqual(0);
    expect(line.refusal).toBeUndefined();
    // The access line is written by the log's own writer (not pino's serializer): it is the line pino writes for the
    // same fields, key for key and in pino's order, so that tools reading pino's lines read it.
    const { level, time, pid, hostname, msg, ...fields } = line as unknown as Record<string, unknown>;
    expect(typeof time).toBe('number');
    const written: string[] = [];
    pino({ level: 'info' }, { write: (text: string) => written.push(text) }).info(fields, msg as string);
    const byPino = JSON.parse(written[0]!) as Record<string, unknown>;
    expect(Object.keys(line)).toEqual(Object.keys(byPino));
    expect({ ...line, time: 0 }).toEqual({ ...byPino, time: 0 });
    expect({ level, pid, hostname }).toEqual({ level: 30, pid: process.pid, hostname: byPino.hostname });
  });

  it.each([
    ['no key', undefined, 401, 'auth', 'invalid_api_key'],
    ['an unknown key', 'tgk_unknownKeyThatIsNotInTheConfig0123456789abcd', 401, 'auth', 'invalid_api_key'],
    ['a key without the scope', 'noScope', 403, 'scope', 'insufficient_scope'],
  ] as const)('names the layer that refused %s', async (_case, key, expectedStatus, layer, code) => {
    const { status, requestId } = await chat(key === 'noScope' ? keys.noScope : key);
    expect(status).toBe(expectedStatus);
    const line = await lineOf(requestId);
    expect(line).toMatchObject({ level: 30, msg: 'request refused', status: expectedStatus, refusal: { layer, code } });
  });

  it('tells a rate-limit 429 from a budget 429 and a concurrency 429', async () => {
    expect((await chat(keys.limited)).status).toBe(200);
    const limited = await chat(keys.limited);
    expect(limited.status).toBe(429);
    expect(await lineOf(limited.requestId)).toMatchObject({
      status: 429,
      keyId: 'limited-key',
      refusal: { layer: 'requests', code: 'rate_limit_exceeded' },
    });

    const broke = await chat(keys.broke);
    expect(broke.status).toBe(429);
    expect(await lineOf(broke.requestId)).toMatchObject({
      status: 429,
      keyId: 'broke-key',
      refusal: { layer: 'budget', code: 'insufficient_quota' },
    });

    upstream.mock.behavior.latencyMs = 300;
    try {
      const [first, second] = await Promise.all([
        chat(keys.single),
        new Promise((resolve) => setTimeout(resolve, 50)).then(() => chat(keys.single)),
      ]);
      expect(first.status).toBe(200);
      expect(second.status).toBe(429);
      expect(await lineOf(second.requestId)).toMatchObject({
        refusal: { layer: 'concurrency', code: 'rate_limit_exceeded' },
      });
    } finally {
      upstream.mock.behavior.latencyMs = 0;
    }
  });

  it('logs an upstream failure (502) at error level, with the status the upstream answered', async () => {
    upstream.mock.behavior.failure = 'error500';
    let result;
    try {
      result = await chat(keys.pro);
    } finally {
      upstream.mock.behavior.failure = 'none';
    }
    expect(result.status).toBe(502);
    expect(await lineOf(result.requestId)).toMatchObject({
      level: 50,
      msg: 'request failed',
      status: 502,
      upstreamStatus: 500,
      refusal: { layer: 'upstream', code: 'upstream_error' },
    });
  });

  it('logs health checks and scrapes at debug, their refusals at info', async () => {
    await fetch(`${proxy.url}/healthz`);
    const unauthorized = await fetch(`${proxy.url}/metrics`);
    expect(unauthorized.status).toBe(401);
    const lines = await logLines();
    expect(lines.find((line) => line.request?.path === '/healthz')).toMatchObject({ level: 20 });
    expect(lines.find((line) => line.request?.path === '/metrics' && line.status === 401)).toMatchObject({
      level: 30,
      refusal: { layer: 'auth' },
    });
  });
});

describe('store failures', () => {
  it('are logged at error level by layer, answered 503, and counted', async () => {
    const stores = createMemoryStores();
    stores.counter.consume = () => {
      throw new Error('store is down');
    };
    const failingLog = createGatewayLog({ level: 'info', destination: join(dir, 'failing.log') });
    const failing = await startProxy(
      {
        adminKeySha256: sha256Hex(adminKey),
        tiers: { pro: { tokensPerMinute: 100_000 } },
        defaultTier: 'pro',
        keys: [{ id: 'k', sha256: sha256Hex(keys.pro) }],
      },
      { stores, logger: failingLog.logger, timeStoreCalls: true },
    );
    try {
      const response = await fetch(`${failing.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.pro}` },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(response.status).toBe(503);
      const text = await (
        await fetch(`${failing.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } })
      ).text();
      // tokenRateLimit reports the failed consume, and again the give-back that then has nothing to give back.
      expect(sampleOf(text, 'tollgate_store_failures_total{layer="tokens"}')).toBeGreaterThanOrEqual(1);
      expect(sampleOf(text, 'tollgate_refusals_total{layer="tokens",reason="service_unavailable",tenant="none"}')).toBe(
        1,
      );
      expect(
        sampleOf(text, 'tollgate_store_call_duration_seconds_count{operation="counter.consume",outcome="error"}'),
      ).toBe(1);
    } finally {
      await failing.close();
      await failingLog.close();
    }
    const lines = readFileSync(join(dir, 'failing.log'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as AccessLine);
    expect(lines.find((line) => line.msg === 'store failure')).toMatchObject({
      level: 50,
      layer: 'tokens',
      err: { message: expect.stringContaining('store is down') },
    });
    expect(lines.find((line) => line.status === 503)).toMatchObject({
      level: 50,
      msg: 'request failed',
      refusal: { layer: 'tokens', code: 'service_unavailable' },
    });
  });
});

describe('the metrics', () => {
  it('count refusals by layer and reason: a rate-limit 429 apart from a budget 429; 401 and 403 counted', async () => {
    const text = await metrics();
    expect(
      sampleOf(text, 'tollgate_refusals_total{layer="requests",reason="rate_limit_exceeded",tenant="slow"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleOf(text, 'tollgate_refusals_total{layer="budget",reason="insufficient_quota",tenant="broke"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleOf(text, 'tollgate_refusals_total{layer="concurrency",reason="rate_limit_exceeded",tenant="solo"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleOf(text, 'tollgate_refusals_total{layer="auth",reason="invalid_api_key",tenant="none"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(
      sampleOf(text, 'tollgate_refusals_total{layer="scope",reason="insufficient_scope",tenant="acme"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleOf(text, 'tollgate_http_responses_total{route="/v1/chat/completions",status="401"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(
      sampleOf(text, 'tollgate_http_responses_total{route="/v1/chat/completions",status="403"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleOf(text, 'tollgate_http_responses_total{route="/v1/chat/completions",status="429"}'),
    ).toBeGreaterThanOrEqual(3);
  });

  it('count upstream calls, errors and latency per upstream and model, store calls, and budgets per tenant', async () => {
    const text = await metrics();
    expect(
      sampleOf(text, 'tollgate_upstream_requests_total{provider="openai",model="gpt-4o-mini",status="200"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(sampleOf(text, 'tollgate_upstream_requests_total{provider="openai",model="gpt-4o-mini",status="500"}')).toBe(
      1,
    );
    expect(
      sampleOf(text, 'tollgate_upstream_errors_total{provider="openai",model="gpt-4o-mini",reason="status"}'),
    ).toBe(1);
    expect(
      sampleOf(text, 'tollgate_upstream_duration_seconds_count{provider="openai",model="gpt-4o-mini"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(
      sampleOf(text, 'tollgate_store_call_duration_seconds_count{operation="ledger.reserve",outcome="ok"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(sampleOf(text, 'tollgate_budget_limit_usd{scope="tenant",id="acme",period="day"}')).toBe(10);
    expect(sampleOf(text, 'tollgate_budget_spent_usd{scope="tenant",id="acme",period="day"}')).toBeGreaterThan(0);
    expect(sampleOf(text, 'tollgate_budget_limit_usd{scope="tenant",id="broke",period="day"}')).toBe(0.000001);
  });
});

describe('store call timings', () => {
  it('are left out for memory stores unless asked for: the calls cost less than timing them', async () => {
    const plain = await startProxy({
      adminKeySha256: sha256Hex(adminKey),
      tiers: { pro: { tokensPerMinute: 100_000 } },
      defaultTier: 'pro',
      keys: [{ id: 'k', sha256: sha256Hex(keys.pro) }],
    });
    try {
      const response = await fetch(`${plain.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.pro}` },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(response.status).toBe(200);
      await response.text();
      const text = await (
        await fetch(`${plain.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } })
      ).text();
      expect(sampleOf(text, 'tollgate_http_responses_total{route="/v1/chat/completions",status="200"}')).toBe(1);
      expect(text).not.toContain('tollgate_store_call_duration_seconds_count{');
    } finally {
      await plain.close();
    }
  });
});

describe('the spans', () => {
  it("one per provider request, with the GenAI attributes and tollgate's; an upstream failure is an error", async () => {
    const spans = exporter.getFinishedSpans();
    const ok = spans.find(
      (span) => span.attributes['tollgate.key.id'] === 'pro-key' && span.status.code !== SpanStatusCode.ERROR,
    );
    expect(ok?.name).toBe('chat gpt-4o-mini');
    expect(ok?.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-4o-mini',
      'gen_ai.request.max_tokens': 16,
      'gen_ai.response.model': 'gpt-4o-mini',
      'tollgate.tenant.id': 'acme',
      'tollgate.feature': 'support-bot',
      'http.response.status_code': 200,
    });
    expect(ok?.attributes['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
    expect(ok?.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
    expect(ok?.attributes['tollgate.cost.nano_usd']).toBeGreaterThan(0);
    const failed = spans.find((span) => span.status.code === SpanStatusCode.ERROR);
    expect(failed?.attributes).toMatchObject({ 'error.type': 'upstream_error', 'http.response.status_code': 500 });
    // Refused requests never reached a provider: no span of theirs.
    expect(
      spans.filter((span) => ['broke-key', 'no-scope-key'].includes(String(span.attributes['tollgate.key.id']))),
    ).toHaveLength(0);
  });
});

describe('nothing secret', () => {
  it('no API key, upstream key, admin key or bearer token appears in a log line or a span', async () => {
    const withJwt = await chat(jwt);
    expect(withJwt.status).toBe(200);
    const badJwt = await chat(`${jwt.slice(0, -4)}AAAA`);
    expect(badJwt.status).toBe(401);
    await metrics();
    const text = readFileSync(logFile, 'utf8') + (await logLines()).map((line) => JSON.stringify(line)).join('\n');
    const spanText = JSON.stringify(
      exporter
        .getFinishedSpans()
        .map((span) => ({ name: span.name, attributes: span.attributes, status: span.status, events: span.events })),
    );
    const secrets = [...Object.values(keys), adminKey, upstreamKey, jwt, jwt.split('.')[2]!];
    for (const secret of secrets) {
      expect(text).not.toContain(secret);
      expect(spanText).not.toContain(secret);
    }
    expect(await lineOf(withJwt.requestId)).toMatchObject({ tenant: 'acme', status: 200 });
  });

  it("censors credential headers with pino's redact paths, should a request's headers ever be logged", async () => {
    proxyLog.logger.info(
      {
        req: {
          method: 'POST',
          headers: {
            authorization: `Bearer ${keys.pro}`,
            'x-api-key': keys.pro,
            'x-goog-api-key': keys.pro,
            cookie: `tollgate_admin=${adminKey}`,
            'user-agent': 'test',
          },
        },
      },
      'a request, logged whole',
    );
    const line = (await logLines()).find((candidate) => candidate.msg === 'a request, logged whole') as unknown as {
      req: { headers: Record<string, string> };
    };
    expect(line.req.headers).toEqual({
      authorization: '[redacted]',
      'x-api-key': '[redacted]',
      'x-goog-api-key': '[redacted]',
      cookie: '[redacted]',
      'user-agent': 'test',
    });
  });
});
