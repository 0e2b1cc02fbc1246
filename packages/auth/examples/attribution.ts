// packages/auth/examples/attribution.ts: one key, many end users: who each request is for, from the key, a header or the body.
import express from 'express';
import type { Request, Response } from 'express';
import { apiErrorHandler, requestContext } from '@tollgate/core';
import { apiKeyAuth, attribution, generateApiKey, hashApiKey } from '@tollgate/auth';
import { providerCall } from '@tollgate/providers';

const appKey = generateApiKey(); // an app's key: it names its end users request by request
const aliceKey = generateApiKey(); // one person's key: she is its user, whatever a request says
const createdAt = new Date().toISOString();
const keys = [
  { id: 'app', sha256: hashApiKey(appKey), tenantId: 'acme', scopes: [], createdAt },
  { id: 'alice-key', sha256: hashApiKey(aliceKey), tenantId: 'acme', userId: 'alice', scopes: [], createdAt },
];

const app = express();
app.use(requestContext());
app.use(express.json());
app.post(
  '/v1/chat/completions',
  apiKeyAuth({ keys }),
  providerCall('openai.chat'), // the call declared first: the body's `user` is read through its adapter
  attribution({ require: ['user'] }), // x-tollgate-user, else the body's user; none: 400 attribution_required
  // Who the call is for, as limits, budgets and the usage record see it.
  (req: Request, res: Response) => {
    const { keyId, userId, feature, tags } = req.tollgate.identity!;
    res.json({ keyId, userId, feature, tags });
  },
);
app.use(apiErrorHandler({ otherErrors: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 3000));
server.once('listening', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : '';
  console.log(`listening on http://127.0.0.1:${port}; the app's key ${appKey}; alice's key ${aliceKey}`);
});
process.on('SIGTERM', () => server.close());
