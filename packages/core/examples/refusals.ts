// packages/core/examples/refusals.ts: which piece refused a request, read once the response closes (for logs and metrics).
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { apiErrorHandler, createMemoryStores, refusalRenderer, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { concurrencyLimit } from '@tollgate/ratelimit';

const stores = createMemoryStores();
const upstream = process.env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1';

// A key to try it with (keys are managed with @tollgate/auth: see its README).
const key = generateApiKey();
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  scopes: [],
  createdAt: new Date().toISOString(),
});

async function callProvider(req: Request, res: Response, next: NextFunction) {
  try {
    const answer = await fetch(`${upstream}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${process.env.OPENAI_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(req.body),
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
app.use((req, res, next) => {
  // Later, when the response closes: who refused it, if anyone.
  res.on('close', () => {
    const { layer, code } = req.tollgate.refusal ?? {}; // 'concurrency', 'rate_limit_exceeded'
    if (layer) console.log(`refused by ${layer} (${code}): ${req.method} ${req.path}`);
  });
  next();
});
app.post(
  '/v1/chat/completions',
  apiKeyAuth({ keys: stores.keys }),
  concurrencyLimit({ stores, limit: 1, renderError: refusalRenderer('concurrency') }),
  callProvider,
);
app.use(apiErrorHandler({ otherErrors: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 3000));
server.once('listening', () => {
  const address = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}; try the key ${key}`,
  );
});
process.on('SIGTERM', () => server.close(() => void stores.close()));
