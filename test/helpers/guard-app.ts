// One process of the guard's multi-process tests: auth, meter and the guard on Redis, in the order the guard's README gives.
import express from 'express';
import type { Request, Response } from 'express';
import { createClient } from 'redis';
import { apiErrorHandler, requestContext } from '@tollgate/core';
import { apiKeyAuth } from '@tollgate/auth';
import { meter } from '@tollgate/metering';
import { combineLimits, tieredRateLimit } from '@tollgate/ratelimit';
import { createRedisStores } from '@tollgate/redis';
import { bodyAfterAuth, createGuard, guardAdminRouter, type GuardOptions } from '@tollgate/guard';

interface GuardAppConfig {
  prefix: string;
  guard: Omit<GuardOptions, 'stores' | 'subscriber'>;
}

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const config = JSON.parse(process.env.GUARD_APP_CONFIG ?? '{}') as GuardAppConfig;
const stores = createRedisStores({ url, prefix: config.prefix });
const guard = createGuard({ ...config.guard, stores, subscriber: createClient({ url }) });

const app = express();
app.set('trust proxy', 'loopback');
app.use(requestContext());
const auth = apiKeyAuth({ keys: stores.keys });
app.post(
  '/v1/chat/completions',
  guard.authFailures,
  auth,
  guard.suspensions,
  bodyAfterAuth(express.json(), { timeout: '5s' }),
  meter({ api: 'openai.chat', onUsage: guard.onUsage }),
  // The repeat count travels in the same Redis call as the request limit.
  combineLimits(guard.repeatedRequests, tieredRateLimit({ stores, limit: 1_000_000, window: '1m' })),
  function answer(req: Request, res: Response) {
    const body = req.body as { model: string; max_tokens?: number };
    res.json({
      id: 'chatcmpl-guard-test',
      object: 'chat.completion',
      created: 1_700_000_000,
      model: body.model,
      choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
      usage: {
        prompt_tokens: 20,
        completion_tokens: body.max_tokens ?? 10,
        total_tokens: 20 + (body.max_tokens ?? 10),
      },
    });
  },
);
app.get(
  '/limit-scale',
  guard.authFailures,
  auth,
  (req, res) => void res.json({ scale: guard.limitScale(req.tollgate.identity) }),
);
app.post('/control/flush', async (_req, res) => {
  await guard.flush();
  res.json({ flushed: true });
});
app.use('/admin/guard', guardAdminRouter(guard));
app.use(apiErrorHandler());

const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(`guard app listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`);
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void guard
    .close()
    .then(() => stores.close())
    .finally(() => process.exit(0));
});
