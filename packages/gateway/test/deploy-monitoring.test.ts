// deploy/prometheus/alerts.yml and deploy/grafana/tollgate.json against the gateway: promtool accepts the rules
// (and their unit tests), and every metric their PromQL names is one a running gateway exposes. Every family the
// gateway exposes follows Prometheus's conventions (base units, `_total` counters, no label a caller can grow). Then
// the label rules of the metrics they chart: refusals by tenant with bounded values, time to first token, the process.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import express from 'express';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { JWK } from 'jose';
import OpenAI from 'openai';
import request from 'supertest';
import { parse as parseYaml } from 'yaml';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGateway, validateConfig } from '@tollgate/gateway';
import { createMockProvider } from '@tollgate/providers/mock';
import type { Gateway } from '../src/app.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const ALERTS = path.join(ROOT, 'deploy/prometheus/alerts.yml');
const ALERT_TESTS = path.join(ROOT, 'deploy/prometheus/alerts.test.yml');
const DASHBOARD = path.join(ROOT, 'deploy/grafana/tollgate.json');

/** Runs promtool; CI installs it (.ci/run), so a machine without it fails here and says how to get it. */
function promtool(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8' });
  if (run.error && (run.error as NodeJS.ErrnoException).code === 'ENOENT')
    throw new Error(
      "promtool is not installed: it comes with Debian's prometheus package (apt-get install prometheus), which .ci/run installs",
    );
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[];
}

function alertExpressions(): string[] {
  const rules = parseYaml(readFileSync(ALERTS, 'utf8')) as RuleFile;
  return rules.groups.flatMap((group) => group.rules.map((rule) => rule.expr));
}

/** Every PromQL expression of the dashboard: its panels' targets (rows included) and its query variables. */
function dashboardExpressions(): string[] {
  const found: string[] = [];
  const walk = (node: unknown, key?: string): void => {
    if (Array.isArray(node)) for (const item of node) walk(item);
    else if (node && typeof node === 'object')
      for (const [name, value] of Object.entries(node as Record<string, unknown>)) walk(value, name);
    else if (typeof node === 'string' && (key === 'expr' || key === 'definition')) found.push(node);
  };
  walk(JSON.parse(readFileSync(DASHBOARD, 'utf8')));
  return found;
}

/** The dashboard's Grafana variables as Prometheus would get them. */
function asPromQl(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range/g, '5m')
    .replace(/\$\w+/g, '.*')
    .replace(/^label_values\(([^,]+),[^)]*\)$/, '$1');
}

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'offset',
  'bool',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression reads: what is left once strings, label matchers, ranges and grouping
 * clauses are taken out, less functions and aggregations (a name followed by `(`) and keywords.
 */
