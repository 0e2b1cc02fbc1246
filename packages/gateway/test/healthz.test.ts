// /healthz against real upstreams: a mock provider listening on a port, and a closed port nothing listens on. An
// upstream whose active probe fails, or a model group whose every breaker opened, makes the gateway `degraded`
// (a 200: the process itself can serve); all answering, `ok`.
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import express from 'express';
import request from 'supertest';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGatewayApp, validateConfig } from '@tollgate/gateway';
import { createMockProvider } from '@tollgate/providers/mock';
import type { GatewayApp } from '../src/app.js';

const key = generateApiKey();
const adminKey = generateApiKey();
/** Far above a local answer even on a loaded machine (a CI run once saw a probe of the mock take over 2 s in band). */
const PROBE_TIMEOUT_MS = 15_000;
let reachable: Server;
let reachableUrl: string;
let closedUrl: string;
const apps: GatewayApp[] = [];

interface Health {
  status: string;
  unavailable?: { upstreams: string[]; modelGroups: string[] };
  routing?: { target: string; breaker: string; probe?: { ok: boolean } }[];
  tokenizers?: 'ready' | 'loading';
}

/** A port that was just free and is closed again: a connection to it is refused. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

function gateway(config: Record<string, unknown>): GatewayApp {
  const app = createGatewayApp(
    validateConfig({
      ...WITH_MOCK,
      keys: [{ id: 'k', sha256: hashApiKey(key) }],
      adminKeySha256: hashApiKey(adminKey),
      log: { level: 'silent' },
      ...config,
    }),
    { log: () => undefined },
  );
  apps.push(app);
  return app;
}

/** /healthz as the admin sees it. */
const details = (app: GatewayApp) => request(app).get('/healthz').set('authorization', `Bearer ${adminKey}`);

/** /healthz once `ready` holds of it (the first probes run as the gateway starts; their end is not an event). */
async function healthOnce(app: GatewayApp, ready: (health: Health) => boolean): Promise<request.Response> {
  const deadline = Date.now() + 25_000;
  while (Date.now() < deadline) {
    const response = await details(app);
    if (ready(response.body as Health)) return response;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('/healthz never got there');
}

/** A group on the mock, and one on the closed port. */
const twoGroups = () => ({
  upstreams: { openai: { baseUrl: reachableUrl }, spare: { baseUrl: closedUrl } },
  modelGroups: {
    steady: { targets: [{ upstream: 'openai', model: 'gpt-4o-mini' }] },
    fragile: { targets: [{ upstream: 'spare', model: 'gpt-4o-mini' }] },
  },
});

/** Every target probed, and the encoding loaded (until then /healthz is 503 whatever the upstreams say). */
const probed = (health: Health) =>
  health.tokenizers === 'ready' && (health.routing ?? []).every((target) => target.probe !== undefined);

beforeAll(async () => {
  const mock = createMockProvider();
  const upstream = express();
  // The probe lists the upstream's models (a token-free GET), as OpenAI serves them.
  upstream.get('/v1/models', (_req, res) => void res.json({ object: 'list', data: [] }));
  upstream.use(mock.app);
  reachable = upstream.listen(0, '127.0.0.1');
  await once(reachable, 'listening');
  reachableUrl = `http://127.0.0.1:${(reachable.address() as AddressInfo).port}/v1`;
  closedUrl = `http://127.0.0.1:${await closedPort()}/v1`;
});

afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});

afterAll(async () => {
  reachable.closeAllConnections();
  await new Promise<void>((resolve) => reachable.close(() => resolve()));
});

describe('/healthz with active probes', () => {
  it('is ok once every upstream answered its probe', async () => {
    const app = gateway({
      upstreams: { openai: { baseUrl: reachableUrl } },
      modelGroups: { steady: { targets: [{ upstream: 'openai', model: 'gpt-4o-mini' }] } },
      healthProbe: { intervalMs: 60_000, timeoutMs: PROBE_TIMEOUT_MS },
    });
    const response = await healthOnce(app, probed);
    expect(response.status).toBe(200);
    expect((response.body as Health).status).toBe('ok');
    expect(response.body).not.toHaveProperty('unavailable');
    expect((response.body as Health).routing![0]!.probe!.ok).toBe(true);
  });

  it('probes upstreams outside any model group too', async () => {
    const app = gateway({
      upstreams: { openai: { baseUrl: reachableUrl }, spare: { baseUrl: closedUrl } },
      healthProbe: { intervalMs: 60_000, timeoutMs: PROBE_TIMEOUT_MS },
    });
    const response = await healthOnce(app, (health) => health.status === 'degraded');
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ unavailable: { upstreams: ['spare'], modelGroups: [] } });
  });

  it('is degraded (200) when an upstream on a closed port fails its probe, naming it', async () => {
    const app = gateway({
      ...twoGroups(),
      healthProbe: { intervalMs: 60_000, timeoutMs: PROBE_TIMEOUT_MS },
    });
    const response = await healthOnce(app, probed);
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      status: 'degraded',
      unavailable: { upstreams: ['spare'], modelGroups: ['fragile'] },
      storeOk: true,
    });
    const report = (response.body as Health).routing!;
    expect(report.find((target) => target.target === 'openai/gpt-4o-mini')?.probe?.ok).toBe(true);
    expect(report.find((target) => target.target === 'spare/gpt-4o-mini')?.probe?.ok).toBe(false);
  });
});

describe('/healthz to the public', () => {
  it('answers the status only; the details need the admin key, and another key is refused', async () => {
    const app = gateway({ ...twoGroups(), healthProbe: { intervalMs: 60_000, timeoutMs: PROBE_TIMEOUT_MS } });
    await healthOnce(app, (health) => health.status === 'degraded');
    const open = await request(app).get('/healthz').expect(200);
    expect(open.body).toEqual({ status: 'degraded' });
    const refused = await request(app).get('/healthz').set('authorization', 'Bearer not-the-admin-key').expect(401);
    expect(refused.body).toMatchObject({ error: { code: 'invalid_api_key' } });
    expect((await details(app).expect(200)).body).toMatchObject({ unavailable: { upstreams: ['spare'] } });
  });
});

describe('/healthz from the breakers', () => {
  it('is degraded once every target of a group has its breaker open, and names only that group', async () => {
    const app = gateway({
      ...twoGroups(),
      retry: { attempts: 0 },
      circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 },
    });
    const before = await details(app).expect(200);
    expect((before.body as Health).status).toBe('ok');

    const chat = (model: string) =>
      request(app)
        .post('/v1/chat/completions')
        .set('authorization', `Bearer ${key}`)
        .send({ model, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
    expect((await chat('steady')).status).toBe(200);
    const failed = await chat('fragile');
    expect(failed.status).toBe(502);
    // The wait for the upstream that refused the connection is the upstream's share of the answer's time.
    expect(failed.headers['server-timing']).toMatch(/^tollgate;dur=[\d.]+, upstream;dur=[\d.]+$/);

    const after = await details(app).expect(200);
    expect(after.body).toMatchObject({
      status: 'degraded',
      unavailable: { upstreams: [], modelGroups: ['fragile'] },
    });
    expect((after.body as Health).routing!.find((target) => target.target === 'spare/gpt-4o-mini')?.breaker).toBe(
      'open',
    );
  });
});
