// The proxy's `log` config, the log it opens, and when the OTEL_* variables start an OpenTelemetry SDK.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { createProxyLog } from '../src/access-log.js';
import { validateConfig } from '../src/config/index.js';
import { tracingRequested } from '../src/tracing.js';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-log-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the log config', () => {
  it('takes a level and a destination', () => {
    expect(validateConfig({ log: { level: 'warn', destination: 'stdout' } }).log).toEqual({
      level: 'warn',
      destination: 'stdout',
    });
    expect(validateConfig({ log: { destination: '/var/log/tollgate/access.log' } }).log).toEqual({
      destination: '/var/log/tollgate/access.log',
    });
  });

  it.each([
    [{ log: 'info' }, 'log must be an object'],
    [
      { log: { level: 'verbose' } },
      'log.level must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent"',
    ],
    [{ log: { level: 'inf' } }, 'did you mean "info"?'],
    [{ log: { destination: '' } }, 'log.destination must be a non-empty string'],
    [{ log: { levle: 'info' } }, 'log has no field "levle"; did you mean "level"?'],
  ])('refuses %j naming the field', (config, message) => {
    expect(() => validateConfig(config)).toThrow(message);
  });
});

describe('createProxyLog', () => {
  it('appends JSON lines to a file, creating its directory, and writes what it holds when closed', async () => {
    const file = join(dir, 'nested', 'access.log');
    const log = createProxyLog({ level: 'info', destination: file });
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
    expect(() => createProxyLog({ destination: join(file, 'under-a-file.log') })).toThrow(
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
});
