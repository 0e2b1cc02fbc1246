// packages/gateway/examples/cost.ts: what each call cost, on its answer: two headers, and cost_usd in the usage.
import type { AddressInfo } from 'node:net';
import express from 'express';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGateway, validateConfig } from '@tollgate/gateway';

const key = generateApiKey();
// The built-in mock provider answers, the same way every time (named on purpose: a config must name its upstreams).
const config = validateConfig({
  upstreams: { mock: { kind: 'mock' } },
  tenants: { acme: { budget: { usd: 1, period: 'day' } } },
  keys: [{ id: 'try-me', sha256: hashApiKey(key), tenant: 'acme' }],
  log: { level: 'silent' },
});
const gateway = createGateway(config, { log: () => undefined });
await gateway.spendReady();
const server = express().use(gateway).listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`;
const ask = (body: object) =>
  fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], ...body }),
  });

const answer = await ask({});
const chat = (await answer.json()) as { usage: { cost_usd: number } };
console.log(`cost: ${answer.headers.get('x-tollgate-cost-usd')} USD, usage.cost_usd: ${chat.usage.cost_usd}`);
console.log(`budget left: ${answer.headers.get('x-tollgate-budget-remaining-usd')} USD`);

// A stream tells it in its usage chunk (its headers left before the answer was known).
const stream = await (await ask({ stream: true, stream_options: { include_usage: true } })).text();
const usageChunk = stream.split('\n').find((line) => line.includes('"usage":{'))!;
console.log(`stream usage.cost_usd: ${(JSON.parse(usageChunk.slice(6)) as typeof chat).usage.cost_usd}`);

server.closeAllConnections();
server.close();
await gateway.close();
