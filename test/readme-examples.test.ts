// README examples are files in the repository, run here: a README block that names its file must be that file, word for word.
// A proxy config block names its config file on the line before it (`<!-- config: <path> -->`); the file validates.
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from '@jest/globals';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { deleteKeysWithPrefix, REDIS_URL } from './conformance/redis.js';
import { validateConfig } from '../packages/gateway/src/config/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** READMEs whose every TypeScript block is a complete example file (the others are being converted). */
const CONVERTED = [
  'packages/auth/README.md',
  'packages/budget/README.md',
  'packages/cache/README.md',
  'packages/cli/README.md',
  'packages/core/README.md',
  'packages/dashboard/README.md',
  'packages/gateway/README.md',
  'packages/guard/README.md',
  'packages/mcp/README.md',
  'packages/metering/README.md',
  'packages/providers/README.md',
  'packages/ratelimit/README.md',
  'packages/redis/README.md',
  'packages/router/README.md',
  'examples/proxy/README.md',
];

/** Every ```ts block of a README, with the file its first line names (`// <path>: what it shows`), if any. */
function tsBlocks(readme: string): { code: string; file?: string }[] {
  const text = readFileSync(path.join(ROOT, readme), 'utf8');
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => {
    const code = match[1]!;
    const file = /^\/\/ ([\w./-]+\.ts): /.exec(code)?.[1];
    return file ? { code, file } : { code };
  });
}

function allReadmes(): string[] {
  const readmes = ['README.md', 'examples/proxy/README.md'];
  for (const dir of readdirSync(path.join(ROOT, 'packages'))) {
    if (existsSync(path.join(ROOT, 'packages', dir, 'README.md'))) readmes.push(`packages/${dir}/README.md`);
  }
  return readmes;
}

/**
 * Every ```json block of a README, with the config file it is part of when the line before it names
 * one (`<!-- config: <path> -->`): the whole file, or some of its top-level fields.
 */
function jsonBlocks(readme: string): { json: string; file?: string }[] {
  const text = readFileSync(path.join(ROOT, readme), 'utf8');
  return [...text.matchAll(/^(?:<!-- config: ([\w./-]+\.json) -->\n)?```json\n([\s\S]*?)^```$/gm)].map((match) =>
    match[1] ? { json: match[2]!, file: match[1] } : { json: match[2]! },
  );
}

/** A block's JSON: a whole object, or top-level fields of one (`"cache": { ... }`). */
function parseBlock(json: string): Record<string, unknown> {
  return JSON.parse(json.trimStart().startsWith('{') ? json : `{${json}}`) as Record<string, unknown>;
}

describe('README examples', () => {
  it('a block that names its file is that file, word for word', () => {
    const named = allReadmes().flatMap((readme) =>
      tsBlocks(readme)
        .filter((block) => block.file)
        .map((block) => ({ readme, ...block })),
    );
    expect(named.length).toBeGreaterThan(0);
    for (const { readme, file, code } of named) {
      expect({ readme, file, code }).toEqual({ readme, file, code: readFileSync(path.join(ROOT, file!), 'utf8') });
    }
  });

  it('a proxy config block is part of a config file that validates', () => {
    const blocks = jsonBlocks('examples/proxy/README.md');
    // Blocks that name no file are what the proxy writes (a usage record, a log line), not configs.
    expect(blocks.filter((block) => !block.file).map((block) => Object.keys(parseBlock(block.json))[0])).toEqual([
      'requestId',
      'level',
    ]);
    const named = blocks.filter((block) => block.file);
    expect(named.length).toBeGreaterThan(0);
    for (const { file, json } of named) {
      const config = JSON.parse(readFileSync(path.join(ROOT, file!), 'utf8')) as Record<string, unknown>;
      const fields = parseBlock(json);
      expect({ file, fields }).toEqual({
        file,
        fields: Object.fromEntries(Object.keys(fields).map((field) => [field, config[field]])),
      });
      expect(() => validateConfig(config)).not.toThrow();
    }
  });

  it.each(CONVERTED)('%s has only complete example files', (readme) => {
    const blocks = tsBlocks(readme);
    expect(blocks.length).toBeGreaterThan(0);
    expect(blocks.filter((block) => !block.file).map((block) => block.code.split('\n')[0])).toEqual([]);
  });
});