function metricNames(expr: string): string[] {
  const bare = asPromQl(expr)
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const names: string[] = [];
  for (const match of bare.matchAll(/(?<![\w.:])[a-zA-Z_:][\w:]*/g)) {
    const rest = bare.slice(match.index + match[0].length);
    if (/^\s*\(/.test(rest) || KEYWORDS.has(match[0].toLowerCase())) continue;
    names.push(match[0]);
  }
  return names;
}

/** The metrics a scrape declares (`# TYPE name kind`). */
function declared(scrape: string): Map<string, string> {
  return new Map([...scrape.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((match) => [match[1]!, match[2]!]));
}

/** Whether the scrape exposes `name`: declared, or the `_bucket`, `_sum`, `_count` series of a declared histogram. */
function exposes(types: Map<string, string>, name: string): boolean {
  if (types.has(name)) return true;
  const base = /^(.*)_(?:bucket|sum|count)$/.exec(name)?.[1];
  return base !== undefined && (types.get(base) === 'histogram' || types.get(base) === 'summary');
}

/**
 * What breaks Prometheus's naming conventions in the families a scrape declares: a counter is named `_total` and
 * nothing else is; durations are in seconds and sizes in bytes (no `_ms`, `_kb`, ...); a histogram or summary
 * observes seconds or bytes.
 */
function conventionProblems(types: Map<string, string>): string[] {
  const problems: string[] = [];
  for (const [name, type] of types) {
    if (type === 'counter' && !name.endsWith('_total')) problems.push(`${name}: a counter not named _total`);
    if (type !== 'counter' && name.endsWith('_total')) problems.push(`${name}: a ${type} named _total`);
    if (
      /_(?:ms|milliseconds|us|microseconds|ns|nanoseconds|minutes|hours|days|kb|mb|gb|kilobytes|megabytes)(?:_|$)/.test(
        name,
      )
    )
      problems.push(`${name}: not in base units (seconds, bytes)`);
    if ((type === 'histogram' || type === 'summary') && !/_(?:seconds|bytes)$/.test(name))
      problems.push(`${name}: a ${type} of neither seconds nor bytes`);
    if (/duration|latency|ttfb|time|lag|delay|elapsed/.test(name) && !/_seconds(?:_total)?$/.test(name))
      problems.push(`${name}: a duration not in seconds`);
  }
  return problems;
}

/** Labels that name one caller, one request or one address: a series each, so no family may have them. */
const UNBOUNDED_LABELS = /^(?:key|key_?id|user|user_?id|request_?id|conversation_?id|trace_?id|span_?id|ip|address)$/i;

/** Per family (a histogram's `_bucket`, `_sum` and `_count` under its own name), per label, the values it has. */
function labelValues(scrape: string, types: Map<string, string>): Map<string, Map<string, Set<string>>> {
  const families = new Map<string, Map<string, Set<string>>>();
  for (const match of scrape.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/gm)) {
    const sample = match[1]!;
    const base = /^(.*)_(?:bucket|sum|count)$/.exec(sample)?.[1];
    const family = base !== undefined && exposes(types, sample) && !types.has(sample) ? base : sample;
    let labels = families.get(family);
    if (labels === undefined) families.set(family, (labels = new Map()));
    for (const [, label, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      let values = labels.get(label!);
      if (values === undefined) labels.set(label!, (values = new Set()));
      values.add(value!);
    }
  }
  return families;
}

/** An identity provider of the test's own: the gateway's `jwt` config, and tokens it signs for a tenant claim. */
async function jwtIssuer() {
  const pair = await generateKeyPair('RS256');
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  return {
    config: {
      issuer: 'https://idp.example',
      audience: 'tollgate',
      jwks: { keys: [jwk as Record<string, unknown>] },
      tenantClaim: 'org_id',
    },
    mint: (tenant: string) =>
      new SignJWT({ org_id: tenant })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setSubject('user-1')
        .setIssuer('https://idp.example')
        .setAudience('tollgate')
        .setExpirationTime('5m')
        .sign(pair.privateKey),
  };
}

/** The value of the sample `series` (its name and labels exactly as the scrape writes them). */
function sampleOf(scrape: string, series: string): number | undefined {
  const line = scrape.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('the rules and the dashboard, as Prometheus reads them', () => {
  it('promtool accepts alerts.yml', () => {
    const { status, output } = promtool('check', 'rules', ALERTS);
    expect(output).toContain('SUCCESS');
    expect(status).toBe(0);
  });

  it('alerts.yml passes its unit tests: each alert fires on what it is for and stays quiet otherwise', () => {
    const { status, output } = promtool('test', 'rules', ALERT_TESTS);
    expect(output).toContain('SUCCESS');
    expect(status).toBe(0);
  });

  it("every dashboard query is PromQL that Prometheus parses (Grafana's variables filled in)", () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-dashboard-'));
    try {
      const file = path.join(dir, 'dashboard-queries.yml');
      const rules = dashboardExpressions().map((expr, i) => ({
        record: `tollgate:dashboard:${i}`,
        expr: asPromQl(expr),
      }));
      expect(rules.length).toBeGreaterThan(20);
      writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }));
      const { status, output } = promtool('check', 'rules', file);
      expect(output).toContain(`SUCCESS: ${rules.length} rules found`);
      expect(status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds what breaks the naming conventions', () => {
    const types = new Map([
      ['tollgate_route_ttfb_ms', 'gauge'],
      ['tollgate_route_calls', 'counter'],
      ['tollgate_nodejs_active_handles_total', 'gauge'],
      ['tollgate_upstream_latency', 'histogram'],
      ['tollgate_upstream_duration_seconds', 'histogram'],
      ['tollgate_requests_total', 'counter'],
      ['tollgate_budget_spent_usd', 'gauge'],
    ]);
    expect(conventionProblems(types)).toEqual([
      'tollgate_route_ttfb_ms: not in base units (seconds, bytes)',
      'tollgate_route_ttfb_ms: a duration not in seconds',
      'tollgate_route_calls: a counter not named _total',
      'tollgate_nodejs_active_handles_total: a gauge named _total',
      'tollgate_upstream_latency: a histogram of neither seconds nor bytes',
      'tollgate_upstream_latency: a duration not in seconds',
    ]);
    const scrape = 'h_seconds_bucket{le="1",model="a"} 1\nh_seconds_sum{model="a"} 1\nc_total{tenant="x\\"y"} 2\n';
    const families = labelValues(
      scrape,
      new Map([
        ['h_seconds', 'histogram'],
        ['c_total', 'counter'],
      ]),
    );
    expect([...families.keys()]).toEqual(['h_seconds', 'c_total']);
    expect(families.get('h_seconds')?.get('model')).toEqual(new Set(['a']));
    expect(families.get('c_total')?.get('tenant')).toEqual(new Set(['x\\"y']));
  });

  it('reads metric names out of PromQL', () => {
    expect(
      metricNames(
        'sum by (le, provider) (rate(tollgate_x_bucket{a="b{c}"}[5m] offset 1h)) / on (provider) group_left max(up) > 0.8 or vector(0)',
      ),
    ).toEqual(['tollgate_x_bucket', 'up']);
    expect(metricNames('label_values(tollgate_cost_usd_total, tenant)')).toEqual(['tollgate_cost_usd_total']);
  });
});

describe('a gateway on the mock provider exposes every metric the rules and the dashboard use', () => {
  const key = generateApiKey();
  let upstream: Server;
  let server: Server;
  let gateway: Gateway;
  let baseUrl: string;
  let jwtOfAcme: string;
  let jwtOfElsewhere: string;
  let scrape: string;

  beforeAll(async () => {
    const mock = createMockProvider();
    upstream = mock.app.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const issuer = await jwtIssuer();
    jwtOfAcme = await issuer.mint('acme');
    jwtOfElsewhere = await issuer.mint('minted-elsewhere');
    gateway = createGateway(
      validateConfig({
        upstreams: { openai: { baseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1` } },
        modelGroups: { quick: { targets: [{ upstream: 'openai', model: 'gpt-4o-mini' }] } },
        tiers: { pro: { requestsPerMinute: 600, models: ['*'] } },
        defaultTier: 'pro',
        tenants: { acme: { tier: 'pro', budget: { usd: 5, period: 'day' } } },
        keys: [{ id: 'acme-key', sha256: hashApiKey(key), tenant: 'acme' }],
        jwt: issuer.config,
        guard: { authFailures: {} },
        metrics: { public: true },
        log: { level: 'silent' },
      }),
      { log: () => undefined },
    );
    await gateway.spendReady();
    const app = express();
    app.use(gateway);
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const client = new OpenAI({ apiKey: key, baseURL: `${baseUrl}/v1`, maxRetries: 0 });
    const ask = { model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user' as const, content: 'hello' }] };
    await client.chat.completions.create(ask);
    await client.chat.completions.create({ ...ask, model: 'quick' });
    let streamed = '';
    for await (const chunk of await client.chat.completions.create({ ...ask, stream: true }))
      streamed += chunk.choices[0]?.delta.content ?? '';
    expect(streamed.length).toBeGreaterThan(0);
    // Refusals: before identification, by a configured tenant (its key, a JWT), by a JWT of a tenant the config does not list.
    const badBody = { model: 'gpt-4o-mini', messages: 'not a list' };
    await request(server).post('/v1/chat/completions').send(ask).expect(401);
    await request(server).post('/v1/chat/completions').set('authorization', `Bearer ${key}`).send(badBody).expect(400);
    await request(server)
      .post('/v1/chat/completions')
      .set('authorization', `Bearer ${jwtOfAcme}`)
      .send(badBody)
      .expect(400);
    await request(server)
      .post('/v1/chat/completions')
      .set('authorization', `Bearer ${jwtOfElsewhere}`)
      .send(badBody)
      .expect(400);
    await gateway.flushUsage();
    scrape = (await request(server).get('/metrics').expect(200)).text;
  });

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await gateway?.close();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  it("names every family after Prometheus's conventions, with no label that names a caller or a request", () => {
    const types = declared(scrape);
    expect(types.size).toBeGreaterThan(40);
    expect(conventionProblems(types)).toEqual([]);
    const labelled = [...labelValues(scrape, types)].flatMap(([family, labels]) =>
      [...labels.keys()].filter((label) => UNBOUNDED_LABELS.test(label)).map((label) => `${family}{${label}}`),
    );
    expect(labelled).toEqual([]);
  });

  it("counts each routing target's calls and failures, and its time to first byte in seconds", () => {
    const target = 'target="openai/gpt-4o-mini",upstream="openai",model="gpt-4o-mini"';
    expect(declared(scrape).get('tollgate_route_calls_total')).toBe('counter');
    expect(sampleOf(scrape, `tollgate_route_calls_total{${target}}`)).toBe(1);
    expect(sampleOf(scrape, `tollgate_route_failures_total{${target}}`)).toBe(0);
    const ttfb = sampleOf(scrape, `tollgate_route_ttfb_seconds{${target}}`)!;
    expect(ttfb).toBeGreaterThanOrEqual(0);
    expect(ttfb).toBeLessThan(5);
  });

  it('counts refusals by tenant: configured tenants by name, any other __other__, unidentified callers none', () => {
    const refusals = (tenant: string) =>
      sampleOf(scrape, `tollgate_refusals_total{layer="request",reason="invalid_request",tenant="${tenant}"}`);
    // The key's and the JWT's of acme.
    expect(refusals('acme')).toBe(2);
    // A JWT minted for a tenant the config does not list.
    expect(refusals('__other__')).toBe(1);
    expect(scrape).not.toContain('minted-elsewhere');
    expect(sampleOf(scrape, 'tollgate_refusals_total{layer="auth",reason="invalid_api_key",tenant="none"}')).toBe(1);
  });

  it('observes the time to first token of the stream only, beside the upstream latency', () => {
    expect(sampleOf(scrape, 'tollgate_time_to_first_token_seconds_count{provider="openai",model="gpt-4o-mini"}')).toBe(
      1,
    );
    expect(sampleOf(scrape, 'tollgate_upstream_duration_seconds_count{provider="openai",model="gpt-4o-mini"}')).toBe(3);
  });

  it("charts each budget with its period and what it has left, the guard's mitigations and the process", () => {
    expect(sampleOf(scrape, 'tollgate_budget_limit_usd{scope="tenant",id="acme",period="day"}')).toBe(5);
    const spent = sampleOf(scrape, 'tollgate_budget_spent_usd{scope="tenant",id="acme",period="day"}')!;
    expect(spent).toBeGreaterThan(0);
    expect(sampleOf(scrape, 'tollgate_budget_remaining_usd{scope="tenant",id="acme",period="day"}')).toBeCloseTo(
      5 - spent,
      9,
    );
    expect(sampleOf(scrape, 'tollgate_guard_mitigations{kind="suspend"}')).toBe(0);
    expect(sampleOf(scrape, 'tollgate_guard_abuse_actions{action="block"}')).toBe(0);
    expect(sampleOf(scrape, 'tollgate_process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(scrape).toMatch(/^tollgate_nodejs_heap_size_used_bytes \d+/m);
  });
});

describe('the shipped deploy/tollgate.json exposes every metric the rules and the dashboard read', () => {
  let upstream: Server;
  let gateway: Gateway;
  let scrape: string;

  beforeAll(async () => {
    upstream = createMockProvider().app.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const mock = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const shipped = JSON.parse(readFileSync(path.join(ROOT, 'deploy/tollgate.json'), 'utf8')) as {
      upstreams: Record<string, { baseUrl: string; apiKeyEnv: string }>;
    };
    // As deployed, less what needs the deployment's services: the upstreams on a mock here, the ledger in memory (no
    // PostgreSQL field), so this runs with no service at all.
    const config = Object.fromEntries(Object.entries(shipped).filter(([field]) => !field.startsWith('postgres')));
    const upstreams = Object.fromEntries(
      Object.entries(shipped.upstreams).map(([name, settings]) => [
        name,
        { ...settings, baseUrl: settings.baseUrl.replace(/^https:\/\/[^/]+/, mock) },
      ]),
    );
    const env = Object.fromEntries(Object.values(shipped.upstreams).map(({ apiKeyEnv }) => [apiKeyEnv, 'test-key']));
    gateway = createGateway(
      validateConfig({ ...config, upstreams, metrics: { public: true }, log: { level: 'silent' } }),
      {
        log: () => undefined,
        env,
      },
    );
    scrape = (await request(express().use(gateway)).get('/metrics').expect(200)).text;
  }, 120_000);

  afterAll(async () => {
    await gateway?.close();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  it("alerts.yml's expressions", () => {
    const names = [...new Set(alertExpressions().flatMap(metricNames))];
    expect(names.length).toBeGreaterThan(12);
    const types = declared(scrape);
    expect(names.filter((name) => !exposes(types, name))).toEqual([]);
  });

  it("the Grafana dashboard's queries", () => {
    const names = [...new Set(dashboardExpressions().flatMap(metricNames))];
    expect(names.length).toBeGreaterThan(25);
    const types = declared(scrape);
    expect(names.filter((name) => !exposes(types, name))).toEqual([]);
  });
});

describe('the tenant label of refusals stays bounded', () => {
  it('names the first 100 configured tenants; the rest, and every tenant a JWT mints, count as __other__', async () => {
    const tenants = Array.from({ length: 103 }, (_, i) => `t${i}`);
    const keys = tenants.map(() => generateApiKey());
    const issuer = await jwtIssuer();
    const minted = await Promise.all(Array.from({ length: 20 }, (_, i) => issuer.mint(`flood-${i}`)));
    const gateway = createGateway(
      validateConfig({
        ...WITH_MOCK,
        tenants: Object.fromEntries(tenants.map((tenant) => [tenant, {}])),
        keys: tenants.map((tenant, i) => ({ id: `k-${tenant}`, sha256: hashApiKey(keys[i]!), tenant })),
        jwt: issuer.config,
        metrics: { public: true },
        log: { level: 'silent' },
      }),
      { log: () => undefined },
    );
    const app = express().use(gateway);
    try {
      for (const credential of [...keys, ...minted])
        await request(app)
          .post('/v1/chat/completions')
          .set('authorization', `Bearer ${credential}`)
          .send({ model: 'gpt-4o-mini', messages: 'not a list' })
          .expect(400);
      const scrape = (await request(app).get('/metrics').expect(200)).text;
      const series = [...scrape.matchAll(/^tollgate_refusals_total\{.*tenant="([^"]*)"\} (\d+)$/gm)];
      const byTenant = new Map(series.map((match) => [match[1]!, Number(match[2])]));
      expect(byTenant.size).toBe(101);
      expect(tenants.slice(0, 100).every((tenant) => byTenant.get(tenant) === 1)).toBe(true);
      // t100 to t102 are configured but past the cap; flood-* are not configured at all.
      expect(byTenant.get('__other__')).toBe(3 + minted.length);
    } finally {
      await gateway.close();
    }
  });
});

describe('no label grows with what callers send', () => {
  it('keeps each label to 100 values, __other__ and none, whatever tenants, users, features, ids, models, paths come', async () => {
    const key = generateApiKey();
    const issuer = await jwtIssuer();
    const gateway = createGateway(
      validateConfig({
        ...WITH_MOCK,
        tenants: { acme: {} },
        keys: [{ id: 'acme-key', sha256: hashApiKey(key), tenant: 'acme' }],
        jwt: issuer.config,
        metrics: { public: true },
        log: { level: 'silent' },
      }),
      { log: () => undefined },
    );
    const app = express().use(gateway);
    const sent: string[] = [];
    const fresh = (kind: string) => {
      const value = `${kind}-${randomUUID()}`;
      sent.push(value);
      return value;
    };
    try {
      for (let i = 0; i < 120; i++) {
        await request(app)
          .post('/v1/chat/completions')
          .set('authorization', `Bearer ${key}`)
          .set('x-tollgate-user', fresh('user'))
          .set('x-tollgate-feature', `feature-${i}`)
          .set('x-request-id', fresh('request'))
          .set('x-conversation-id', fresh('conversation'))
          .send({ model: 'gpt-4o-mini', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] })
          .expect(200);
        if (i % 4 !== 0) continue;
        // Tenants an identity provider mints, that the config does not list.
        await request(app)
          .post('/v1/chat/completions')
          .set('authorization', `Bearer ${await issuer.mint(fresh('tenant'))}`)
          .send({ model: 'gpt-4o-mini', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] })
          .expect(200);
        await request(app)
          .post('/v1/chat/completions')
          .set('authorization', `Bearer ${key}`)
          .send({ model: fresh('model'), messages: [{ role: 'user', content: 'hi' }] })
          .expect((res) => expect(res.status).toBeGreaterThanOrEqual(400));
        await request(app)
          .post(`/v1/${fresh('path')}`)
          .set('authorization', `Bearer ${key}`)
          .send({});
      }
      await gateway.flushUsage();
      const scrape = (await request(app).get('/metrics').expect(200)).text;
      const types = declared(scrape);
      const crowded = [...labelValues(scrape, types)].flatMap(([family, labels]) =>
        [...labels]
          .filter(([, values]) => values.size > 102)
          .map(([label, values]) => `${family}{${label}}: ${values.size}`),
      );
      expect(crowded).toEqual([]);
      expect(sent.filter((value) => scrape.includes(value))).toEqual([]);
      // The usage metrics name the config's tenants, as the refusals do; the feature label (the attribution header by
      // default) keeps its first 100 values, later ones are __other__.
      const requests = labelValues(scrape, types).get('tollgate_requests_total');
      expect(requests?.get('tenant')).toEqual(new Set(['acme', '__other__']));
      const features = requests?.get('feature');
      expect(features?.size).toBe(101);
      expect(features?.has('__other__')).toBe(true);
    } finally {
      await gateway.close();
    }
  });
});
