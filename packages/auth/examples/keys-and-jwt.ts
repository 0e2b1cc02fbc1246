// packages/auth/examples/keys-and-jwt.ts: API keys and your IdP's JWTs on one door, then a scope and the tier's models.
import express from 'express';
import type { Request, Response } from 'express';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey, modelAllowlist, requireScope } from '@tollgate/auth';
import { createRedisStores } from '@tollgate/redis';

// On Redis every process sees the same keys (revocations arrive by pub/sub); without REDIS_URL, memory.
const stores = process.env.REDIS_URL
  ? createRedisStores({ url: process.env.REDIS_URL, prefix: process.env.REDIS_PREFIX ?? 'tollgate:' })
  : createMemoryStores();

// A key to try it with; `tollgate keys create` manages them for real (see below).
const key = generateApiKey();
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'free',
  scopes: ['chat'],
  createdAt: new Date().toISOString(),
});

const app = express();
app.use(requestContext());
app.use(express.json());
app.use(
  '/v1',
  apiKeyAuth({
    keys: stores.keys, // API keys, whatever their text, from either header
    jwt: {
      // and JWTs from your IdP in Authorization: Bearer
      jwksUrl: process.env.JWKS_URL ?? 'https://idp.example/.well-known/jwks.json',
      issuer: process.env.JWT_ISSUER ?? 'https://idp.example',
      audience: 'tollgate',
      tenantClaim: 'org_id',
    },
  }),
  requireScope('chat'),
  modelAllowlist({ tiers: { free: ['gpt-4o-mini'], pro: ['*'] } }),
);
// Who is calling, as every later piece sees it.
app.post('/v1/chat/completions', (req: Request, res: Response) => {
  const { keyId, tenantId, tier, authMethod } = req.tollgate.identity!;
  res.json({ keyId, tenantId, tier, authMethod });
});
app.use(apiErrorHandler({ otherErrors: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 3000));
server.once('listening', () => {
  const address = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}; try the key ${key}`,
  );
});
process.on('SIGTERM', () => server.close(() => void stores.close()));
