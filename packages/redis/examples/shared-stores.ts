// packages/redis/examples/shared-stores.ts: one set of Redis stores handed to every piece, on one server or a Redis Cluster.
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { apiErrorHandler, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { meter } from '@tollgate/metering';
import { tieredRateLimit } from '@tollgate/ratelimit';
import { createRedisStores } from '@tollgate/redis';

const prefix = process.env.REDIS_PREFIX ?? 'myapp:'; // every key lives under it: deployments can share a server
const stores = process.env.REDIS_CLUSTER_URLS
  ? // On a Redis Cluster: the URLs of some of its nodes (or `client: createCluster(...)`).
    createRedisStores({ cluster: process.env.REDIS_CLUSTER_URLS.split(','), prefix })
  : createRedisStores({ url: process.env.REDIS_URL, prefix });

const upstream = process.env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1';

async function callProvider(req: Request, res: Response, next: NextFunction) {
  try {
    const call = req.tollgate.call!;
    req.tollgate.markSending();
    const answer = await fetch(`${upstream}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${process.env.OPENAI_API_KEY}`, 'content-type': 'application/json' },
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

// A key to try it with (keys are managed with @tollgate/auth: see its README).
const key = generateApiKey();
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  scopes: [],
  createdAt: new Date().toISOString(),
});

const app = express();
app.use(requestContext());
app.use(express.json());
// Hand `stores` to the middleware; rate-limit-redis gets the same connection through stores.sendCommand.
app.post(
  '/v1/chat/completions',
  apiKeyAuth({ keys: stores.keys }),
  tieredRateLimit({ stores, limit: 60 }),
  meter({ api: 'openai.chat' }),
  budgetGuard({ ledger: stores.ledger, tenants: { '*': { usd: 10, period: 'day' } } }),
  callProvider,
);
app.get('/healthz', async (_req, res) => void res.json({ redis: await stores.ping() }));
app.use(apiErrorHandler({ otherErrors: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 3000));
server.once('listening', () => {
  const address = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}; try the key ${key}`,
  );
});
process.on('SIGTERM', () => server.close(() => void stores.close()));
