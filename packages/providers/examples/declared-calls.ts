// packages/providers/examples/declared-calls.ts: a proxied route and a route that calls the SDK itself, each declaring its provider API.
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import OpenAI from 'openai';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { jsonlSink, meter } from '@tollgate/metering';
import { providerCall } from '@tollgate/providers';
import { combineLimits, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';

const stores = createMemoryStores();
const auth = apiKeyAuth({ keys: stores.keys });
const tiers = { free: { models: ['gpt-4o-mini'], maxOutputTokens: 512 }, pro: { models: ['*'] } };
const tokenTiers = { free: 20_000, pro: 2_000_000 };
const tenants = { acme: { usd: 5, period: 'day' as const } };
const sinks = [jsonlSink({ path: process.env.USAGE_LOG ?? 'usage.jsonl' })]; // one JSON line per call
const upstream = process.env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1';
const openai = new OpenAI({ baseURL: upstream }); // reads OPENAI_API_KEY

// A key to try it with (keys are managed with @tollgate/auth: see its README).
const key = generateApiKey();
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  tier: 'free',
  scopes: [],
  createdAt: new Date().toISOString(),
});

async function forwardToOpenAI(req: Request, res: Response, next: NextFunction) {
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
      .send(await answer.text()); // the meter reads the usage on the way
  } catch (error) {
    next(error);
  }
}

const app = express();
app.use(requestContext());
app.use(express.json()); // the adapters read the parsed body
const limits = combineLimits(
  tokenRateLimit({ stores, by: 'tenant', tiers: tokenTiers }),
  budgetGuard({ ledger: stores.ledger, tenants }),
);

// A proxied route: the client's body is the provider request.
app.post(
  '/v1/chat/completions',
  auth,
  providerCall('openai.chat'),
  tierPolicy({ tiers }),
  meter({ sinks }),
  limits,
  forwardToOpenAI,
);

// A route that calls an SDK itself: it builds the provider request, then sends what the chain made of it.
app.post(
  '/summarize',
  auth,
  meter({
    api: 'openai.chat',
    sinks,
    request: (req) => ({
      model: 'gpt-4o-mini',
      max_tokens: 300,
      messages: [{ role: 'user', content: `Summarize: ${req.body.text}` }],
    }),
  }),
  limits,
  async (req: Request, res: Response, next: NextFunction) => {
    try {
      const call = req.tollgate.call!; // budgets may have clamped its cap or downgraded its model
      req.tollgate.markSending();
      const completion = await openai.chat.completions.create(
        call.body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
        { signal: call.signal },
      );
      req.tollgate.recordResponse(completion); // usage and model, read by the adapter
      res.json({ summary: completion.choices[0]?.message.content });
    } catch (error) {
      next(error);
    }
  },
);
app.use(apiErrorHandler({ otherErrors: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 3000));
server.once('listening', () => {
  const address = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}; try the key ${key}`,
  );
});
process.on('SIGTERM', () =>
  server.close(() => void Promise.all(sinks.map((sink) => sink.close?.())).then(() => stores.close())),
);
