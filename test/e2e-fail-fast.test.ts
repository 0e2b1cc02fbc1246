// The proxy refuses to start, naming what is wrong, when its config or environment cannot work: nothing half-started, no "listening" line.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { MOCK_UPSTREAMS, runProxyExpectingExit } from './helpers/proxy.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-fail-fast-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configFile(config: unknown): string {
  const file = path.join(dir, `${randomUUID()}.json`);
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** A local port nothing listens on: connections to it are refused at once. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function refused(env: Record<string, string>) {
  const result = await runProxyExpectingExit({ REDIS_URL: '', ...env });
  expect(result.code).toBe(1);
  expect(result.output).not.toContain('listening on');
  return result.output;
}

describe('the proxy refuses to start', () => {
  it('when an upstream key variable is not set', async () => {
    const variable = `TG_TEST_UNSET_${randomUUID().replace(/-/g, '_').toUpperCase()}`;
    const output = await refused({
      TOLLGATE_CONFIG: configFile({ upstreams: { openai: { baseUrl: 'http://127.0.0.1:9/v1', apiKeyEnv: variable } } }),
    });
    expect(output).toContain(`upstreams.openai.apiKeyEnv names ${variable}, which is not set`);
  }, 30_000);

  it('when a tier names an unknown model', async () => {
    const output = await refused({
      TOLLGATE_CONFIG: configFile({ tiers: { pro: { models: ['gpt-4o-mini', 'gpt-4o-mnii'] } } }),
    });
    expect(output).toContain('tiers.pro.models[1] names an unknown model "gpt-4o-mnii"; did you mean "gpt-4o-mini"?');
  }, 30_000);

  it('when PostgreSQL does not answer', async () => {
    const port = await closedPort();
    const output = await refused({
      TOLLGATE_CONFIG: configFile({
        upstreams: MOCK_UPSTREAMS,
        postgresUrl: `postgres://postgres:secret@127.0.0.1:${port}/test`,
      }),
    });
    expect(output).toContain(
      `postgresUrl: PostgreSQL does not answer at postgres://postgres:***@127.0.0.1:${port}/test`,
    );
    expect(output).not.toContain('secret');
  }, 30_000);

  it('when Redis does not answer', async () => {
    const port = await closedPort();
    const output = await refused({ TOLLGATE_CONFIG: '', REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(output).toContain(`Redis does not answer at redis://127.0.0.1:${port}`);
  }, 30_000);

  it.each(['0x6d60', '1e3', '80.5', '-1', '70000'])(
    'when PORT is %s',
    async (port) => {
      const output = await refused({ TOLLGATE_CONFIG: '', PORT: port });
      expect(output).toContain(`PORT must be an integer from 0 to 65535, in decimal digits; got "${port}"`);
    },
    30_000,
  );

  it('when the port is in use, without printing "listening" first', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, resolve));
    try {
      const { port } = taken.address() as net.AddressInfo;
      const output = await refused({ TOLLGATE_CONFIG: '', PORT: String(port) });
      expect(output).toContain(`cannot listen on port ${port}`);
      expect(output).toContain('EADDRINUSE');
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  }, 30_000);
});