/** A fake OpenAI: every chat completion answered with usage, every image request with one image. */
async function fakeOpenAi(): Promise<{ url: string; close(): void }> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/v1/images/generations') {
        res.end(JSON.stringify({ created: 1_700_000_000, data: [{ url: 'https://example.invalid/cat.png' }] }));
        return;
      }
      res.end(
        JSON.stringify({
          id: 'chatcmpl-readme',
          object: 'chat.completion',
          created: 1_700_000_000,
          model: 'gpt-4o-mini',
          choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
        }),
      );
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, close: () => server.close() };
}

/** Runs an example as a user would (`node --import tsx`), until it prints its "listening on" line. */
async function runExample(
  file: string,
  env: Record<string, string>,
): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=source', file], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not start:\n${output}`)), 30_000);
    child.stdout!.on('data', () => {
      if (/listening on /.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}:\n${output}`)));
  });
  return { child, output: () => output };
}

const children: ChildProcess[] = [];
const prefixes: string[] = [];

afterAll(async () => {
  await Promise.all(
    children.map(async (child) => {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }),
  );
  await Promise.all(prefixes.map((prefix) => deleteKeysWithPrefix(REDIS_URL, prefix)));
});

describe.each(['packages/ratelimit/examples/layers.ts', 'packages/ratelimit/examples/fused.ts'])('%s', (file) => {
  it('serves a free key five chat completions a minute, then 429, on Redis', async () => {
    const openai = await fakeOpenAi();
    const prefix = `tg-test:${randomUUID()}:`;
    prefixes.push(prefix);
    try {
      const example = await runExample(file, {
        OPENAI_BASE_URL: openai.url,
        OPENAI_API_KEY: 'sk-test',
        REDIS_URL,
        REDIS_PREFIX: prefix,
      });
      children.push(example.child);
      const [, url, key] = /listening on (\S+); try the key (\S+)/.exec(example.output())!;
      const chat = () =>
        fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            max_tokens: 64,
            messages: [{ role: 'user', content: 'hello' }],
          }),
        });
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await chat()).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
      const refused = await chat();
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded');
      if (file.endsWith('layers.ts')) {
        const image = await fetch(`${url}/v1/images/generations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: 'a cat' }),
        });
        expect(image.status).toBe(200);
      }
    } finally {
      openai.close();
    }
  }, 60_000);
});

describe('packages/gateway/examples/express-app.ts', () => {
  it("serves the app's own route, and a chat completion to its key only", async () => {
    const example = await runExample('packages/gateway/examples/express-app.ts', {});
    children.push(example.child);
    const [, url, key] = /listening on (\S+); try the key (\S+)/.exec(example.output())!;
    const chat = (headers: Record<string, string>) =>
      fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
      });
    const answer = await chat({ authorization: `Bearer ${key}` });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-tollgate-cost-usd')).toMatch(/^\d/);
    expect((await chat({})).status).toBe(401);
    expect(await (await fetch(`${url}/status`)).json()).toEqual({ ok: true });
  }, 60_000);
});

