// /metrics names tenants and their spend: it needs the admin key, unless the config makes it public on purpose.
import { afterEach, describe, expect, it } from '@jest/globals';
import { newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const running: RunningProxy[] = [];

afterEach(async () => {
  while (running.length > 0) await running.pop()!.close();
});

async function proxyWith(config: Parameters<typeof startProxy>[0]): Promise<string> {
  const proxy = await startProxy({ tenants: { acme: {} }, ...config });
  running.push(proxy);
  return proxy.url;
}

describe('GET /metrics', () => {
  it('is not served without an admin key, unless public', async () => {
    const response = await fetch(`${await proxyWith({})}/metrics`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });

  it('asks for the admin key when there is one', async () => {
    const adminKey = newApiKey();
    const url = await proxyWith({ adminKeySha256: sha256Hex(adminKey) });
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    const metrics = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('tollgate_');
  });

  it('is open to anyone with "metrics": { "public": true }', async () => {
    const adminKey = newApiKey();
    const url = await proxyWith({ adminKeySha256: sha256Hex(adminKey), metrics: { public: true } });
    const metrics = await fetch(`${url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('tollgate_');
  });
});
