// The proxy's own upstream keys never reach a client or the operator log, however an upstream's 4xx echoes them.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { closeServer, newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const clientKey = newApiKey();
// `/` and `+` are what JSON encoders escape (`\/`, `\u002B`) and URLs percent-encode.
const upstreamOpenAiKey = `sk-proj-${randomBytes(24).toString('base64url')}/a+b`;
const upstreamAnthropicKey = `sk-ant-api03-${randomBytes(24).toString('base64url')}+c/d`;
const logLines: string[] = [];
let upstreamUrl: string;
let upstream: Server;
let proxy: RunningProxy;
/** When set, the next error body is padded to reach `cutAt` bytes in the middle of the key, in a write of its own. */
let cutAt: number | undefined;

/** The key as an upstream wrote it: raw, PHP-style `\/`, `\u002B`, and percent-encoded in a URL. */
function echoedForms(key: string): string[] {
  return [key, key.replaceAll('/', '\\/'), key.replaceAll('+', '\\u002B'), encodeURIComponent(key)];
}

/** An upstream that names the credentials it received in a 400, in its API's error shape, in two chunks. */
async function echoCredentials(req: IncomingMessage, res: ServerResponse): Promise<void> {
  let received = '';
  for await (const chunk of req) received += String(chunk);
  const anthropic = req.url === '/v1/messages';
  // Asked to, it names another upstream's key (one it was handed elsewhere, or shares a backend with).
  const key = received.includes('ECHO_OTHER_UPSTREAM_KEY')
    ? upstreamAnthropicKey
    : anthropic
      ? String(req.headers['x-api-key'])
      : String(req.headers.authorization).replace(/^Bearer /, '');
  const [raw, slashEscaped, plusEscaped, urlEncoded] = echoedForms(key);
  const message = `Bad request with key ${raw} (also ${slashEscaped}, ${plusEscaped}, https://x.test/?k=${urlEncoded})`;
  const body = anthropic
    ? `{"type":"error","error":{"type":"invalid_request_error","message":"${message}"}}`
    : `{"error":{"message":"${message}","type":"invalid_request_error","param":null,"code":"bad_request"}}`;
  res.writeHead(400, {
    'content-type': 'application/json',
    'retry-after': key,
    'x-should-retry': `false ${key}`,
    'x-echo': key,
  });
  const keyAt = body.indexOf(key);
  const padding = cutAt === undefined ? '' : ' '.repeat(cutAt - keyAt - key.length / 2);
  cutAt = undefined;
  // Split inside the key: the proxy must see it whole before it cleans the body.
  const split = keyAt + Math.floor(key.length / 2);
  res.write(padding + body.slice(0, split));
  await new Promise((resolve) => setTimeout(resolve, 30));
  res.end(body.slice(split));
}

beforeAll(async () => {
  upstream = createServer((req, res) => void echoCredentials(req, res));
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  proxy = await startProxy(
    {
      upstreams: {
        openai: { baseUrl: `${upstreamUrl}/v1`, apiKeyEnv: 'TEST_SECRETS_OPENAI_KEY' },
        anthropic: { baseUrl: upstreamUrl, apiKey: upstreamAnthropicKey },
      },
      keys: [{ id: 'client', sha256: sha256Hex(clientKey), scopes: [] }],
    },
    { env: { TEST_SECRETS_OPENAI_KEY: upstreamOpenAiKey }, log: (line) => logLines.push(line) },
  );
});

afterAll(async () => {
  await proxy.close();
  await closeServer(upstream);
});

async function callProxy(api: 'openai' | 'anthropic', content = 'hi'): Promise<Response> {
  return api === 'openai'
    ? fetch(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }),
      })
    : fetch(`${proxy.url}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': clientKey, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      });
}

function expectNoKey(text: string, key: string): void {
  for (const form of echoedForms(key)) expect(text).not.toContain(form);
}

describe('upstream 4xx answers passed on', () => {
  it.each([
    ['openai', upstreamOpenAiKey],
    ['anthropic', upstreamAnthropicKey],
  ] as const)('keep the %s error shape but redact the gateway key from body and headers', async (api, key) => {
    const response = await callProxy(api);
    const text = await response.text();
    expect(response.status).toBe(400);
    expect(Number(response.headers.get('content-length'))).toBe(Buffer.byteLength(text));
    expectNoKey(text, key);
    for (const [name, value] of response.headers) expectNoKey(`${name}: ${value}`, key);
    expect(response.headers.get('x-echo')).toBeNull();
    expect(response.headers.get('retry-after')).toBe('[redacted]');

    const body = JSON.parse(text) as { type?: string; error: { type: string; message: string } };
    expect(body.error.type).toBe('invalid_request_error');
    if (api === 'anthropic') expect(body.type).toBe('error');
    // Decoded, the JSON escapes are gone: what is left must still hold no key.
    expect(body.error.message).not.toContain(key);
    expect(body.error.message).toContain('Bad request with key [redacted]');
    expectNoKey(logLines.join('\n'), key);
  });

  it("redacts every upstream's key, not only the one the answering upstream was sent", async () => {
    const response = await callProxy('openai', 'ECHO_OTHER_UPSTREAM_KEY');
    const text = await response.text();
    expect(response.status).toBe(400);
    expectNoKey(text, upstreamAnthropicKey);
    for (const [name, value] of response.headers) expectNoKey(`${name}: ${value}`, upstreamAnthropicKey);
    expect(text).toContain('Bad request with key [redacted]');
  });

  it('drops the start of a key that an over-long error body is cut in', async () => {
    // The proxy passes the first 64 KiB of an error body: the first write ends there, in the middle of the key.
    cutAt = 64 * 1024 - 10;
    const response = await callProxy('openai');
    const text = await response.text();
    expect(response.status).toBe(400);
    expect(text.length).toBeGreaterThan(60 * 1024);
    expect(text.trimStart()).not.toContain(upstreamOpenAiKey.slice(0, upstreamOpenAiKey.length / 2));
    expect(Number(response.headers.get('content-length'))).toBe(Buffer.byteLength(text));
  });
});