describe('packages/budget/examples/budgets.ts', () => {
  it('meters a call into the budgets and shows them to the admin key only', async () => {
    const openai = await fakeOpenAi();
    const prefix = `tg-test:${randomUUID()}:`;
    prefixes.push(prefix);
    const adminKey = `admin-${randomUUID()}`;
    try {
      const example = await runExample('packages/budget/examples/budgets.ts', {
        OPENAI_BASE_URL: openai.url,
        OPENAI_API_KEY: 'sk-test',
        REDIS_URL,
        REDIS_PREFIX: prefix,
        ADMIN_KEY: adminKey,
      });
      children.push(example.child);
      const [, url, key] = /listening on (\S+); try the key (\S+)/.exec(example.output())!;
      const chat = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o', max_tokens: 64, messages: [{ role: 'user', content: 'hello' }] }),
      });
      expect(chat.status).toBe(200);
      expect((await fetch(`${url}/admin/budgets/tenant/acme`)).status).toBe(401);
      const tenant = await fetch(`${url}/admin/budgets/tenant/acme`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      expect(tenant.status).toBe(200);
      expect(JSON.stringify(await tenant.json())).toContain('acme');
    } finally {
      openai.close();
    }
  }, 60_000);
});

describe('packages/auth/examples/keys-and-jwt.ts', () => {
  it('lets in its API key and a JWT of the IdP, and refuses anyone else', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    const idp = http.createServer((_req, res) =>
      res.setHeader('content-type', 'application/json').end(JSON.stringify({ keys: [jwk] })),
    );
    idp.listen(0, '127.0.0.1');
    await once(idp, 'listening');
    const issuer = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`;
    try {
      const example = await runExample('packages/auth/examples/keys-and-jwt.ts', {
        REDIS_URL: '',
        JWKS_URL: `${issuer}/jwks.json`,
        JWT_ISSUER: issuer,
      });
      children.push(example.child);
      const [, url, key] = /listening on (\S+); try the key (\S+)/.exec(example.output())!;
      const chat = (credential: string, model = 'gpt-4o-mini') =>
        fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model, messages: [] }),
        });
      const byKey = await chat(key!);
      expect(byKey.status).toBe(200);
      expect(await byKey.json()).toMatchObject({ keyId: 'try-me', tenantId: 'acme', authMethod: 'api_key' });
      expect((await chat(key!, 'gpt-4o')).status).toBe(403);
      const token = await new SignJWT({ org_id: 'globex', scope: 'chat', tier: 'pro' })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(issuer)
        .setAudience('tollgate')
        .setSubject('alice')
        .setExpirationTime('5m')
        .sign(privateKey);
      const byToken = await chat(token, 'gpt-4o');
      expect(byToken.status).toBe(200);
      expect(await byToken.json()).toMatchObject({ tenantId: 'globex', tier: 'pro' });
      expect((await chat('not-a-credential')).status).toBe(401);
    } finally {
      idp.close();
    }
  }, 60_000);
});

describe('packages/auth/examples/attribution.ts', () => {
  it("names each request's end user from a header or the body, keeps a key's own, refuses one that names none", async () => {
    const example = await runExample('packages/auth/examples/attribution.ts', {});
    children.push(example.child);
    const [, url, appKey, aliceKey] = /listening on (\S+); the app's key (\S+); alice's key (\S+)/.exec(
      example.output(),
    )!;
    const chat = (key: string, headers: Record<string, string>, body: Record<string, unknown> = {}) =>
      fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [], ...body }),
      });
    const byHeader = await chat(appKey!, { 'x-tollgate-user': 'user-42', 'x-tollgate-tags': 'eu,beta' });
    expect(await byHeader.json()).toEqual({ keyId: 'app', userId: 'user-42', tags: ['eu', 'beta'] });
    expect(await (await chat(appKey!, {}, { user: 'user-7' })).json()).toEqual({ keyId: 'app', userId: 'user-7' });
    const nobody = await chat(appKey!, {});
    expect(nobody.status).toBe(400);
    expect(await nobody.json()).toMatchObject({ error: { code: 'attribution_required', param: 'user' } });
    expect(await (await chat(aliceKey!, { 'x-tollgate-user': 'mallory' })).json()).toEqual({
      keyId: 'alice-key',
      userId: 'alice',
    });
  }, 60_000);
});

describe('packages/redis/examples/shared-stores.ts', () => {
  it('serves a metered, limited call and reports Redis healthy', async () => {
    const openai = await fakeOpenAi();
    const prefix = `tg-test:${randomUUID()}:`;
    prefixes.push(prefix);
    try {
      const example = await runExample('packages/redis/examples/shared-stores.ts', {
        OPENAI_BASE_URL: openai.url,
        OPENAI_API_KEY: 'sk-test',
        REDIS_URL,
        REDIS_PREFIX: prefix,
      });
      children.push(example.child);
      const [, url, key] = /listening on (\S+); try the key (\S+)/.exec(example.output())!;
      expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ redis: true });
      const chat = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] }),
      });
      expect(chat.status).toBe(200);
    } finally {
      openai.close();
    }
  }, 60_000);
});

describe('packages/providers/examples/declared-calls.ts', () => {
  it('meters the proxied route and the SDK route alike', async () => {
    const openai = await fakeOpenAi();
    const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-readme-'));
    const usageLog = path.join(dir, 'usage.jsonl');
    try {
      const example = await runExample('packages/providers/examples/declared-calls.ts', {
        OPENAI_BASE_URL: openai.url,
        OPENAI_API_KEY: 'sk-test',
        USAGE_LOG: usageLog,
      });
      children.push(example.child);
      const [, url, key] = /listening on (\S+); try the key (\S+)/.exec(example.output())!;
      const post = (route: string, body: unknown) =>
        fetch(`${url}${route}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      expect(
        (await post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }))
          .status,
      ).toBe(200);
      expect(
        (await post('/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })).status,
      ).toBe(403);
      const summary = await post('/summarize', { text: 'a long text' });
      expect(summary.status).toBe(200);
      expect(await summary.json()).toEqual({ summary: 'hi' });
      // Both calls are in the usage log (written in batches: wait for the two lines).
      const until = Date.now() + 5_000;
      let lines: string[] = [];
      while (lines.length < 2 && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        lines = existsSync(usageLog) ? readFileSync(usageLog, 'utf8').trim().split('\n').filter(Boolean) : [];
      }
      expect(lines.map((line) => (JSON.parse(line) as { outputTokens: number }).outputTokens)).toEqual([2, 2]);
    } finally {
      openai.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('packages/core/examples/memory-stores.ts', () => {
  it('counts, reserves and settles in memory', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--conditions=source', 'packages/core/examples/memory-stores.ts'],
      { cwd: ROOT },
    );
    expect(stdout).toBe('counted: allowed true, 59 left\nreserved: granted\nsettled: 1250000 nano-USD spent, 0 held\n');
  }, 30_000);
});

describe('packages/core/examples/refusals.ts', () => {
  it('tells which piece refused a request once its response closed', async () => {
    // An upstream that holds its first answer until the second request was refused.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let arrived!: () => void;
    const inFlight = new Promise<void>((resolve) => (arrived = resolve));
    const openai = http.createServer((req, res) => {
      arrived();
      req.resume();
      void held.then(() =>
        res.setHeader('content-type', 'application/json').end(JSON.stringify({ id: 'chatcmpl-held', choices: [] })),
      );
    });
    openai.listen(0, '127.0.0.1');
    await once(openai, 'listening');
    try {
      const example = await runExample('packages/core/examples/refusals.ts', {
        OPENAI_BASE_URL: `http://127.0.0.1:${(openai.address() as AddressInfo).port}/v1`,
      });
      children.push(example.child);
      const [, url, key] = /listening on (\S+); try the key (\S+)/.exec(example.output())!;
      const chat = () =>
        fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
        });
      const first = chat();
      // The first request is in flight once the upstream has it; the second then finds the one slot taken.
      await inFlight;
      const second = await chat();
      expect(second.status).toBe(429);
      release();
      expect((await first).status).toBe(200);
      const until = Date.now() + 5_000;
      while (!example.output().includes('refused by') && Date.now() < until)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(example.output()).toContain('refused by concurrency (rate_limit_exceeded): POST /v1/chat/completions');
    } finally {
      release();
      openai.close();
    }
  }, 60_000);
});

