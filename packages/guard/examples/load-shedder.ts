// packages/guard/examples/load-shedder.ts: a saturated process refuses its lower tiers first (503), so that the paid tier keeps its service.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { apiErrorHandler, createMemoryStores, requestContext } from '@tollgate/core';
import { apiKeyAuth, generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGuard, loadShedder } from '@tollgate/guard';

// A slow fake upstream: it holds every answer until told to let them go.
let release!: () => void;
const held = new Promise<void>((resolve) => (release = resolve));
let arrived = 0;
let bothArrived!: () => void;
const saturated = new Promise<void>((resolve) => (bothArrived = resolve));
const openai = http.createServer((req, res) => {
  req.resume();
  if (++arrived === 2) bothArrived();
  void held.then(() =>
    res.setHeader('content-type', 'application/json').end(JSON.stringify({ id: 'chatcmpl-1', choices: [] })),
  );
});
openai.listen(0, '127.0.0.1');
await once(openai, 'listening');
const upstream = `http://127.0.0.1:${(openai.address() as AddressInfo).port}/v1`;

const stores = createMemoryStores();
const guard = createGuard({ stores, alerts: { log: false } });
const keys: Record<string, string> = {};
for (const tier of ['free', 'pro']) {
  keys[tier] = generateApiKey();
  await stores.keys.put({
    id: `${tier}-key`,
    sha256: hashApiKey(keys[tier]!),
    tenantId: 'acme',
    tier,
    scopes: [],
    createdAt: new Date().toISOString(),
  });
}

async function callProvider(_req: Request, res: Response, next: NextFunction) {
  try {
    const answer = await fetch(`${upstream}/chat/completions`, { method: 'POST' });
    res
      .status(answer.status)
      .type('application/json')
      .send(await answer.text());
  } catch (error) {
    next(error);
  }
}

const auth = apiKeyAuth({ keys: stores.keys });
const shedder = loadShedder({
  priorities: { free: 0, team: 5, pro: 10 },
  maxConcurrency: 2,
  maxEventLoopDelay: '100ms',
  maxUpstreamErrorRate: 0.5,
});
const app = express();
app.use(requestContext());
app.post('/v1/chat/completions', guard.authFailures, auth, guard.suspensions, shedder, callProvider);
app.use(apiErrorHandler());
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');

const chat = (tier: string) =>
  fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keys[tier]}` },
  });
const inFlight = [chat('pro'), chat('free')]; // two requests held by the upstream: the process is at its limit
await saturated;
const free = await chat('free'); // past maxConcurrency, every tier but the highest is shed at once
console.log(`free while saturated: ${free.status} ${((await free.json()) as { error: { code: string } }).error.code}`);
const pro = chat('pro'); // the highest tier is never shed
release();
console.log(`pro while saturated: ${(await pro).status}`);
console.log(`held requests: ${(await Promise.all(inFlight)).map((answer) => answer.status).join(' ')}`);

server.close();
openai.close();
shedder.close();
await guard.close();
await stores.close();
