// packages/metering/examples/usage-sinks.ts: the meter on a proxied route and an SDK route, usage to Prometheus, a JSONL file and PostgreSQL through the spool.
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import OpenAI from 'openai';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { jsonlSink, meter, openUsageSpool } from '@tollgate/metering';
import type { UsageSink } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres'; // needs pg
import { prometheusSink } from '@tollgate/metering/prometheus'; // needs prom-client
import { tokenRateLimit } from '@tollgate/ratelimit';

const dataDir = process.env.DATA_DIR ?? '.';
const prometheus = prometheusSink();
const sinks: UsageSink[] = [prometheus, jsonlSink({ path: `${dataDir}/usage.jsonl` })];
if (process.env.POSTGRES_URL)
  sinks.push(
    postgresSink({ connectionString: process.env.POSTGRES_URL, table: process.env.USAGE_TABLE ?? 'tollgate_usage' }),
  );
// Records reach the sinks through the spool: what a crash would lose is on disk, written at the next start.
const spool = openUsageSpool({ directory: `${dataDir}/usage.spool`, sinks });
await spool.replay();

const stores = createMemoryStores();
const key = generateApiKey(); // a key to try it with (see @tollgate/auth)
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  scopes: [],
  createdAt: new Date().toISOString(),
});
const auth = apiKeyAuth({ keys: stores.keys });
const tokenLimit = tokenRateLimit({ stores, by: 'tenant', limit: 100_000 });
const budget = budgetGuard({ ledger: stores.ledger, tenants: { acme: { usd: 5, period: 'day' } } });
const upstream = process.env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1';
const openai = new OpenAI({ baseURL: upstream }); // reads OPENAI_API_KEY

async function proxyToOpenAI(req: Request, res: Response, next: NextFunction) {
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
      .send(await answer.text()); // usage is read on its way out
  } catch (error) {
    next(error);
  }
}

const app = express();
app.use(requestContext());
app.use(express.json());
app.get('/metrics', prometheus.handler); // put it behind your admin auth in production
// auth -> tieredRateLimit -> meter -> tokenRateLimit -> budgetGuard -> handler; the route declares its API
app.post('/v1/chat/completions', auth, meter({ api: 'openai.chat', spool }), tokenLimit, budget, proxyToOpenAI);

// A route that calls an SDK declares the provider request it builds, sends what the chain made of it
// (budgets may clamp its cap or downgrade its model), says when it sends it, and reports the SDK's answer:
app.post(
  '/summarize',
  auth,
  meter({
    api: 'openai.chat',
    spool,
    request: (req) => ({ model: 'gpt-4o-mini', max_tokens: 300, messages: [{ role: 'user', content: req.body.text }] }),
  }),
  tokenLimit,
  budget,
  async (req: Request, res: Response, next: NextFunction) => {
    try {
      const call = req.tollgate.call!;
      req.tollgate.markSending(); // from here the provider may bill it: the spool notes the call
      const completion = await openai.chat.completions.create(
        call.body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
        { signal: call.signal },
      );
      req.tollgate.recordResponse(completion);
      res.json({ summary: completion.choices[0]?.message.content });
    } catch (error) {
      next(error);
    }
  },
);
app.use(apiErrorHandler({ otherErrors: (error) => console.error(error) }));

const server = app.listen(Number(process.env.PORT ?? 8787));
server.once('listening', () => {
  const address = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}; try the key ${key}`,
  );
});
process.on('SIGTERM', () => {
  // Stop taking requests, let those in flight end, then: the sinks are flushed and closed, the spool checkpointed.
  server.close(async () => {
    await spool.close();
    process.exit(0);
  });
});
