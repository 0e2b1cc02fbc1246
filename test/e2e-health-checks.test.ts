// Active health checks end to end: real HTTP upstreams whose probes fail and then pass, and a status page reporting an
// outage, take a target out of routing before any user request reaches it and put it back; on memory stores (one
// process) and on Redis (two processes, each probing: both skip the target).
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import type { GatewayConfig } from '../packages/gateway/src/config/index.js';
import {
  healthDetails,
  memoryAndRedisStores,
  newApiKey,
  sha256Hex,
  startFakeUpstream,
  startSharingGateways,
  waitFor,
} from './helpers/proxy.js';
import type { FakeUpstream, FakeUpstreamRequest, OwnedStores, RunningProxy } from './helpers/proxy.js';
import { openAiAnswer } from './helpers/routing-upstreams.js';

const clientKey = newApiKey();
const adminKey = newApiKey();
const open: { close(): Promise<void> }[] = [];

afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

/** A provider whose model list (the free probe) answers `listing.status`, and whose calls all answer. */
async function provider(): Promise<FakeUpstream & { listing: { status: number } }> {
  const listing = { status: 200 };
  const server = await startFakeUpstream((request: FakeUpstreamRequest, res: ServerResponse) => {
    if (request.method === 'GET') {
      res.writeHead(listing.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [] }));
      return;
    }
    openAiAnswer('gpt-4o-mini', { input: 5, output: 2 })(request, res);
  });
  open.push(server);
  return Object.assign(server, { listing });
}

/** A Statuspage status page whose indicator a test sets. */
async function statusPage(): Promise<FakeUpstream & { page: { indicator: string } }> {
  const page = { indicator: 'major' };
  const server = await startFakeUpstream((_request, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: { indicator: page.indicator, description: `${page.indicator} outage` } }));
  });
  open.push(server);
  return Object.assign(server, { page });
}

const calls = (upstream: FakeUpstream) => upstream.requests.filter((request) => request.method === 'POST').length;
const listings = (upstream: FakeUpstream) => upstream.requests.filter((request) => request.method === 'GET').length;

function gatewayConfig(upstreams: Record<string, FakeUpstream>, healthChecks: Record<string, unknown>): GatewayConfig {
  return {
    upstreams: Object.fromEntries(
      Object.entries(upstreams).map(([name, upstream]) => [name, { api: 'openai', baseUrl: `${upstream.url}/v1` }]),
    ),
    modelGroups: {
      smart: {
        strategy: 'fallback',
        targets: Object.keys(upstreams).map((upstream) => ({ upstream, model: 'gpt-4o-mini' })),
      },
    },
    retry: { attempts: 0 },
    healthChecks: { interval: 40, timeout: '2s', failAfter: 2, passAfter: 2, ...healthChecks },
    adminKeySha256: sha256Hex(adminKey),
    keys: [{ id: 'client', sha256: sha256Hex(clientKey), scopes: ['chat'] }],
    spool: false,
  } as GatewayConfig;
}

interface TargetState {
  target: string;
  probe?: { ok: boolean; state: 'up' | 'down'; latencyMs?: number; detail?: string };
}

async function targetState(gateway: RunningProxy, target: string): Promise<TargetState | undefined> {
  const health = await healthDetails<{ routing?: TargetState[] }>(gateway.url, adminKey);
  return health.routing?.find((report) => report.target === target);
}

/** Waits until every gateway says `target` is `state`. */
async function until(gateways: readonly RunningProxy[], target: string, state: 'up' | 'down'): Promise<void> {
  for (const gateway of gateways)
    await waitFor(
      async () => ((await targetState(gateway, target))?.probe?.state === state ? true : undefined),
      `${target} ${state}`,
    );
}

const ask = (gateway: RunningProxy) =>
  new OpenAI({ apiKey: clientKey, baseURL: `${gateway.url}/v1`, maxRetries: 0 }).chat.completions.create({
    model: 'smart',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 8,
  });

