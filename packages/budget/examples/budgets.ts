// packages/budget/examples/budgets.ts: budgets per tenant, key, feature, user and overall, with soft limits, a downgrade and the operator routes.
import { timingSafeEqual } from 'node:crypto';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { apiErrorHandler, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetAdminRouter, budgetGuard } from '@tollgate/budget';
import { meter } from '@tollgate/metering';
import { createRedisStores } from '@tollgate/redis';

const stores = createRedisStores({ url: process.env.REDIS_URL, prefix: process.env.REDIS_PREFIX ?? 'tollgate:' });
const upstream = process.env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1';
const budgets = budgetGuard({
  ledger: stores.ledger,
  tenants: { acme: { usd: 100, period: 'month', softLimit: 0.8, downgrade: { 'gpt-4o': 'gpt-4o-mini' } } },
  keys: { 'acme-support': { usd: 5, period: 'day' } },
  features: { '*': { usd: 20, period: 'rolling', window: '24h', buckets: 24 } },
  global: { usd: 1000, period: 'day' },
  budgets: (identity) =>
    identity.tier === 'free' ? [{ scope: 'user', id: identity.userId ?? identity.keyId, usd: 0.5, period: 'day' }] : [],
  // Soft limits and exhausted budgets are posted here when set (otherwise they are logged).
  ...(process.env.BUDGET_WEBHOOK_URL ? { webhook: { url: process.env.BUDGET_WEBHOOK_URL } } : {}),
});

// A key to try it with (keys are managed with @tollgate/auth: see its README).
const key = generateApiKey();
await stores.keys.put({
  id: 'acme-support',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'pro',
  scopes: [],
  createdAt: new Date().toISOString(),
});
const auth = apiKeyAuth({ keys: stores.keys });

/** The operator routes have no auth of their own: this one compares ADMIN_KEY in constant time. */
function adminAuth(req: Request, res: Response, next: NextFunction) {
  const given = Buffer.from(req.get('authorization')?.replace(/^Bearer /, '') ?? '');
  const expected = Buffer.from(process.env.ADMIN_KEY ?? '');
  if (expected.length > 0 && given.length === expected.length && timingSafeEqual(given, expected)) next();
  else
    res.status(401).json({
      error: { message: 'Admin key required.', type: 'invalid_request_error', code: 'invalid_api_key', param: null },
    });
}

async function callProvider(req: Request, res: Response, next: NextFunction) {
  try {
    const call = req.tollgate.call!;
    req.tollgate.markSending();
    const answer = await fetch(`${upstream}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${process.env.OPENAI_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(call.body), // the model may have been downgraded, the output cap clamped
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

const app = express();
app.use(requestContext());
app.use(express.json());
app.post('/v1/chat/completions', auth, meter({ api: 'openai.chat' }), budgets, callProvider); // the meter sets req.tollgate.estimate
app.use('/admin/budgets', adminAuth, budgetAdminRouter(budgets)); // no auth of its own
app.use(apiErrorHandler({ otherErrors: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 3000));
server.once('listening', () => {
  const address = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}; try the key ${key}`,
  );
});
process.on('SIGTERM', () => server.close(() => void budgets.close().then(() => stores.close())));
