// The proxy's log as metering opens it (a file, closed with what it holds), and when the OTEL_* variables start an OpenTelemetry SDK.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { createGatewayLog } from '../src/observe/access-log.js';
import { startTracing, tracingRequested } from '../src/observe/tracing.js';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-proxy-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('createGatewayLog', () => {
  it('appends JSON lines to a file, creating its directory, and writes what it holds when closed', async () => {
    const file = join(dir, 'nested', 'access.log');
    const log = createGatewayLog({ level: 'info', destination: file });
    log.logger.debug('below the level');
    log.logger.info({ status: 200 }, 'request completed');
    await log.close();
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { msg: string; status: number });
    expect(lines).toEqual([expect.objectContaining({ msg: 'request completed', status: 200 })]);
    // A line logged after close is dropped, not an error.
    expect(() => log.logger.error('late')).not.toThrow();
  });

  it('stops the start with a message naming log.destination when the file cannot be opened', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    expect(() => createGatewayLog({ destination: join(file, 'under-a-file.log') })).toThrow(
      /log\.destination: cannot open .*under-a-file\.log/,
    );
  });
});

describe('tracingRequested', () => {
  it.each([
    [{}, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, true],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }, true],
    [{ OTEL_TRACES_EXPORTER: 'otlp' }, true],
    [{ OTEL_TRACES_EXPORTER: 'console' }, true],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_TRACES_EXPORTER: 'none' }, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }, false],
    [{ OTEL_SERVICE_NAME: 'gateway' }, false],
  ])('%j: %s', (env, expected) => {
    expect(tracingRequested(env)).toBe(expected);
  });

  it('leaves the SDK unloaded when the environment asks for no traces: startTracing gives nothing to stop', async () => {
    await expect(startTracing({ OTEL_SERVICE_NAME: 'gateway' })).resolves.toBeUndefined();
  });
});