describe('packages/metering/examples/usage-sinks.ts and packages/cli/examples/report.ts', () => {
  it('meters both routes into Prometheus and PostgreSQL, and the report reads them back', async () => {
    const openai = await fakeOpenAi();
    const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-readme-'));
    const postgresUrl = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
    const table = `tg_readme_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    const pg = (await import('pg')).default;
    try {
      const example = await runExample('packages/metering/examples/usage-sinks.ts', {
        OPENAI_BASE_URL: openai.url,
        OPENAI_API_KEY: 'sk-test',
        DATA_DIR: dir,
        POSTGRES_URL: postgresUrl,
        USAGE_TABLE: table,
      });
      const [, url, key] = /listening on (\S+); try the key (\S+)/.exec(example.output())!;
      const post = (route: string, body: unknown) =>
        fetch(`${url}${route}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      expect(
        (await post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }))
          .status,
      ).toBe(200);
      expect((await post('/summarize', { text: 'a long text' })).status).toBe(200);
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(
        /tollgate_requests_total\{[^}]*tenant="acme"[^}]*\} 2/,
      );
      // SIGTERM flushes the sinks through the spool before the process exits.
      const exited = once(example.child, 'exit');
      example.child.kill('SIGTERM');
      await exited;
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [
          '--import',
          'tsx',
          '--conditions=source',
          'packages/cli/examples/report.ts',
          '--by',
          'tenant',
          '--since',
          '1d',
          '--postgres',
          postgresUrl,
          '--table',
          table,
          '--json',
        ],
        { cwd: ROOT },
      );
      expect(JSON.parse(stdout)).toEqual([expect.objectContaining({ tenant: 'acme', requests: 2 })]);
    } finally {
      openai.close();
      rmSync(dir, { recursive: true, force: true });
      const client = new pg.Client({ connectionString: postgresUrl });
      await client.connect();
      await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
      await client.end();
    }
  }, 60_000);
});

