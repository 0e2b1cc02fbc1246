// packages/metering/examples/pglite-ledger.ts: a real usage ledger with no database server: PGlite in the process, written by the meter, read back by aggregateUsage.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { PGlite } from '@electric-sql/pglite';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { aggregateUsage, meter } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';

// A fake OpenAI on an ephemeral port.
const openai = http.createServer((req, res) => {
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
openai.listen(0, '127.0.0.1');
await once(openai, 'listening');
const upstream = `http://127.0.0.1:${(openai.address() as AddressInfo).port}/v1`;

const ledger = new PGlite(process.env.LEDGER_DIR); // a data directory ('.tollgate/ledger'); none keeps it in memory
const usage = postgresSink({ db: ledger }); // migrates on first use; never closes the db
// the same instance for every reader: dashboard({ ledger }), aggregateUsage(ledger, ...), postgresSpendSource(ledger)

const stores = createMemoryStores();
const key = generateApiKey();
await stores.keys.put({
  id: 'try-me',
  sha256: hashApiKey(key),
  tenantId: 'acme',
  scopes: [],
  createdAt: new Date().toISOString(),
});
const auth = apiKeyAuth({ keys: stores.keys });
const budget = budgetGuard({ ledger: stores.ledger, tenants: { acme: { usd: 5, period: 'day' } } });

async function handler(req: Request, res: Response, next: NextFunction) {
  try {
    const call = req.tollgate.call!;
    req.tollgate.markSending();
    const answer = await fetch(`${upstream}/chat/completions`, {
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

const app = express();
app.use(requestContext());
app.use(express.json());
app.post('/v1/chat/completions', auth, meter({ api: 'openai.chat', sinks: [usage] }), budget, handler);
app.use(apiErrorHandler());
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');

for (let i = 0; i < 2; i++) {
  const answer = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
  });
  await answer.arrayBuffer();
}
server.close();
await new Promise((resolve) => setTimeout(resolve, 50)); // the meter hands a record to its sinks once the answer ended
await usage.flush();

for (const row of await aggregateUsage(ledger, { by: 'tenant', since: new Date(Date.now() - 3_600_000) })) {
  console.log(`${row.group}: ${row.requests} requests, ${row.inputTokens} input and ${row.outputTokens} output tokens`);
}
await usage.close();
await ledger.close();
openai.close();
await stores.close();
