// 1,000+ generated malformed requests (bad JSON, wrong types, extreme numbers, odd headers, prototype keys): no 5xx, nothing polluted, still serving.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const key = newApiKey();
const adminKey = newApiKey();
let proxy: RunningProxy;

/** Deterministic PRNG (mulberry32) so a failure can be replayed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: Buffer | string;
}

const PATHS = ['/v1/chat/completions', '/v1/responses', '/v1/messages'];
const WEIRD_VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  -0.0001,
  1e308,
  -1e308,
  2 ** 53,
  2 ** 53 + 2,
  1e20,
  '',
  'x',
  '5',
  ' ',
  'NaN',
  'Infinity',
  [],
  [null],
  [1, 2],
  {},
  { a: 1 },
  'a'.repeat(5000),
  '\u0000',
  '\ud800',
  '🙂'.repeat(50),
  [[[[[]]]]],
  JSON.parse('{"__proto__":{"polluted":"yes"}}'),
  JSON.parse('{"constructor":{"prototype":{"polluted":"yes"}}}'),
];
const FIELDS = [
  'model',
  'messages',
  'input',
  'max_tokens',
  'max_completion_tokens',
  'max_output_tokens',
  'stream',
  'stream_options',
  'system',
  'instructions',
  'temperature',
  'tools',
  'metadata',
  '__proto__',
  'constructor',
  'prototype',
];

function validBody(path: string): Record<string, unknown> {
  if (path === '/v1/responses') return { model: 'gpt-4o-mini', input: 'hi', max_output_tokens: 5 };
  if (path === '/v1/messages')
    return { model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] };
  return { model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] };
}

function generate(count: number): RawRequest[] {
  const random = prng(20261122);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const auth = () =>
    random() < 0.85
      ? { authorization: `Bearer ${key}` }
      : pick<Record<string, string | string[]>>([
          {},
          { authorization: 'Bearer' },
          { authorization: 'Bearer  a b c' },
          { authorization: 'Basic dXNlcjpwYXNz' },
          { authorization: `bearer ${key}x` },
          { 'x-api-key': '' },
          { 'x-api-key': [key, key] },
          { authorization: `Bearer ${'tgk_'.padEnd(4000, 'A')}` },
          { authorization: 'Bearer __proto__' },
          { 'x-api-key': 'constructor' },
        ]);
  const requests: RawRequest[] = [];
  for (let i = 0; i < count; i++) {
    const path = pick(PATHS);
    const headers: Record<string, string | string[]> = { 'content-type': 'application/json', ...auth() };
    const kind = i % 8;
    let body: Buffer | string;
    if (kind === 0) {
      // Broken JSON: cut, padded, or plain garbage.
      const text = JSON.stringify(validBody(path));
      body = pick([
        text.slice(0, Math.floor(random() * text.length)),
        `${text}}`,
        `${text},`,
        "{'model': 'x'}",
        '{"model": undefined}',
        'NaN',
        '[',
        '{"a":1,}',
        '\u0000\u0001',
        '[]'.repeat(3),
        `${'['.repeat(5000)}${']'.repeat(5000)}`,
        '',
      ]);
    } else if (kind === 1) {
      // Random bytes.
      body = Buffer.from(Array.from({ length: Math.floor(random() * 200) }, () => Math.floor(random() * 256)));
    } else if (kind <= 4) {
      // A valid body with one to three fields replaced by values of the wrong type or size.
      const target = validBody(path);
      for (let n = 0; n < 1 + Math.floor(random() * 3); n++) target[pick(FIELDS)] = pick(WEIRD_VALUES);
      body = JSON.stringify(target);
    } else if (kind === 5) {
      // Messages and content of the wrong shapes.
      const target = validBody(path);
      const message = pick<unknown>([
        null,
        5,
        'hi',
        [],
        { role: 5 },
        { content: 'x' },
        { role: 'user', content: 12 },
        { role: 'user', content: [{ type: 'text', text: 5 }] },
        { role: 'user', content: 'x', __proto__: { admin: true } },
        JSON.parse('{"role":"user","content":"x","__proto__":{"polluted":"yes"}}'),
      ]);
      if (path === '/v1/responses') target.input = pick<unknown>([[message], message, 5]);
      else target.messages = pick<unknown>([[message], [message, message], message, []]);
      body = JSON.stringify(target);
    } else if (kind === 6) {
      // Prototype-pollution keys, literal in the JSON text, at the top level and nested.
      const valid = JSON.stringify(validBody(path)).slice(1);
      body = pick([
        `{"__proto__":{"polluted":"yes","model":"x"},${valid}`,
        `{"constructor":{"prototype":{"polluted":"yes"}},${valid}`,
        `{"stream_options":{"__proto__":{"include_usage":true}},${valid}`,
        `{"metadata":{"__proto__":{"polluted":"yes"}},${valid}`,
        `{"model":{"__proto__":{"toString":"x"}},"messages":[]}`,
        `{"__proto__":null,${valid}`,
      ]);
    } else {
      // Odd headers around a fine body.
      body = JSON.stringify(validBody(path));
      Object.assign(
        headers,
        pick<Record<string, string>>([
          { 'content-type': 'text/plain' },
          { 'content-type': 'application/json; charset=utf-16' },
          { 'content-type': 'application/json; charset=latin1' },
          { 'content-encoding': 'gzip' },
          { 'content-encoding': 'br, deflate, gzip' },
          { 'content-type': 'application/x-www-form-urlencoded' },
          { 'x-request-id': 'a'.repeat(500) },
          { 'x-request-id': '../../etc/passwd' },
          { 'anthropic-version': '"><script>' },
          { 'anthropic-beta': 'a'.repeat(2000) },
          { accept: 'text/event-stream' },
          { 'accept-encoding': 'gzip, br' },
          { 'transfer-encoding': 'chunked' },
          { 'content-type': 'application/json', 'x-forwarded-for': 'not-an-ip, 999.1.1.1' },
        ]),
      );
    }
    requests.push({ method: 'POST', path, headers, body });
  }
  // Other routes and methods with the same treatment.
  for (let i = 0; i < 100; i++) {
    requests.push(
      pick<RawRequest>([
        {
          method: 'GET',
          path: '/v1/models',
          headers: pick<Record<string, string>>([{ authorization: 'Bearer x' }, {}, { 'x-api-key': key }]),
        },
        { method: 'GET', path: '/v1/chat/completions', headers: { authorization: `Bearer ${key}` } },
        { method: 'PUT', path: '/v1/messages', headers: { authorization: `Bearer ${key}` }, body: '{}' },
        {
          method: 'GET',
          path: '/admin/budgets',
          headers: pick<Record<string, string>>([
            {},
            { authorization: `Bearer ${adminKey}x` },
            { authorization: `Bearer ${key}` },
          ]),
        },
        {
          method: 'POST',
          path: '/admin/keys',
          headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
          body: pick([
            '{"id":"../../x"}',
            '{"scopes":"all"}',
            '{"tenant":{"__proto__":{}}}',
            '[',
            '{"tier":"constructor"}',
            '{"tenant":"__proto__"}',
          ]),
        },
        {
          method: 'POST',
          path: '/admin/budgets/tenant/acme/top-up',
          headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
          body: pick(['{"usd":-1}', '{"usd":1e308}', '{"usd":"5"}', '{}', 'x']),
        },
        {
          method: 'GET',
          path: '/admin/budgets/__proto__/constructor',
          headers: { authorization: `Bearer ${adminKey}` },
        },
        { method: 'GET', path: `/v1/${'%'.repeat(3)}`, headers: {} },
        { method: 'GET', path: '/healthz?x=%E0%A4%A', headers: {} },
      ]),
    );
  }
  return requests;
}

function send(base: URL, request: RawRequest): Promise<number> {
  return new Promise((resolve) => {
    const outgoing = http.request(
      {
        host: base.hostname,
        port: base.port,
        method: request.method,
        path: request.path,
        headers: request.headers,
        agent: false,
      },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
        response.on('error', () => resolve(-1));
      },
    );
    // A request the server refuses mid-upload (e.g. a bad header) may end in a reset: that is no 5xx.
    outgoing.on('error', () => resolve(-1));
    if (request.body !== undefined) outgoing.end(request.body);
    else outgoing.end();
  });
}

beforeAll(async () => {
  proxy = await startProxy({
    adminKeySha256: sha256Hex(adminKey),
    tiers: { pro: { requestsPerMinute: 100_000, tokensPerMinute: 100_000_000, models: ['*'], maxOutputTokens: 64 } },
    tenants: { acme: { tier: 'pro', budget: { usd: 1000, period: 'day' } } },
    keys: [{ id: 'fuzz', sha256: sha256Hex(key), tenant: 'acme', scopes: ['chat'] }],
  });
});

afterAll(async () => {
  await proxy.close();
});

describe('malformed requests', () => {
  it('1,100 generated requests: zero 5xx, the prototype untouched, the proxy still serving', async () => {
    const requests = generate(1000);
    expect(requests.length).toBeGreaterThanOrEqual(1000);
    const base = new URL(proxy.url);
    const statuses: number[] = [];
    for (let i = 0; i < requests.length; i += 50) {
      statuses.push(...(await Promise.all(requests.slice(i, i + 50).map((request) => send(base, request)))));
    }
    const serverErrors = statuses
      .map((status, i) => ({ status, request: requests[i]! }))
      .filter(({ status }) => status >= 500);
    expect(
      serverErrors.map(
        ({ status, request }) => `${status} ${request.method} ${request.path} ${String(request.body).slice(0, 120)}`,
      ),
    ).toEqual([]);
    // Most requests are refused as the client's fault; some odd-but-valid ones pass.
    expect(statuses.filter((status) => status >= 400 && status < 500).length).toBeGreaterThan(500);
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThan(0);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect(Object.prototype).not.toHaveProperty('admin');

    const health = await fetch(`${proxy.url}/healthz`);
    expect(health.status).toBe(200);
    const ok = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(validBody('/v1/chat/completions')),
    });
    expect(ok.status).toBe(200);
  }, 120_000);
});