describe.each(memoryAndRedisStores('health-checks'))('health checks on %s stores', (kind, storesFor) => {
  async function gateways(config: GatewayConfig): Promise<RunningProxy[]> {
    const owned: OwnedStores = storesFor();
    const started = await startSharingGateways(kind, owned, () => config);
    open.push({ close: async () => (await started.close(), await owned.release()) });
    return started.gateways;
  }

  it('skips an upstream whose probes fail before any user request reaches it, and uses it again once they pass', async () => {
    const primary = await provider();
    const secondary = await provider();
    primary.listing.status = 503;
    const running = await gateways(gatewayConfig({ primary, secondary }, {}));
    await until(running, 'primary/gpt-4o-mini', 'down');
    // Hysteresis: down only after failAfter failed probes (each process probes on its own).
    expect(listings(primary)).toBeGreaterThanOrEqual(2 * running.length);
    const failed = await healthDetails<{ status: string; unavailable: { upstreams: string[] } }>(
      running[0]!.url,
      adminKey,
    );
    expect(failed).toMatchObject({ status: 'degraded', unavailable: { upstreams: ['primary'] } });

    for (const gateway of running) expect((await ask(gateway)).choices[0]!.message.content).toBeTruthy();
    expect(calls(primary)).toBe(0);
    expect(calls(secondary)).toBe(running.length);

    primary.listing.status = 200;
    await until(running, 'primary/gpt-4o-mini', 'up');
    for (const gateway of running) await ask(gateway);
    expect(calls(primary)).toBe(running.length);
    expect(calls(secondary)).toBe(running.length);
  });

  it('skips an upstream whose status page reports an outage, when status pages are read', async () => {
    const primary = await provider();
    const secondary = await provider();
    const page = await statusPage();
    const running = await gateways(
      gatewayConfig({ primary, secondary }, { statusPages: { primary: `${page.url}/api/v2/status.json` } }),
    );
    await until(running, 'primary/gpt-4o-mini', 'down');
    expect((await targetState(running[0]!, 'primary/gpt-4o-mini'))?.probe?.detail).toMatch(/major outage/);
    for (const gateway of running) await ask(gateway);
    expect(calls(primary)).toBe(0);

    page.page.indicator = 'none';
    await until(running, 'primary/gpt-4o-mini', 'up');
    for (const gateway of running) await ask(gateway);
    expect(calls(primary)).toBe(running.length);
  });
});

describe('health checks, one process', () => {
  const [[kind, storesFor]] = memoryAndRedisStores('health-checks-one') as [['memory', () => OwnedStores]];

  async function gateway(config: GatewayConfig): Promise<RunningProxy> {
    const owned = storesFor();
    const started = await startSharingGateways(kind, owned, () => config);
    open.push({ close: async () => (await started.close(), await owned.release()) });
    return started.gateways[0]!;
  }

  it('tries the least bad target when the checks hold every target down, rather than refuse', async () => {
    const only = await provider();
    only.listing.status = 500;
    const running = await gateway(gatewayConfig({ only }, {}));
    await until([running], 'only/gpt-4o-mini', 'down');
    expect((await ask(running)).choices[0]!.message.content).toBeTruthy();
    expect(calls(only)).toBe(1);
  });

  it('sends the paid one-token probe only when asked, to each target model', async () => {
    const primary = await provider();
    const secondary = await provider();
    const running = await gateway(gatewayConfig({ primary, secondary }, { probe: 'one-token' }));
    await until([running], 'primary/gpt-4o-mini', 'up');
    const probe = primary.requests.find((request) => request.method === 'POST');
    expect(probe?.body).toMatchObject({ model: 'gpt-4o-mini', max_tokens: 1 });
    expect(listings(primary)).toBe(0);

    const free = await provider();
    const plain = await gateway(gatewayConfig({ free }, {}));
    await until([plain], 'free/gpt-4o-mini', 'up');
    expect(calls(free)).toBe(0);
    expect((await targetState(plain, 'free/gpt-4o-mini'))?.probe?.latencyMs).toEqual(expect.any(Number));
  });

  it('reports probe latency and failures in the metrics', async () => {
    const primary = await provider();
    primary.listing.status = 503;
    const running = await gateway(gatewayConfig({ primary }, {}));
    await until([running], 'primary/gpt-4o-mini', 'down');
    const metrics = await (
      await fetch(`${running.url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } })
    ).text();
    expect(metrics).toMatch(/^tollgate_upstream_probe_failures_total\{upstream="primary"\} [2-9]/m);
    expect(metrics).toMatch(/^tollgate_upstream_probe_duration_seconds_count\{upstream="primary"\} [2-9]/m);
    expect(metrics).toMatch(/^tollgate_route_health_state\{target="primary\/gpt-4o-mini",.*\} 0$/m);
  });
});
