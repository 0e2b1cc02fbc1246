// `pnpm start` as users run it: demo keys printed and working offline, PORT honoured, bad configs refused with the field named.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import {
  caught,
  healthDetails,
  MOCK_UPSTREAMS,
  ROOT,
  runProxyExpectingExit,
  spawnProxy,
  waitFor,
} from './helpers/proxy.js';
import type { SpawnedProxy } from './helpers/proxy.js';

type OpenAIApiError = InstanceType<typeof OpenAI.APIError>;

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-start-'));
let demo: SpawnedProxy;

beforeAll(async () => {
  demo = await spawnProxy({ TOLLGATE_CONFIG: '', REDIS_URL: '' });
}, 90_000);

afterAll(async () => {
  await demo.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('zero-config start', () => {
  it('prints a free and a pro demo key and a curl line, and the keys work against the mock', async () => {
    const output = demo.output();
    const free = /demo-free\s+tier free\s+(tgk_\w+)/.exec(output)?.[1];
    const pro = /demo-pro\s+tier pro\s+(tgk_\w+)/.exec(output)?.[1];
    expect(free).toBeDefined();
    expect(pro).toBeDefined();
    expect(output).toContain(
      `curl -s ${demo.url.replace('127.0.0.1', 'localhost')}/v1/chat/completions -H "Authorization: Bearer ${free}"`,
    );

    // The start line says what the demo runs on, in words that read as the warnings they are for a deployment.
    expect(output).toMatch(
      /listening on http:\/\/localhost:\d+ \(stores: in memory \(one process, lost at exit\); ledger: embedded PGlite in memory \(lost at exit\); upstreams: the built-in mock \(fake answers, not a provider\)\)/,
    );

    // The process listens only once the tokenizers are in: the first health check already finds them. The public
    // sees the status only; the admin key, what is behind it.
    expect(await (await fetch(`${demo.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const adminKey = /sign in with the admin key (tgk_\w+)/.exec(output)?.[1];
    expect(await healthDetails(demo.url, adminKey!)).toMatchObject({
      status: 'ok',
      store: 'memory',
      tokenizers: 'ready',
      upstreams: ['mock'],
    });

    const freeClient = new OpenAI({ apiKey: free!, baseURL: `${demo.url}/v1`, maxRetries: 0 });
    const completion = await freeClient.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hello!' }],
    });
    expect(completion.choices[0]?.message.content).toContain('gateway mock provider');
    const denied = await caught(
      freeClient.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Hello!' }] }),
    );
    expect((denied as OpenAIApiError).code).toBe('model_not_allowed');

    const proClient = new Anthropic({ apiKey: pro!, baseURL: demo.url, maxRetries: 0 });
    const message = await proClient.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'Hello!' }],
    });
    expect(message.usage.output_tokens).toBe(16);

    // The admin key opens /metrics and the dashboard, which reads the embedded usage ledger.
    const admin = /Dashboard: (http:\/\/localhost:\d+\/dashboard)\s+\(sign in with the admin key (tgk_\w+)\)/.exec(
      output,
    );
    expect(admin).not.toBeNull();
    const asAdmin = { authorization: `Bearer ${admin![2]}` };
    expect((await fetch(`${demo.url}/metrics`)).status).toBe(401);
    const metrics = await (await fetch(`${demo.url}/metrics`, { headers: asAdmin })).text();
    expect(metrics).toContain('tollgate_requests_total');
    expect(metrics).toContain('tenant="demo-free"');
    const overview = await waitFor(async () => {
      const body = (await (await fetch(`${demo.url}/dashboard/api/overview`, { headers: asAdmin })).json()) as {
        tenants: { id: string; ledgerSpentNanoUsd: number | null; budget: { spentNanoUsd: number } | null }[];
      };
      const free = body.tenants.find((tenant) => tenant.id === 'demo-free');
      return free && (free.ledgerSpentNanoUsd ?? 0) > 0 ? free : undefined;
    }, 'the demo call in the dashboard');
    // The embedded ledger and the live budget agree on what the free tenant spent.
    expect(overview.ledgerSpentNanoUsd).toBe(overview.budget!.spentNanoUsd);
    expect((await fetch(`${demo.url}/dashboard/api/overview`)).status).toBe(401);
  });

  it('answers embeddings and token counts offline, from the mock and the local count', async () => {
    const pro = /demo-pro\s+tier pro\s+(tgk_\w+)/.exec(demo.output())![1]!;
    const embedded = await new OpenAI({ apiKey: pro, baseURL: `${demo.url}/v1`, maxRetries: 0 }).embeddings.create({
      model: 'text-embedding-3-small',
      input: ['Hello!', 'Goodbye!'],
    });
    expect(embedded.data.map((item) => item.embedding.length)).toEqual([1536, 1536]);
    expect(embedded.usage.prompt_tokens).toBe(4);
    const counted = await new Anthropic({ apiKey: pro, baseURL: demo.url, maxRetries: 0 }).messages.countTokens({
      model: 'claude-sonnet-4-5',
      messages: [{ role: 'user', content: 'Hello!' }],
    });
    expect(counted.input_tokens).toBeGreaterThan(0);
  });
});

describe('refusing to start', () => {
  it.each([
    [{ tiers: { free: { requestsPerMinute: 0 } } }, 'tiers.free.requestsPerMinute must be a positive integer'],
    [{ tenants: { acme: { tier: 'pro' } } }, 'tenants.acme.tier names an unknown tier "pro"'],
    [{ tierz: {} }, 'did you mean "tiers"?'],
    [
      { timezone: 'Europe/Berlim' },
      'timezone must be an IANA time zone like "Europe/Berlin" or "UTC"; got "Europe/Berlim"; did you mean "Europe/Berlin"?',
    ],
    // No upstream named: the mock's fake answers are served only on purpose (`{ "kind": "mock" }`).
    [
      { redisUrl: 'redis://127.0.0.1:6379', tiers: { free: {} } },
      'the config names no "upstreams", so no provider would answer',
    ],
  ])(
    '%j',
    async (config, message) => {
      const file = path.join(dir, `bad-${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(file, JSON.stringify(config));
      const { code, output } = await runProxyExpectingExit({ TOLLGATE_CONFIG: file });
      expect(code).toBe(1);
      expect(output).toContain(message);
      expect(output).not.toContain('listening on');
    },
    30_000,
  );

  it('a missing config file and a bad PORT', async () => {
    const missing = await runProxyExpectingExit({ TOLLGATE_CONFIG: path.join(dir, 'nope.json') });
    expect(missing.code).toBe(1);
    expect(missing.output).toContain('cannot read TOLLGATE_CONFIG');
    const badPort = await runProxyExpectingExit({ TOLLGATE_CONFIG: '', PORT: 'eighty' });
    expect(badPort.code).toBe(1);
    expect(badPort.output).toContain('PORT must be an integer');
  }, 30_000);
});

describe('keys managed with the CLI while the proxy runs', () => {
  it('a key created with `pnpm tollgate keys create --config` works at once, and stops at once when revoked', async () => {
    const configPath = path.join(dir, 'live.json');
    writeFileSync(configPath, JSON.stringify({ upstreams: MOCK_UPSTREAMS, tenants: { acme: {} } }));
    const proxy = await spawnProxy({ TOLLGATE_CONFIG: configPath, REDIS_URL: '' });
    const cli = (...args: string[]) =>
      promisify(execFile)(
        path.join(ROOT, 'node_modules/.bin/tsx'),
        ['--conditions=source', 'packages/cli/src/tollgate.ts', ...args],
        { cwd: ROOT },
      );
    const status = async (key: string) =>
      (await fetch(`${proxy.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status;
    try {
      const created = JSON.parse(
        (await cli('keys', 'create', '--config', configPath, '--tenant', 'acme', '--scopes', 'chat', '--json')).stdout,
      ) as { key: string; record: { id: string } };
      await waitFor(async () => ((await status(created.key)) === 200 ? true : undefined), 'the new key to work');
      await cli('keys', 'revoke', created.record.id, '--config', configPath);
      await waitFor(
        async () => ((await status(created.key)) === 401 ? true : undefined),
        'the revoked key to stop working',
      );
      expect(proxy.output()).toContain('reloaded 1 keys');
    } finally {
      await proxy.stop();
    }
  }, 60_000);
});
