// A fresh Express app that installed the packed @tollgate/gateway mounts createGateway(config) beside its own route,
// and the official openai client gets what the proxy gives: answers with usage, bodies validated, upstream errors
// mapped to 502 with the upstream credential redacted, the app's own route left alone.
/* global fetch */
import { createServer } from 'node:http';
import { once } from 'node:events';
import express from 'express';
import OpenAI from 'openai';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGateway, validateConfig } from '@tollgate/gateway';

const upstreamKey = 'sk-packed-upstream-secret-0123456789';
const upstream = createServer((req, res) => {
  let text = '';
  req.on('data', (chunk) => (text += chunk));
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    if (text.includes('FAIL')) {
      res.statusCode = 500;
      res.end(
        JSON.stringify({ error: { message: `overloaded (${req.headers.authorization})`, type: 'server_error' } }),
      );
      return;
    }
    res.end(
      JSON.stringify({
        id: 'chatcmpl-packed',
        object: 'chat.completion',
        created: 1,
        model: 'gpt-4o-mini',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 9, completion_tokens: 1, total_tokens: 10 },
      }),
    );
  });
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');

const key = generateApiKey();
const gateway = createGateway(
  validateConfig({
    upstreams: { openai: { baseUrl: `http://127.0.0.1:${upstream.address().port}/v1`, apiKey: upstreamKey } },
    keys: [{ id: 'packed', sha256: hashApiKey(key), scopes: [] }],
    log: { level: 'silent' },
  }),
  { log: () => undefined },
);
const app = express();
app.get('/mine', (_req, res) => res.json({ mine: true }));
app.use(gateway);
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
const base = `http://127.0.0.1:${server.address().port}`;
const client = new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0 });

const chat = await client.chat.completions.create({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hi' }],
});
const invalid = await client.chat.completions
  .create({ model: 'gpt-4o-mini', messages: 'oops' })
  .catch((error) => error);
const failed = await client.chat.completions
  .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'FAIL' }] })
  .catch((error) => error);
const mine = await fetch(`${base}/mine`);
const problems = [];
if (chat.usage?.total_tokens !== 10) problems.push(`usage ${JSON.stringify(chat.usage)}`);
if (invalid.status !== 400 || invalid.code !== 'invalid_request')
  problems.push(`invalid body: ${invalid.status} ${invalid.code}`);
if (failed.status !== 502 || failed.code !== 'upstream_error')
  problems.push(`upstream failure: ${failed.status} ${failed.code}`);
if (JSON.stringify(failed.error ?? {}).includes(upstreamKey) || String(failed.message).includes(upstreamKey))
  problems.push('the upstream key reached the client');
if (mine.status !== 200) problems.push(`the app's own route: ${mine.status}`);
server.closeAllConnections();
server.close();
upstream.close();
await gateway.close();
if (problems.length > 0) throw new Error(`createGateway from the packed package: ${problems.join('; ')}`);
console.log('gateway app ok: 200 with usage, 400 invalid_request, 502 upstream_error (key redacted), own route 200');