/** Examples that start what they need themselves (fake upstreams, the app), print what happened and exit. */
describe.each([
  {
    file: 'packages/router/examples/fallback.ts',
    output:
      'smart: group smart, targets openai/gpt-4o, anthropic/claude-sonnet-4-5\nevent: failed openai/gpt-4o (status 500)\n' +
      'answered by anthropic/claude-sonnet-4-5 (200)\nauto: group quick, targets azure/gpt-4o-mini, openai/gpt-4o\nanswered by azure/gpt-4o-mini (200)\n',
  },
  {
    file: 'packages/router/examples/translate.ts',
    output:
      'openai.chat -> anthropic.messages: true\nanswer: smart says "Hello from Claude" (16 tokens)\n' +
      'error: 502 {"error":{"message":"The Anthropic upstream failed (HTTP 529).","type":"server_error","code":"upstream_error","param":null}}\n',
  },
  {
    file: 'packages/redis/examples/leases.ts',
    output:
      'redis up: 5 of 5 allowed\nredis down\nredis out: 10 of 20 allowed (slice: 0.1 × 100)\nredis up\nredis back: allowed true, answered by Redis again\n',
  },
  {
    file: 'packages/redis/examples/blocks.ts',
    output:
      'a holds {"counter":1,"fixedWindow":0,"ledger":0}\nRedis counts 10 tokens while a holds its block\n' +
      'after a gives its block back: 8\nspent 296 of 296, reserved 0\n',
  },
  {
    file: 'packages/cache/examples/redis-cache.ts',
    output: '200 miss: breakpoint sent: true\n200 hit: breakpoint sent: true\nupstream calls: 1\n',
  },
  { file: 'packages/cache/examples/fused.ts', output: '200 miss\n200 hit\nupstream calls: 1\n' },
  {
    file: 'packages/guard/examples/guarded-app.ts',
    output:
      'same request three times: 200, 200, 429 repeated_request\nsuspended key: 403 key_suspended\n' +
      'a guessed key: 401 invalid_api_key\nthen the right key from that address: 429 auth_failures_exceeded\n' +
      'alerts delivered: auth_flood\n',
  },
  {
    file: 'packages/guard/examples/limit-scale.ts',
    output: 'limit scale: 0.5\n4 requests, limit 4 × 0.5: 200 200 429 429\n',
  },
  {
    file: 'packages/guard/examples/load-shedder.ts',
    output: 'free while saturated: 503 service_unavailable\npro while saturated: 200\nheld requests: 200 200\n',
  },
  {
    file: 'packages/guard/examples/prompt-guardrails.ts',
    output:
      'masked 1 email\nmasked 1 phone\npersonal data: 200\nthe upstream read: I am [EMAIL], [PHONE]. Book it.\n' +
      'an injection: 400 prompt_rejected: The prompt was refused by guardrail "deny[0]".\n' +
      'the classifier: 400 prompt_rejected: The prompt was refused by guardrail "check:fraud".\n' +
      'answers read: Noted, thank you.\n',
  },
  {
    file: 'packages/guard/examples/webhook-receiver.ts',
    output: 'suspended (signature ok): Key k1 (tenant acme) is suspended: spend anomaly.\nforged: 401\n',
  },
  {
    file: 'examples/proxy/examples/clients.ts',
    output:
      'openai: length, 16 output tokens\nanthropic: max_tokens, 16 output tokens\ngemini: MAX_TOKENS, 16 output tokens\nunknown key: 401\n',
  },
  {
    file: 'examples/proxy/examples/mock-provider.ts',
    output: 'answered: 200, 11 input and 10 output tokens\nfailing: 500\nhanging: TimeoutError\n',
  },
  { file: 'examples/proxy/examples/in-code.ts', output: '200, 31 tokens\n' },
  {
    file: 'packages/gateway/examples/mount.ts',
    output: 'gateway: 200, 31 tokens\nwithout a key: 401\nyour route: 200\n',
  },
  { file: 'packages/gateway/examples/composer.ts', output: 'gpt-4o-mini: 31 tokens\ngpt-4o: 403\nagain: 429\n' },
  {
    file: 'packages/gateway/examples/cost.ts',
    output:
      'cost: 0.00001545 USD, usage.cost_usd: 0.00001545\nbudget left: 0.99998455 USD\nstream usage.cost_usd: 0.00001545\n',
  },
  {
    file: 'packages/gateway/examples/mcp.ts',
    output:
      'tools: web_search\nweb_search: 3 results for tollgate\ndelete_index: tool_not_allowed\nacme spent: $0.002\n',
  },
  {
    file: 'packages/mcp/examples/behind-your-chain.ts',
    output: 'tools: forecast\nforecast: Lyon: sunny, 21°C\nset_alarm: tool_not_allowed\nacme spent: $0.002\n',
  },
  {
    file: 'packages/dashboard/examples/minimal.ts',
    output: 'without the admin key: 401\nwith it: 200, acme gpt-4o-mini\n',
  },
  { file: 'packages/metering/examples/pglite-ledger.ts', output: 'acme: 2 requests, 20 input and 4 output tokens\n' },
  {
    file: 'packages/metering/examples/outcomes.ts',
    output:
      'recorded: resolved conversation ticket-4711, 2 requests, 10000000 nano-USD\nunknown ticket: undefined\n' +
      'support-bot resolved: 1 outcome, 2 requests, 10000000 nano-USD each, value/cost 1250\n',
  },
])('$file', ({ file, output }) => {
  it('runs to its end and prints what the README says it shows', async () => {
    const prefix = `tg-test:${randomUUID()}:`;
    prefixes.push(prefix);
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--conditions=source', file], {
      cwd: ROOT,
      env: { ...process.env, REDIS_URL, REDIS_PREFIX: prefix },
      timeout: 30_000,
    });
    expect(stdout).toBe(output);
  }, 40_000);
});
