// packages/guard/examples/guarded-app.ts: the guard on Redis in front of a provider: suspensions, repeated requests, blocked addresses, and alerts to a webhook.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { createClient } from 'redis';
import { apiErrorHandler, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { meter } from '@tollgate/metering';
import { combineLimits, tieredRateLimit, tokenRateLimit } from '@tollgate/ratelimit';
import { createRedisStores } from '@tollgate/redis';
import { bodyAfterAuth, budgetAlerts, createGuard, guardAdminRouter, storeDownAlerts } from '@tollgate/guard';

// A fake OpenAI and a webhook receiver on ephemeral ports.
async function serve(handler: http.RequestListener): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
const openai = await serve((req, res) => {
  req.resume();
  req.on('end', () =>
    res.setHeader('content-type', 'application/json').end(
      JSON.stringify({
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1_700_000_000,
        model: 'gpt-4o-mini',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
      }),
    ),
  );
});
const alertsSeen: string[] = [];
const hooks = await serve((req, res) => {
  req.resume();
  req.on('end', () => void alertsSeen.push(String(req.headers['x-tollgate-event'])));
  res.writeHead(204).end();
});

process.env.HOOK_SECRET ??= randomUUID(); // signs every webhook body (see webhook-receiver.ts)
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const stores = createRedisStores({ url, prefix: `${process.env.REDIS_PREFIX ?? 'guard-example:'}${randomUUID()}:` }); // a fresh prefix: this run's keys only
const guard = createGuard({
  stores,
  subscriber: createClient({ url }), // suspensions reach every process at once
  spendAnomaly: { bucketSeconds: 60, zScore: 4, minBuckets: 10, minSpendUsd: 0.05, action: 'suspend', cooldown: '15m' },
  repeatedRequests: { max: 2, windowSeconds: 60 },
  authFailures: { max: 3, windowSeconds: 60, block: '5m' },
  alerts: { webhooks: [{ url: `${hooks.url}/hooks/tollgate`, secretEnv: 'HOOK_SECRET', format: 'json' }] }, // or format: 'slack'
});
const tiers = { free: 60 };
const tenants = { acme: { usd: 5, period: 'day' as const } };
const budgets = budgetGuard({
  ledger: stores.ledger,
  tenants,
  onEvent: budgetAlerts(guard.alerts),
});

async function callProvider(req: Request, res: Response, next: NextFunction) {
  try {
    const call = req.tollgate.call!;
    req.tollgate.markSending();
    const answer = await fetch(`${openai.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-test', 'content-type': 'application/json' },
      body: JSON.stringify(call.body),
      signal: call.signal,
    });
    res
      .status(answer.status)
      .type('application/json')
      .send(await answer.text());
  } catch (error) {
    next(error);
  }
}

const key = generateApiKey();
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'free',
  scopes: [],
  createdAt: new Date().toISOString(),
});
const adminKey = generateApiKey();
function adminAuth(req: Request, res: Response, next: NextFunction) {
  if (req.headers.authorization === `Bearer ${adminKey}`) return next();
  res.status(401).json({
    error: { message: 'admin key required', type: 'invalid_request_error', code: 'invalid_api_key', param: null },
  });
}

const app = express();
app.set('trust proxy', 'loopback'); // req.ip is the real client behind your proxy
app.use(requestContext());
app.post(
  '/v1/chat/completions',
  guard.authFailures, // before auth: blocked addresses, 401s counted
  apiKeyAuth({ keys: stores.keys, onStoreError: storeDownAlerts(guard.alerts, 'auth') }),
  guard.suspensions, // right after auth: 403 key_suspended
  bodyAfterAuth(express.json({ limit: '1mb' }), { timeout: '10s' }), // no body read without credentials
  meter({ api: 'openai.chat', onUsage: guard.onUsage }), // the usage feed, after each answer
  combineLimits(
    guard.repeatedRequests,
    tieredRateLimit({ stores, tiers }),
    tokenRateLimit({ stores, tiers: { free: 100_000 } }),
    budgets,
  ),
  callProvider,
);
app.use('/admin/guard', adminAuth, guardAdminRouter(guard));
app.use(apiErrorHandler());
await guard.ready;
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

async function chat(credential: string, content = 'hello'): Promise<string> {
  const answer = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content }] }),
  });
  const body = (await answer.json()) as { error?: { code: string } };
  return body.error ? `${answer.status} ${body.error.code}` : String(answer.status);
}

// An agent stuck in a loop: the third identical request in a minute is refused.
console.log(`same request three times: ${[await chat(key), await chat(key), await chat(key)].join(', ')}`);
// An operator suspends the key, in every process.
await fetch(`${base}/admin/guard/keys/try-me/suspend`, {
  method: 'POST',
  headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
  body: JSON.stringify({ reason: 'leaked' }),
});
console.log(`suspended key: ${await chat(key, 'something new')}`);
// Someone guessing keys: past three failures the address is blocked, whatever it sends next.
console.log(`a guessed key: ${await chat('tgk_guess0')}`);
for (let i = 1; i < 4; i++) await chat(`tgk_guess${i}`);
await new Promise((resolve) => setTimeout(resolve, 100)); // a 401 is counted once its answer went out
console.log(`then the right key from that address: ${await chat(key, 'anything')}`);

server.close();
await guard.close(); // delivers the alerts still queued
console.log(`alerts delivered: ${[...new Set(alertsSeen)].sort().join(', ')}`);
// An example leaves nothing behind in your Redis: the keys under its own fresh prefix go with it.
for (let cursor = '0'; ;) {
  const [next, keys] = (await stores.sendCommand(['SCAN', cursor, 'MATCH', `${stores.prefix}*`, 'COUNT', '1000'])) as [
    string,
    string[],
  ];
  if (keys.length > 0) await stores.sendCommand(['DEL', ...keys]);
  if ((cursor = next) === '0') break;
}
await stores.close();
openai.server.close();
hooks.server.close();
